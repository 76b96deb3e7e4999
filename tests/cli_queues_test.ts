// `queues` and `dlq list|replay|purge` as real processes, against a worker in another process,
// on the kv:// default and on Redis.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { eventually } from "./_helpers.ts";
import { DAYONE_APP, kvEnv, runCli, spawnCli } from "./_cli_helpers.ts";

const REDIS = {
  CELERIAC_BROKER_URL: "redis://127.0.0.1:6379/0",
  CELERIAC_RESULT_BACKEND: "redis://127.0.0.1:6379/1",
};

async function countsOf(queue: string, env: Record<string, string>, scheduled = true) {
  const flags = scheduled ? ["--scheduled"] : [];
  const out = await runCli(["queues", "-Q", queue, "-a", DAYONE_APP, "--json", ...flags], {
    env,
  });
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout)[0];
}

// On Redis a client publishes a countdown to the queue with its eta header, as Celery does
// (`etaInQueue`); the first worker that sees it hands it to the broker's schedule.
async function scenario(env: Record<string, string>, { etaInQueue = false } = {}) {
  const queue = `dayone-q-${crypto.randomUUID().slice(0, 8)}`;
  const call = async (...args: string[]) => {
    const out = await runCli(["call", ...args, "-Q", queue, "-a", DAYONE_APP], { env });
    assert.equal(out.code, 0, out.stderr);
    return out.stdout.trim();
  };
  // Two waiting, one scheduled an hour ahead.
  await call("tasks.add", "--args", "[1, 1]");
  await call("tasks.add", "--args", "[2, 2]");
  const later = await call("tasks.add", "--args", "[3, 3]", "--countdown", "3600");
  let counts = await countsOf(queue, env);
  assert.equal(counts.waiting, etaInQueue ? 3 : 2);
  assert.equal(counts.scheduled, etaInQueue ? 0 : 1);
  assert.equal(counts.deadLettered, 0);
  if (!etaInQueue) {
    assert.deepEqual(counts.scheduledMessages.map((s: { id: string }) => s.id), [later]);
    const table = await runCli(["queues", "-Q", queue, "-a", DAYONE_APP], { env });
    assert.match(table.stdout, /QUEUE\s+WAITING\s+RESERVED\s+SCHEDULED\s+DEAD/);
    assert.match(table.stdout, new RegExp(`${queue}\\s+2\\s+\\S+\\s+1\\s+0`));
  }

  // A worker runs the two, and dead-letters an unknown task name.
  {
    await using worker = spawnCli(["worker", "-a", DAYONE_APP, "-Q", queue, "-c", "1"], { env });
    await worker.ready();
    await call("ux.nope");
    await eventually(async () => (await countsOf(queue, env)).deadLettered === 1, 30_000);
    counts = await countsOf(queue, env);
    assert.equal(counts.waiting, 0);
    assert.equal(counts.scheduled, 1);
    assert.deepEqual(counts.scheduledMessages.map((s: { id: string }) => s.id), [later]);
  }
  const list = await runCli(["dlq", "list", queue, "-a", DAYONE_APP], { env });
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /ux\.nope/);
  assert.match(list.stdout, /1 dead letter\./);
  const json = JSON.parse(
    (await runCli(["dlq", "list", queue, "-a", DAYONE_APP, "-j"], { env })).stdout,
  );
  assert.equal(json.length, 1);
  assert.equal(json[0].task, "ux.nope");

  const replay = await runCli(["dlq", "replay", queue, json[0].id, "-a", DAYONE_APP], { env });
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /Replayed 1 dead letter onto/);
  counts = await countsOf(queue, env);
  assert.equal(counts.deadLettered, 0);
  assert.equal(counts.waiting, 1);

  // Dead-letter it again, then purge the dead-letter queue (needs -f without a terminal).
  {
    await using worker = spawnCli(["worker", "-a", DAYONE_APP, "-Q", queue, "-c", "1"], { env });
    await worker.ready();
    await eventually(async () => (await countsOf(queue, env)).deadLettered === 1, 30_000);
  }
  const refused = await runCli(["dlq", "purge", queue, "-a", DAYONE_APP], { env });
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--force/);
  const purged = await runCli(["dlq", "purge", queue, "-f", "-a", DAYONE_APP], { env });
  assert.equal(purged.code, 0, purged.stderr);
  assert.match(purged.stdout, /Purged 1 dead letter from/);
  assert.equal((await countsOf(queue, env)).deadLettered, 0);
  return queue;
}

Deno.test("cli queues/dlq on kv://: counts, the ETA list, list, replay and purge of dead letters", async () => {
  await using kv = await kvEnv();
  await scenario(kv.env);
});

Deno.test("cli queues/dlq on redis://: the same", async () => {
  const queue = await scenario(REDIS, { etaInQueue: true });
  await using app = new App({
    broker: REDIS.CELERIAC_BROKER_URL,
    backend: REDIS.CELERIAC_RESULT_BACKEND,
  });
  await app.control.purge([queue]);
});

Deno.test("cli dlq: a usage error names the actions", async () => {
  const out = await runCli(["dlq", "show", "q", "-b", "memory://"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /list, replay or purge/);
});

Deno.test("cli queues/dlq purge on amqp://: waiting and dead-letter counts; the rest is unknown", async () => {
  const env = {
    CELERIAC_BROKER_URL: "amqp://guest:guest@127.0.0.1:5672//",
    CELERIAC_RESULT_BACKEND: "redis://127.0.0.1:6379/1",
  };
  const queue = `dayone-amqp-${crypto.randomUUID().slice(0, 8)}`;
  const missing = await countsOf(queue, env, false);
  assert.deepEqual(missing, {
    queue,
    waiting: 0,
    reserved: null,
    scheduled: null,
    deadLettered: 0,
  });
  for (let i = 0; i < 2; i++) {
    const out = await runCli([
      "call",
      "tasks.add",
      "--args",
      "[1, 1]",
      "-Q",
      queue,
      "-a",
      DAYONE_APP,
    ], {
      env,
    });
    assert.equal(out.code, 0, out.stderr);
  }
  {
    await using worker = spawnCli(["worker", "-a", DAYONE_APP, "-Q", queue, "-c", "1"], { env });
    await worker.ready();
    await eventually(async () => (await countsOf(queue, env, false)).waiting === 0, 30_000);
    const out = await runCli(["call", "ux.nope", "-Q", queue, "-a", DAYONE_APP], { env });
    assert.equal(out.code, 0, out.stderr);
    await eventually(async () => (await countsOf(queue, env, false)).deadLettered === 1, 30_000);
  }
  await runCli(["call", "tasks.add", "--args", "[1, 1]", "-Q", queue, "-a", DAYONE_APP], { env });
  const table = await runCli(["queues", "-Q", queue, "-a", DAYONE_APP], { env });
  assert.match(table.stdout, new RegExp(`${queue}\\s+1\\s+-\\s+-\\s+1`), table.stdout);
  const purged = await runCli(["dlq", "purge", queue, "-f", "-a", DAYONE_APP], { env });
  assert.match(purged.stdout, /Purged 1 dead letter/, purged.stdout + purged.stderr);
  const list = await runCli(["dlq", "list", queue, "-a", DAYONE_APP], { env });
  assert.equal(list.code, 1);
  assert.match(list.stderr, /cannot list dead letters/);
  await runCli(["purge", "-f", "-Q", queue, "-a", DAYONE_APP], { env });
});
