// Redis Sentinel (kombu's `sentinel://` transport): a private master (16800), its replica
// (16801) and 3 sentinels (16810-16812). A failover in the middle of 3,000 acksLate tasks: the
// worker and the producer find the new master by themselves and every task runs at least
// once. A Python Celery client on kombu's Sentinel transport calls a celeriac task.
import assert from "node:assert/strict";
import { App, Consumer } from "@celeriac/celeriac";
import { eventually } from "./_helpers.ts";
import { redisCommand, type SentinelSetup, startSentinelSetup } from "./_redis_sentinel_nodes.ts";
import { parseRedisUrl } from "../lib/_redis.ts";
import { discoverMaster } from "../lib/_redis_sentinel.ts";
import { RedisBeatStore } from "../lib/beat/store_redis.ts";

function runWorker(app: App, queue: string, hostname = `sentinel-${crypto.randomUUID()}@test`) {
  const controller = new AbortController();
  const consumer = new Consumer(app, {
    pool: "inline",
    concurrency: 50,
    hostname,
    queues: [queue],
    heartbeatInterval: 0,
    signal: controller.signal,
  });
  const state = { ended: false, error: undefined as unknown };
  const running = consumer.run().then(
    () => void (state.ended = true),
    (error) => void (state.ended = true, state.error = error),
  );
  return {
    state,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await running;
    },
  };
}

Deno.test("sentinel: URLs parse as kombu's, and the master is asked of the sentinels", async () => {
  const u = parseRedisUrl("sentinel://:pw@127.0.0.1:1;sentinel://h2/3?master_name=m");
  assert.equal(u.db, 0);
  assert.equal(u.password, "pw");
  assert.ok(u.sentinel);
  const v = parseRedisUrl("sentinel://a:26379/2;sentinel://b:26380", { masterName: "x" });
  assert.equal(v.db, 2);
  assert.throws(() => parseRedisUrl("sentinel://a:26379;redis://b"), TypeError);
  // Nothing listens there: the error says so, and is transient (connect retries it).
  await assert.rejects(
    discoverMaster({ sentinels: [{ host: "127.0.0.1", port: 16899 }], masterName: "m" }),
    (e: Error & { code?: string }) => e.code === "ECONNREFUSED" && /No sentinel/.test(e.message),
  );
});

// Started before the first test, so no test owns its processes; the last test stops them.
const setup: SentinelSetup = await startSentinelSetup(16800);
const nodes = () => Promise.resolve(setup);

