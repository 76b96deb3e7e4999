// Remote control between celeriac clients and workers: every inspect and control command,
// targeting, mingle, the revoke state file, and the CLI (over Redis, across processes).
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { eventually, startWorker } from "./_helpers.ts";
import { cli, REDIS, REDIS_BACKEND, unique } from "./_control_helpers.ts";
import { isForNode } from "../lib/worker/control.ts";
import { encodeTask } from "../lib/protocol/message.ts";

function memoryApp() {
  const url = `memory://${crypto.randomUUID()}`;
  const app = new App({ broker: url, backend: url });
  app.task("c.add", (x: number, y: number) => x + y);
  app.task("c.wait", async function (): Promise<string> {
    await new Promise((resolve) => this.signal.addEventListener("abort", resolve));
    return "stopped";
  });
  return app;
}

const quiet = { pool: "inline" as const, heartbeatInterval: 0 };

Deno.test("inspect: ping, stats, registered, active, scheduled, query_task, revoked, clock, conf, report, active_queues", async () => {
  await using app = memoryApp();
  await using w = startWorker(app, { ...quiet, hostname: "a@test", concurrency: 1 });
  await using _other = startWorker(app, { ...quiet, hostname: "b@test", queues: ["other"] });
  const inspect = (destination = ["a@test"]) => app.control.inspect({ destination, timeout: 2000 });
  await eventually(async () => Object.keys(await inspect().ping().collect()).length === 1);
  assert.deepEqual(await inspect().ping().collect(), { "a@test": { ok: "pong" } });
  const both = await app.control.inspect({ timeout: 300 }).ping().collect();
  assert.deepEqual(Object.keys(both).sort(), ["a@test", "b@test"]);
  const running = await app.sendTask("c.wait", [], {}, { queue: "celery" });
  await eventually(() => w.consumer.requests().some((r) => r.state === "active"));
  const active = (await inspect().active().collect())["a@test"] as Record<string, unknown>[];
  assert.equal(active[0]!.id, running.id);
  assert.equal(active[0]!.name, "c.wait");
  assert.equal(active[0]!.acknowledged, true);
  assert.equal(typeof active[0]!.time_start, "number");
  assert.equal(active[0]!.worker_pid, Deno.pid);
  // An ETA close enough to wait in the worker (etaHoldMs) is listed as scheduled.
  const soonId = crypto.randomUUID();
  const broker = await app.getBroker();
  await broker.publish(
    "celery",
    encodeTask({
      id: soonId,
      name: "c.add",
      args: [1, 2],
      kwargs: {},
      eta: new Date(Date.now() + 800),
    }),
  );
  const soon = app.asyncResult(soonId);
  type Scheduled = { priority: number; request: { id: string; worker_pid: number | null } };
  let scheduled: Scheduled | undefined;
  await eventually(async () => {
    const all = await app.control.inspect({ timeout: 300 }).scheduled().collect();
    scheduled = Object.values(all).flatMap((l) => l as Scheduled[])
      .find((s) => s.request.id === soon.id);
    return scheduled !== undefined;
  });
  // As Celery: the timer entry's priority (6 for every ETA task), and no pid before it starts.
  assert.equal(scheduled!.priority, 6);
  assert.equal(scheduled!.request.worker_pid, null);
  const query = await app.control.inspect({ timeout: 300 }).queryTask(running.id).collect();
  const found = Object.values(query).find((q) => Object.keys(q as object).length) as Record<
    string,
    [string, { id: string }]
  >;
  assert.equal(found[running.id]![0], "active");
  const stats = (await inspect().stats().collect())["a@test"] as Record<string, unknown>;
  assert.equal(stats.pid, Deno.pid);
  assert.equal((stats.pool as Record<string, unknown>)["max-concurrency"], 1);
  assert.equal(stats.prefetch_count, 4);
  assert.deepEqual(await inspect().registered().collect(), { "a@test": ["c.add", "c.wait"] });
  const clock = (await inspect().clock().collect())["a@test"] as { clock: number };
  assert.ok(clock.clock > 0);
  const conf = (await inspect().conf().collect())["a@test"] as Record<string, unknown>;
  assert.equal(conf.task_default_queue, "celery");
  const report = (await inspect().report().collect())["a@test"] as { ok: string };
  assert.match(report.ok, /celeriac/);
  const queues = (await inspect().activeQueues().collect())["a@test"] as { name: string }[];
  assert.deepEqual(queues.map((q) => q.name), ["celery"]);
  await app.control.revoke(running.id, { terminate: true });
  await eventually(async () => (await running.state()) === "REVOKED");
  const revoked = await inspect().revoked().collect();
  assert.deepEqual(revoked, { "a@test": [running.id] });
  assert.equal(await soon.get({ timeout: 5000 }), 3);
  const unknown = await app.control.inspect({ destination: ["a@test"] }).call("nope").collect();
  assert.deepEqual(unknown, { "a@test": { error: "No such command: nope" } });
});

