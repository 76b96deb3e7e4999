// Remote control, events and status on the kv:// default, between processes: a worker in one
// process, `inspect`, `control`, `status` and `events` as CLI processes of their own.
import assert from "node:assert/strict";
import { eventually } from "./_helpers.ts";
import { DAYONE_APP, kvEnv, runCli, spawnCli } from "./_cli_helpers.ts";

Deno.test("kv://: inspect ping, status, events and control revoke --terminate reach a worker in another process", async () => {
  await using kv = await kvEnv();
  const queue = `kvctl-${crypto.randomUUID().slice(0, 8)}`;
  await using worker = spawnCli(
    ["worker", "-a", DAYONE_APP, "-Q", queue, "-c", "1", "-n", `kvctl@${queue}`, "-E"],
    { env: kv.env },
  );
  await worker.ready();

  const ping = await runCli(["inspect", "ping", "-a", DAYONE_APP, "--timeout", "3"], {
    env: kv.env,
  });
  assert.equal(ping.code, 0, ping.stderr);
  assert.match(ping.stdout, new RegExp(`->  kvctl@${queue}: OK\\n\\s+pong`));
  assert.match(ping.stdout, /1 node online\./);

  const status = await runCli(["status", "-a", DAYONE_APP, "--timeout", "3", "--json"], {
    env: kv.env,
  });
  assert.equal(status.code, 0, status.stderr);
  assert.deepEqual(Object.keys(JSON.parse(status.stdout)), [`kvctl@${queue}`]);

  // Events stream across processes too.
  await using events = spawnCli(["events", "--dump", "-a", DAYONE_APP], { env: kv.env });
  await eventually(() => events.log().includes("listening"), 30_000);

  // A long task, running; revoke --terminate stops it and stores REVOKED.
  const sent = await runCli(
    ["call", "tasks.sleep", "--args", "[60000]", "-Q", queue, "-a", DAYONE_APP],
    { env: kv.env },
  );
  assert.equal(sent.code, 0, sent.stderr);
  const id = sent.stdout.trim();
  await eventually(async () => {
    const active = await runCli(["inspect", "active", "-a", DAYONE_APP, "--json"], {
      env: kv.env,
    });
    return active.code === 0 && active.stdout.includes(id);
  }, 30_000);
  const revoke = await runCli(
    ["control", "revoke", id, "--terminate", "-a", DAYONE_APP, "--timeout", "3"],
    { env: kv.env },
  );
  assert.equal(revoke.code, 0, revoke.stderr);
  assert.match(revoke.stdout, new RegExp(`kvctl@${queue}: OK`));
  const result = await runCli([
    "result",
    id,
    "--wait",
    "--timeout",
    "20000",
    "--json",
    "-a",
    DAYONE_APP,
  ], {
    env: kv.env,
  });
  const meta = JSON.parse(result.stdout);
  assert.equal(meta.status, "REVOKED", result.stdout + result.stderr);

  await eventually(() => events.out().includes('"task-revoked"'), 20_000);
  assert.match(events.out(), new RegExp(`"uuid":"${id}".*"type":"task-received"`));
  assert.match(events.out(), /"type":"worker-heartbeat"/);
});

Deno.test("kv://: no worker online is Celery's 'No nodes replied' and exit 69", async () => {
  await using kv = await kvEnv();
  const ping = await runCli(["inspect", "ping", "-a", DAYONE_APP, "--timeout", "0.5"], {
    env: kv.env,
  });
  assert.equal(ping.code, 69);
  assert.match(ping.stderr, /No nodes replied/);
});