async function runFailover(how: "failover" | "kill") {
  const s = await nodes();
  const first = await s.masterPort();
  const queue = `sentinel-${how}-${crypto.randomUUID()}`;
  const N = 3000;
  await using app = new App({
    broker: `${s.sentinels}/0`,
    backend: `${s.sentinels}/1`,
    defaultQueue: queue,
    acksLate: true,
    // A claim or an ack lost in the failover comes back within seconds.
    transportOptions: { master_name: s.masterName, visibility_timeout: 5 },
  });
  const runs = new Map<number, number>();
  app.task("sentinel.mark", async (i: number) => {
    runs.set(i, (runs.get(i) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 5));
    return i;
  });
  const host = `sentinel-${how}-${crypto.randomUUID()}@test`;
  await using worker = runWorker(app, queue, host);
  const ping = async () =>
    Object.keys(await app.control.inspect({ destination: [host], timeout: 1_000 }).ping().collect())
      .length === 1;
  await eventually(ping, 20_000);
  // The beat store's lease (its own database, master name in the URL) and ETA tasks due after
  // the failover.
  await using beat = new RedisBeatStore(`${s.sentinels}/2?master_name=${s.masterName}`, {
    prefix: `beat-${crypto.randomUUID()}:`,
  });
  assert.equal(await beat.acquireLease("me", 60_000), true);
  const later = await Promise.all(
    Array.from(
      { length: 20 },
      (_, k) => app.sendTask("sentinel.mark", [N + 10 + k], {}, { countdown: 4 }),
    ),
  );
  // Two thirds before the failover (replicated before it starts: Redis replicates
  // asynchronously, so a write acknowledged by a master that dies unreplicated is lost to
  // any client), one third after, by the same producer that must find the new master.
  const send = async (from: number, to: number) => {
    for (let i = from; i < to; i += 100) {
      await Promise.all(
        Array.from(
          { length: Math.min(100, to - i) },
          (_, k) => app.sendTask("sentinel.mark", [i + k]),
        ),
      );
    }
  };
  await send(0, 2000);
  await redisCommand(first, ["WAIT", "1", "5000"]);
  await eventually(() => runs.size >= 300, 30_000);
  const before = runs.size;
  // A watcher of the sentinels' `+switch-master` hears of the switch.
  const switched: number[] = [];
  const watched = parseRedisUrl(`${s.sentinels}/0`, { masterName: s.masterName }).sentinel!;
  await watched.refresh();
  const unwatch = watched.watch((a) => switched.push(a.port));
  await new Promise((r) => setTimeout(r, 200));
  if (how === "failover") {
    await redisCommand(16810, ["SENTINEL", "FAILOVER", s.masterName]);
  } else {
    await s.killData(first);
  }
  await eventually(async () => (await s.masterPort().catch(() => first)) !== first, 30_000);
  const second = await s.masterPort();
  await eventually(() => switched.includes(second), 10_000).finally(unwatch);
  // The old master is gone or demoted before the rest is sent.
  if (how === "failover") {
    await eventually(async () => {
      const role = await redisCommand<unknown[]>(first, ["ROLE"]).catch(() => ["?"]);
      return role[0] === "slave";
    }, 20_000);
  }
  await send(2000, N);
  await eventually(() => runs.size >= N + 20, 90_000);
  assert.ok(before < N, `the failover came mid-run (${before} ran before)`);
  assert.notEqual(second, first);
  assert.equal(worker.state.ended, false, `the worker stopped: ${worker.state.error}`);
  for (let i = 0; i < N; i++) assert.ok(runs.has(i), `task ${i} never ran`);
  // ETA tasks scheduled before the failover were promoted on the new master.
  for (let k = 0; k < later.length; k++) assert.ok(runs.has(N + 10 + k), `ETA task ${k} never ran`);
  // Remote control (pidbox over pub/sub) reaches the worker through the new master.
  await eventually(ping, 20_000);
  // The beat lease held before the failover is still ours on the new master.
  assert.equal(await beat.renewLease("me", 60_000), true);
  assert.equal(await beat.acquireLease("other", 60_000), false);
  // Results go to the new master too.
  const r = await app.sendTask("sentinel.mark", [N + 1]);
  assert.equal(await r.get({ timeout: 20_000 }), N + 1);
  return { first, second };
}

Deno.test({
  name: "sentinel: SENTINEL FAILOVER in the middle of 3,000 acksLate tasks; all run",
  fn: async () => {
    await runFailover("failover");
  },
});

Deno.test({
  name: "sentinel: a Python Celery client on kombu's Sentinel transport calls a celeriac task",
  fn: async () => {
    const s = await nodes();
    const queue = `sentinel-py-${crypto.randomUUID()}`;
    await using app = new App({
      broker: `${s.sentinels}/0`,
      backend: `${s.sentinels}/1`,
      defaultQueue: queue,
      transportOptions: { master_name: s.masterName },
    });
    app.task("sentinel.add", (a: number, b: number) => a + b);
    await using _worker = runWorker(app, queue);
    const script = `
import sys, json
from celery import Celery
url = sys.argv[1]
py = Celery("py", broker=url + "/0", backend=url + "/1")
opts = {"master_name": sys.argv[2]}
py.conf.broker_transport_options = opts
py.conf.result_backend_transport_options = opts
r = py.send_task("sentinel.add", args=[20, 22], queue=sys.argv[3])
print(json.dumps({"result": r.get(timeout=30)}))
`;
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", script, s.sentinels, s.masterName, queue],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(text.split("\n").at(-1)!), { result: 42 });
  },
});

Deno.test({
  name: "sentinel: kill -9 of the master in the middle of 3,000 acksLate tasks; all run",
  // The killed master (its process and exit) belongs to the setup, started before this test.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await runFailover("kill");
  },
});

Deno.test({
  name: "sentinel: stop the private servers",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => setup.stop(),
});
