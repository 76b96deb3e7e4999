// kill -9 of a celeriac worker in the middle of an acks-late task, over Redis. The message stays
// in kombu's `unacked` hash with a lease (its `unacked_index` score) that nobody renews any more;
// once the lease is older than the visibility timeout, any consumer's restore sweep puts it back
// on its queue, marked redelivered. Both restorers are exercised: another celeriac worker, and a
// Python celery worker (kombu's own `QoS.restore_visible`).
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import type { RunReport } from "./apps/redis_app.ts";
import { eventually } from "./_helpers.ts";
import {
  type Child,
  deleteByPrefix,
  rawClient,
  REDIS,
  REDIS_BACKEND,
  spawnCliWorker,
  spawnPythonWorker,
} from "./_redis_helpers.ts";

// Visibility timeout of every party in these tests, in seconds: short, so restores take seconds.
const VISIBILITY = 2;

function setup() {
  const id = crypto.randomUUID();
  const prefix = `celeriac-test-${id}:`;
  const env = { broker: REDIS, backend: REDIS_BACKEND, prefix, visibility: VISIBILITY };
  const client = new App({
    broker: REDIS,
    backend: REDIS_BACKEND,
    transportOptions: { global_keyprefix: prefix },
  });
  return { id, prefix, queue: `kill-${id}`, env, client };
}

// Starts a celeriac worker subprocess, waits until it consumes, sends `name` and waits until
// the worker runs it (the task stores RUNNING with its pid), then SIGKILLs the worker.
async function killMidTask(
  s: ReturnType<typeof setup>,
  name: string,
  ms: number,
): Promise<{ taskId: string; killedPid: number; worker: Child }> {
  const worker = spawnCliWorker(s.queue, s.env);
  await eventually(() => worker.log().includes(" ready"), 30_000);
  const result = await s.client.sendTask(name, [ms], {}, { queue: s.queue });
  let killedPid = 0;
  await eventually(async () => {
    const meta = await result.meta();
    killedPid = (meta?.result as { pid?: number } | null)?.pid ?? 0;
    return meta?.status === "RUNNING";
  }, 20_000);
  assert.equal(killedPid, worker.child.pid);
  const status = await worker.stop("SIGKILL");
  assert.equal(status.signal, "SIGKILL");
  return { taskId: result.id, killedPid, worker };
}

// The killed worker's message, as kombu keeps it: in `unacked`, indexed in `unacked_index`.
async function unackedAge(prefix: string): Promise<{ count: number; ageSeconds: number }> {
  const redis = await rawClient();
  try {
    const entries = await redis.zRangeWithScores(`${prefix}unacked_index`, 0, -1);
    const count = await redis.hLen(`${prefix}unacked`);
    const oldest = entries[0]?.score ?? Date.now() / 1000;
    return { count: Math.max(count, entries.length), ageSeconds: Date.now() / 1000 - oldest };
  } finally {
    await redis.disconnect();
  }
}

Deno.test("redis kill -9: an acks-late task of a SIGKILLed celeriac worker is restored by another celeriac worker and completes", async () => {
  const s = setup();
  let rescuer: Child | undefined;
  try {
    const killed = await killMidTask(s, "ts.slow", 1500);
    const killedAt = Date.now();
    assert.equal((await unackedAge(s.prefix)).count, 1, "the message is held in unacked");
    // How the restore happens: the second worker's consume loop runs the restore sweep
    // (RedisBroker.restoreVisible, under kombu's unacked_mutex) every visibility/2 = 1 s. The
    // killed worker renewed its lease every visibility/4 until it died; ~2 s later the lease is
    // older than the visibility timeout, the sweep moves the message back to the consume end of
    // its queue marked redelivered, and the second worker claims it (delivery 2).
    rescuer = spawnCliWorker(s.queue, s.env);
    const value = await s.client.asyncResult<RunReport>(killed.taskId).get({ timeout: 30_000 });
    const seconds = (Date.now() - killedAt) / 1000;
    assert.equal(value.lang, "ts");
    assert.notEqual(value.pid, killed.killedPid);
    assert.equal(value.pid, rescuer.child.pid);
    assert.equal(value.redelivered, true);
    assert.equal(value.deliveryCount, 2);
    assert.ok(seconds >= VISIBILITY - 0.5, `restored after the lease ran out (${seconds} s)`);
    // Acked by the rescuer: nothing left unacked.
    await eventually(async () => (await unackedAge(s.prefix)).count === 0, 5_000);
    // deno-lint-ignore no-console -- the figure for the report
    console.log(`  kill -9 → completed by another celeriac worker in ${seconds.toFixed(1)} s`);
  } finally {
    if (rescuer) {
      const status = await rescuer.stop("SIGTERM");
      assert.equal(status.code, 0, rescuer.log());
    }
    await s.client.close();
    await deleteByPrefix(s.prefix);
  }
});

Deno.test("redis kill -9: an acks-late task of a SIGKILLed celeriac worker is restored by a Python celery worker and completes there", async () => {
  const s = setup();
  let python: Child | undefined;
  try {
    // shared.slow is registered by both apps: celeriac's sleeps (so it can be killed), Python's
    // reports {lang: "py"} at once.
    const killed = await killMidTask(s, "shared.slow", 60_000);
    const killedAt = Date.now();
    // How the restore happens: kombu's Redis transport calls QoS.restore_visible() when the
    // Python worker starts polling (MultiChannelPoller.on_poll_init) and then every 10 s. It
    // takes kombu's unacked_mutex, reads `unacked_index` entries older than its own
    // visibility_timeout (broker_transport_options, 2 s here), and moves each message from
    // `unacked` back to the queue named in the entry ([envelope, "", queue], written by
    // celeriac's claim script) with headers.redelivered and delivery_info.redelivered set.
    // Starting the Python worker once the lease is stale means its start-up sweep restores it.
    await eventually(
      async () => (await unackedAge(s.prefix)).ageSeconds > VISIBILITY + 0.2,
      10_000,
    );
    assert.equal((await unackedAge(s.prefix)).count, 1, "the message is held in unacked");
    python = spawnPythonWorker(s.queue, s.env);
    const value = await s.client.asyncResult(killed.taskId).get({ timeout: 30_000 });
    const seconds = (Date.now() - killedAt) / 1000;
    assert.deepEqual(value, { lang: "py", redelivered: true });
    await eventually(async () => (await unackedAge(s.prefix)).count === 0, 5_000);
    // deno-lint-ignore no-console -- the figure for the report
    console.log(`  kill -9 → completed by a Python celery worker in ${seconds.toFixed(1)} s`);
  } finally {
    if (python) {
      const status = await python.stop("SIGTERM");
      assert.ok(status.code === 0 || status.signal === "SIGTERM", python.log());
    }
    await s.client.close();
    await deleteByPrefix(s.prefix);
  }
});