Deno.test("control: rate_limit, time_limit, pool_grow/shrink, autoscale, and shutdown only where sent", async () => {
  await using app = memoryApp();
  await using w = startWorker(app, { ...quiet, hostname: "c@test", concurrency: 2 });
  await using other = startWorker(app, { ...quiet, hostname: "d@test" });
  const to = { destination: ["c@test"], reply: true, timeout: 2000 };
  await eventually(async () => (await app.control.ping({ destination: ["c@test"] })).length === 1);
  assert.deepEqual(await app.control.rateLimit("c.add", "10/s", to), [
    { "c@test": { ok: "new rate limit set successfully" } },
  ]);
  assert.deepEqual(await app.control.rateLimit("c.nope", "10/s", to), [
    { "c@test": { error: "unknown task" } },
  ]);
  assert.match(
    JSON.stringify(await app.control.rateLimit("c.add", "ten", to)),
    /Invalid rate limit/,
  );
  await app.control.timeLimit("c.add", { soft: 3, hard: 5 }, to);
  assert.equal(app.tasks.get("c.add")!.options.timeLimit, 5);
  assert.equal(app.tasks.get("c.add")!.options.softTimeLimit, 3);
  await app.control.poolGrow(3, to);
  assert.equal(w.consumer.pool!.capacity, 5);
  await app.control.poolShrink(2, to);
  assert.equal(w.consumer.pool!.capacity, 3);
  // As Celery: a worker started without autoscale refuses, its pool unchanged.
  assert.deepEqual(await app.control.autoscale(6, 2, to), [
    { "c@test": { error: "ValueError('Autoscale not enabled')" } },
  ]);
  assert.equal(w.consumer.pool!.capacity, 3);
  const reply = await app.control.shutdown(to);
  assert.deepEqual(reply, [{ "c@test": { ok: "shutting down" } }]);
  await w.stop();
  const alive = await app.control.inspect({ timeout: 300 }).ping().collect();
  assert.deepEqual(Object.keys(alive), ["d@test"]);
  await other.stop();
});

Deno.test("control autoscale updates a running autoscaler's bounds, as Celery's Autoscaler.update", async () => {
  await using app = memoryApp();
  await using w = startWorker(app, {
    ...quiet,
    hostname: "as@test",
    autoscale: { max: 3, min: 1 },
  });
  const to = { destination: ["as@test"], reply: true, timeout: 2000 };
  await eventually(async () => (await app.control.ping({ destination: ["as@test"] })).length === 1);
  assert.equal(w.consumer.pool!.capacity, 1);
  // A min above the size grows the pool to it; the reply gives the new bounds.
  assert.deepEqual(await app.control.autoscale(5, 2, to), [
    { "as@test": { ok: "autoscale now max=5 min=2" } },
  ]);
  assert.equal(w.consumer.pool!.capacity, 2);
  assert.equal(w.consumer.poolSize, 2);
  // A max below the size shrinks it.
  assert.deepEqual(await app.control.autoscale(1, 1, to), [
    { "as@test": { ok: "autoscale now max=1 min=1" } },
  ]);
  assert.equal(w.consumer.pool!.capacity, 1);
  assert.match(JSON.stringify(await app.control.autoscale(0, 1, to)), /max >= 1/);
});

Deno.test("destination, pattern and matcher pick nodes as kombu does", () => {
  assert.ok(isForNode("w1@h", {}));
  assert.ok(isForNode("w1@h", { destination: ["w2@h", "w1@h"] }));
  assert.ok(!isForNode("w1@h", { destination: ["w2@h"] }));
  assert.ok(isForNode("w1@h", { pattern: "w*@h", matcher: "glob" }));
  assert.ok(isForNode("w1@h", { pattern: "^w\\d@", matcher: "pcre" }));
  assert.ok(!isForNode("x1@h", { pattern: "^w\\d@", matcher: "pcre" }));
  assert.ok(!isForNode("w1@h", { pattern: "(", matcher: "pcre" }));
});

Deno.test("mingle: a starting worker takes the revoked ids of running workers", async () => {
  await using app = memoryApp();
  await using first = startWorker(app, { ...quiet, hostname: "m1@test" });
  await eventually(async () => (await app.control.ping({ destination: ["m1@test"] })).length > 0);
  const id = crypto.randomUUID();
  await app.control.revoke(id, { destination: ["m1@test"], reply: true });
  assert.deepEqual(first.consumer.revoked, [id]);
  await using second = startWorker(app, { ...quiet, hostname: "m2@test", mingleTimeout: 300 });
  await eventually(async () => (await app.control.ping({ destination: ["m2@test"] })).length > 0);
  assert.deepEqual(second.consumer.revoked, [id]);
});

Deno.test("--statedb keeps revoked ids across a restart, and a revoked task does not run", async () => {
  const dir = await Deno.makeTempDir();
  const statedb = `${dir}/state.json`;
  try {
    await using app = memoryApp();
    const id = crypto.randomUUID();
    {
      await using w = startWorker(app, { ...quiet, hostname: "s@test", statedb });
      await eventually(async () =>
        (await app.control.ping({ destination: ["s@test"] })).length > 0
      );
      await app.control.revoke(id, { reply: true, destination: ["s@test"] });
      await w.stop();
    }
    const saved = JSON.parse(await Deno.readTextFile(statedb));
    assert.equal(typeof saved.revoked[id], "number");
    await using w2 = startWorker(app, { ...quiet, hostname: "s@test", statedb });
    await eventually(async () => (await app.control.ping({ destination: ["s@test"] })).length > 0);
    assert.deepEqual(w2.consumer.revoked, [id]);
    const r = await app.sendTask("c.add", [1, 1], {}, { taskId: id });
    await eventually(async () => (await r.state()) === "REVOKED");
    await Deno.writeTextFile(statedb, "{not json");
    await using _w3 = startWorker(app, { ...quiet, hostname: "s3@test", statedb });
    await eventually(async () => (await app.control.ping({ destination: ["s3@test"] })).length > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: inspect, control, status and purge against a worker over Redis", async () => {
  const queue = unique("cli-q");
  const host = `${unique("celeriac")}@test`;
  await using app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("c.add", (x: number, y: number) => x + y);
  await using _w = startWorker(app, { ...quiet, hostname: host });
  await eventually(async () => (await app.control.ping({ destination: [host] })).length === 1);
  const ping = await cli("inspect", "ping", "-b", REDIS, "-d", host, "--timeout", "5");
  assert.equal(ping.code, 0, ping.stderr);
  assert.match(ping.stdout, new RegExp(`->  ${host}: OK\\n\\s+pong\\n\\n1 node online\\.`));
  const reg = await cli("inspect", "registered", "-b", REDIS, "-d", host, "--json");
  assert.deepEqual(JSON.parse(reg.stdout), { [host]: ["c.add"] });
  const id = crypto.randomUUID();
  const revoke = await cli("control", "revoke", id, "--terminate", "-b", REDIS, "-d", host);
  assert.equal(revoke.code, 0, revoke.stderr);
  assert.match(revoke.stdout, /terminate: tasks unknown/);
  const status = await cli("status", "-b", REDIS, "-d", host, "--json");
  assert.deepEqual(JSON.parse(status.stdout), { [host]: { ok: "pong" } });
  const nobody = await cli("inspect", "ping", "-b", REDIS, "-d", "nobody@x", "--timeout", "0.3");
  assert.equal(nobody.code, 69);
  assert.match(nobody.stderr, /No nodes replied/);
  const usage = await cli("control", "rate_limit", "c.add", "-b", REDIS);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /rate_limit takes arguments: TASK RATE/);
  const emptyQueue = unique("cli-purge");
  await app.sendTask("c.add", [1, 1], {}, { queue: emptyQueue });
  await app.sendTask("c.add", [1, 2], {}, { queue: emptyQueue });
  const purge = await cli("purge", "-b", REDIS, "-Q", emptyQueue, "--force");
  assert.equal(purge.code, 0, purge.stderr);
  assert.match(purge.stdout, /Purged 2 messages/);
});

Deno.test("add_consumer and cancel_consumer change the queues a worker takes tasks from", async () => {
  await using app = memoryApp();
  await using w = startWorker(app, { ...quiet, hostname: "q@test" });
  const to = { destination: ["q@test"], reply: true, timeout: 2000 };
  await eventually(async () => (await app.control.ping({ destination: ["q@test"] })).length > 0);
  const extra = `extra-${crypto.randomUUID()}`;
  const early = await app.sendTask("c.add", [2, 3], {}, { queue: extra });
  assert.deepEqual(await app.control.addConsumer(extra, to), [
    { "q@test": { ok: `add consumer ${extra}` } },
  ]);
  assert.equal(await early.get({ timeout: 5000 }), 5);
  const queues = (await app.control.inspect({ destination: ["q@test"] }).activeQueues().collect())[
    "q@test"
  ] as { name: string }[];
  assert.deepEqual(queues.map((q) => q.name), ["celery", extra]);
  await app.control.cancelConsumer("celery", to);
  assert.deepEqual(w.consumer.queues, [extra]);
  const parked = await app.sendTask("c.add", [1, 1], {}, { queue: "celery" });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await parked.state(), "PENDING");
  await app.control.addConsumer("celery", to);
  assert.equal(await parked.get({ timeout: 5000 }), 2);
});
