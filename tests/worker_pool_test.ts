// The worker with its default pool: real Web Workers, memory broker and backend.
import assert from "node:assert/strict";
import { NotRegistered, TaskError, TimeLimitExceeded, WorkerLostError } from "@celeriac/celeriac";
import app, {
  add,
  addTwice,
  boom,
  context,
  crash,
  flaky,
  kw,
  sleep,
  soft,
  spin,
  window,
} from "./apps/core_app.ts";
import poolApp, { runRequest } from "./apps/pool_app.ts";
import { eventually, startWorker } from "./_helpers.ts";
import type { Outcome } from "../lib/worker/outcome.ts";
import { WorkersPool, type WorkersPoolOptions } from "../lib/worker/worker_pool.ts";

Deno.test("workers pool: 1,000 tasks through memory:// all return the right values", async () => {
  await using _worker = startWorker(app, { concurrency: 2 });
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => add.delay(i, i)));
  const values = await Promise.all(results.map((r) => r.get({ timeout: 30_000 })));
  assert.deepEqual(values, Array.from({ length: 1000 }, (_, i) => 2 * i));
});

Deno.test("workers pool: with lookahead 3, 1,000 tasks all return the right values and warm shutdown returns", async () => {
  const worker = startWorker(app, { concurrency: 2, lookahead: 3 });
  try {
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => add.delay(i, i)));
    const values = await Promise.all(results.map((r) => r.get({ timeout: 30_000 })));
    assert.deepEqual(values, Array.from({ length: 1000 }, (_, i) => 2 * i));
    assert.equal(worker.consumer.processed, 1000);
  } finally {
    await worker.stop();
  }
});

Deno.test("workers pool: with lookahead 3, warm shutdown finishes the running task and requeues the ones sent ahead", async () => {
  const first = startWorker(app, { concurrency: 1, lookahead: 3 });
  let second: ReturnType<typeof startWorker> | undefined;
  try {
    const running = await sleep.delay(600);
    const ahead = [await add.delay(1, 2), await add.delay(3, 4)];
    await eventually(() => first.consumer.active === 3);
    await first.stop();
    // The sleep has finished if its Web Worker had started it; on a loaded machine it may not
    // have yet, and then it was handed back with the others. Those behind it cannot have run.
    assert.ok(["SUCCESS", "PENDING"].includes(await running.state()));
    for (const r of ahead) assert.equal(await r.state(), "PENDING");
    second = startWorker(app, { concurrency: 1 });
    const all = [running, ...ahead].map((r) => r.get({ timeout: 10_000 }));
    assert.deepEqual(await Promise.all(all), [600, 3, 7]);
  } finally {
    await first.stop();
    await second?.stop();
  }
});

Deno.test("workers pool: a throwing task ends FAILURE with Celery's exception shape", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const r = await boom.delay("boom!");
  await assert.rejects(() => r.get({ timeout: 10_000 }), (e: Error) => {
    assert.ok(e instanceof TaskError);
    assert.equal(e.name, "TypeError");
    assert.equal(e.message, "boom!");
    return true;
  });
  const meta = await r.meta();
  assert.equal(meta?.status, "FAILURE");
  assert.deepEqual(meta?.result, {
    exc_type: "TypeError",
    exc_message: ["boom!"],
    exc_module: "builtins",
  });
  assert.match(meta?.traceback ?? "", /TypeError: boom!/);
});

Deno.test("workers pool: an unknown task name fails NotRegistered and the worker keeps going", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const unknown = await app.sendTask("tasks.does_not_exist", [1]);
  const after = await add.delay(1, 1);
  await assert.rejects(() => unknown.get({ timeout: 10_000 }), NotRegistered);
  assert.equal(await after.get({ timeout: 10_000 }), 2);
});

Deno.test("workers pool: a busy loop is killed at its hard limit; the next task runs on a fresh Web Worker", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const stuck = await spin.applyAsync([], {}, { timeLimit: 0.5 });
  const next = await add.delay(20, 22);
  await assert.rejects(() => stuck.get({ timeout: 10_000 }), TimeLimitExceeded);
  assert.equal(await next.get({ timeout: 10_000 }), 42);
});

Deno.test("workers pool: a soft time limit aborts the task's signal", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const r = await soft.applyAsync([], {}, { softTimeLimit: 0.2 });
  assert.equal(await r.get({ timeout: 10_000 }), "aborted: SoftTimeLimitExceeded");
});

Deno.test("workers pool: a task that crashes its Web Worker fails clearly and the slot is respawned", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const r = await crash.delay();
  await assert.rejects(() => r.get({ timeout: 10_000 }), WorkerLostError);
  assert.equal(await (await add.delay(3, 4)).get({ timeout: 10_000 }), 7);
});

Deno.test("workers pool: one Web Worker runs several async tasks at once", async () => {
  await using _worker = startWorker(app, { concurrency: 1, childConcurrency: 10 });
  const rs = await Promise.all(Array.from({ length: 10 }, () => window.delay(500)));
  const spans = await Promise.all(rs.map((r) => r.get({ timeout: 30_000 })));
  // All ten ran at the same time on the one Web Worker: their spans share an instant.
  const lastStart = Math.max(...spans.map(([start]) => start!));
  const firstEnd = Math.min(...spans.map(([, end]) => end!));
  assert.ok(lastStart < firstEnd, `spans do not overlap: ${JSON.stringify(spans)}`);
});

Deno.test("workers pool: tasks inside Web Workers can call other tasks", async () => {
  await using _worker = startWorker(app, { concurrency: 2 });
  assert.equal(await (await addTwice.delay(5)).get({ timeout: 10_000 }), 20);
});

Deno.test("workers pool: the task reaches its context through `this`", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const r = await context.applyAsync(["hi"], {}, { headers: { "x-custom": "v" } });
  assert.deepEqual(await r.get({ timeout: 10_000 }), {
    label: "hi",
    id: r.id,
    retries: 0,
    rootId: r.id,
    parentId: null,
    queue: "celery",
    custom: "v",
  });
});

Deno.test("workers pool: keyword arguments bind by parameter name, the rest as one object", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const a = await kw.applyAsync([], { x: 1, y: 2 });
  assert.deepEqual(await a.get({ timeout: 10_000 }), { x: 1, y: 2, options: null });
  const b = await kw.applyAsync([7], { flag: true });
  assert.deepEqual(await b.get({ timeout: 10_000 }), { x: 7, y: 10, options: { flag: true } });
});

Deno.test("workers pool: retry() republishes the same id with retries + 1 until it succeeds", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const r = await flaky.delay(2);
  assert.equal(await r.get({ timeout: 10_000 }), 2);
});

Deno.test("workers pool: retries past maxRetries store FAILURE with the last error", async () => {
  await using _worker = startWorker(app, { concurrency: 1 });
  const r = await flaky.delay(9);
  await assert.rejects(() => r.get({ timeout: 10_000 }), /try 5/);
});

// The pool itself, driven through run() as the consumer does.
const POOL_APP = new URL("./apps/pool_app.ts", import.meta.url);

async function workersPool(options: Partial<WorkersPoolOptions> = {}): Promise<WorkersPool> {
  const pool = new WorkersPool({
    appModule: POOL_APP,
    broker: await poolApp.getBroker(),
    backend: await poolApp.getBackend(),
    size: 1,
    ...options,
  });
  await pool.start();
  return pool;
}

/** Fails instead of hanging when `promise` does not settle within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function value(outcome: Outcome): unknown {
  assert.equal(outcome.kind, "success", JSON.stringify(outcome));
  return (outcome as Extract<Outcome, { kind: "success" }>).value;
}

Deno.test("workers pool: 80 concurrent run() calls on 4 Web Workers never share one (childConcurrency 1)", async () => {
  await using pool = await workersPool({ size: 4 });
  const outcomes = await within(
    Promise.all(Array.from({ length: 80 }, () => pool.run(runRequest("pool.where", [20])))),
    30_000,
    "80 runs",
  );
  const spans = outcomes.map((o) => value(o) as { isolate: string; start: number; end: number });
  const byIsolate = Map.groupBy(spans, (s) => s.isolate);
  assert.equal(byIsolate.size, 4, "all four Web Workers took tasks");
  for (const [isolate, list] of byIsolate) {
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; i++) {
      assert.ok(
        list[i]!.start >= list[i - 1]!.end,
        `two tasks ran at once on Web Worker ${isolate}: ${
          JSON.stringify(list.slice(i - 1, i + 1))
        }`,
      );
    }
  }
});

Deno.test("workers pool: the same task id twice on one Web Worker (childConcurrency 2): both settle, no place is lost", async () => {
  await using pool = await workersPool({ size: 1, childConcurrency: 2 });
  const a = pool.run(runRequest("pool.echo", ["a", 100], "dup"));
  const b = pool.run(runRequest("pool.echo", ["b", 200], "dup"));
  const [oa, ob] = await within(Promise.all([a, b]), 10_000, "duplicate ids");
  assert.equal(value(oa), "a");
  assert.equal(value(ob), "b");
  // Both places are free again: two more run side by side.
  const more = await within(
    Promise.all([
      pool.run(runRequest("pool.where", [200], "dup")),
      pool.run(runRequest("pool.where", [200], "dup")),
    ]),
    10_000,
    "two more",
  );
  const [x, y] = more.map((o) => value(o) as { start: number; end: number });
  assert.ok(x!.start < y!.end && y!.start < x!.end, "the two places run at once");
  assert.equal(pool.waiting, 0);
  await within(pool.close(), 5_000, "close");
});

for (const [task, how] of [["pool.exit", "Deno.exit()"], ["pool.close_self", "self.close()"]]) {
  Deno.test(`workers pool: a task that calls ${how} ends lost, the Web Worker is replaced and close() returns`, async () => {
    await using pool = await workersPool({ size: 1 });
    const outcome = await within(pool.run(runRequest(task!, [])), 10_000, how!);
    assert.equal(outcome.kind, "lost", JSON.stringify(outcome));
    assert.match((outcome as Extract<Outcome, { kind: "lost" }>).error.message, /exited/);
    const next = await within(pool.run(runRequest("pool.echo", ["next", 0])), 10_000, "next");
    assert.equal(value(next), "next");
    assert.equal(pool.spawned, 2);
    await within(pool.close(), 5_000, "close");
  });
}

Deno.test("workers pool: aborting a run's signal terminates its Web Worker only; the neighbour finishes", async () => {
  await using pool = await workersPool({ size: 2 });
  const stop = new AbortController();
  const victim = pool.run(runRequest("pool.hang", []), { signal: stop.signal });
  const neighbour = pool.run(runRequest("pool.where", [600]));
  await new Promise((r) => setTimeout(r, 150));
  stop.abort();
  const lost = await within(victim, 2_000, "terminated run");
  assert.equal(lost.kind, "lost", JSON.stringify(lost));
  assert.equal((lost as Extract<Outcome, { kind: "lost" }>).error.name, "TaskRevokedError");
  assert.ok(value(await within(neighbour, 10_000, "neighbour")));
  assert.equal(pool.spawned, 3, "only the terminated Web Worker was replaced");
  assert.equal(value(await pool.run(runRequest("pool.echo", ["after", 0]))), "after");
});

Deno.test("workers pool: with childConcurrency 2 a terminate also ends the task sharing the Web Worker (documented)", async () => {
  await using pool = await workersPool({ size: 1, childConcurrency: 2 });
  const stop = new AbortController();
  const victim = pool.run(runRequest("pool.hang", []), { signal: stop.signal });
  const neighbour = pool.run(runRequest("pool.echo", ["n", 5_000]));
  await new Promise((r) => setTimeout(r, 150));
  stop.abort();
  assert.equal((await within(victim, 2_000, "victim")).kind, "lost");
  const n = await within(neighbour, 2_000, "neighbour");
  assert.equal(n.kind, "lost");
  assert.equal((n as Extract<Outcome, { kind: "lost" }>).error.name, "WorkerLostError");
});

Deno.test("workers pool: a hard time limit of 2^31 ms or more does not fire at once", async () => {
  await using pool = await workersPool({ size: 1 });
  const huge = 2 ** 31 / 1000 + 1;
  const t0 = Date.now();
  const outcome = await within(
    pool.run(runRequest("pool.echo", ["slow", 300]), { hardLimit: huge, softLimit: huge }),
    10_000,
    "long limit",
  );
  // echo ends early when its signal aborts: the soft limit did not fire either.
  assert.equal(value(outcome), "slow");
  assert.ok(Date.now() - t0 >= 290, `ended after ${Date.now() - t0} ms`);
});

Deno.test("workers pool: run() after close() ends lost at once and never rejects", async () => {
  const pool = await workersPool({ size: 1 });
  await pool.close();
  await pool.close();
  assert.equal((await pool.run(runRequest("pool.echo", ["x", 0]))).kind, "lost");
});

Deno.test("workers pool: revoke with terminate (-c 4) stops the busy task; the tasks beside it succeed", async () => {
  // All are queued before the worker starts, so they reach the pool together.
  const [stuck, ...beside] = await Promise.all([
    spin.delay(),
    ...Array.from({ length: 3 }, () => sleep.delay(1_500)),
  ]);
  await using worker = startWorker(app, { concurrency: 4 });
  await eventually(() =>
    worker.consumer.requests().filter((r) => r.state === "active").length === 4
  );
  assert.deepEqual(worker.consumer.revoke([stuck!.id], { terminate: true }), [stuck!.id]);
  await eventually(async () => (await stuck!.state()) === "REVOKED");
  for (const r of beside) assert.equal(await r.get({ timeout: 10_000 }), 1_500);
});

Deno.test("workers pool: one task id sent twice (--child-concurrency 2) runs twice and warm shutdown returns", async () => {
  const id = crypto.randomUUID();
  await using worker = startWorker(app, { concurrency: 1, childConcurrency: 2 });
  const first = await window.applyAsync([300], {}, { taskId: id });
  await window.applyAsync([300], {}, { taskId: id });
  await eventually(() => worker.consumer.requests().filter((r) => r.id === id).length === 2);
  await eventually(() => worker.consumer.requests().length === 0);
  assert.ok(Array.isArray(await first.get({ timeout: 10_000 })));
  await within(worker.stop(), 10_000, "warm shutdown");
});

Deno.test("workers pool: a task calling Deno.exit() fails WorkerLostError, the next runs, warm shutdown returns", async () => {
  await using worker = startWorker(poolApp, { appModule: POOL_APP, concurrency: 1 });
  const exited = await poolApp.sendTask("pool.exit", []);
  await assert.rejects(() => exited.get({ timeout: 10_000 }), WorkerLostError);
  const next = await poolApp.sendTask("pool.echo", ["next", 0]);
  assert.equal(await next.get({ timeout: 10_000 }), "next");
  await within(worker.stop(), 10_000, "warm shutdown");
});

Deno.test("workers pool: runs sent ahead behind a task killed at its hard limit are handed back and succeed", async () => {
  await using pool = await workersPool({ size: 1, lookahead: 3 });
  const stuck = pool.run(runRequest("pool.hang", []), { hardLimit: 0.3 });
  const behind = ["a", "b", "c"].map((label) => pool.run(runRequest("pool.echo", [label, 0])));
  assert.equal((await within(stuck, 5_000, "stuck run")).kind, "timeout");
  const outcomes = await within(Promise.all(behind), 10_000, "runs behind");
  assert.deepEqual(outcomes.map(value), ["a", "b", "c"]);
  assert.equal(pool.spawned, 2);
});

Deno.test("workers pool: terminating a run sent ahead that has not started leaves its Web Worker alone", async () => {
  await using pool = await workersPool({ size: 1, lookahead: 3 });
  const stop = new AbortController();
  const first = pool.run(runRequest("pool.where", [300]));
  const victim = pool.run(runRequest("pool.echo", ["never", 0]), { signal: stop.signal });
  await new Promise((r) => setTimeout(r, 50));
  stop.abort();
  const lost = await within(victim, 2_000, "terminated run");
  assert.equal(lost.kind, "lost", JSON.stringify(lost));
  assert.equal((lost as Extract<Outcome, { kind: "lost" }>).error.name, "TaskRevokedError");
  assert.ok(value(await within(first, 5_000, "first run")));
  assert.equal(pool.spawned, 1, "no Web Worker was terminated");
  assert.equal(value(await pool.run(runRequest("pool.echo", ["after", 0]))), "after");
});

Deno.test("workers pool: an idle Web Worker takes the runs waiting behind a busy one", async () => {
  await using pool = await workersPool({ size: 2, lookahead: 3 });
  const order: string[] = [];
  const track = (label: string, ms: number) =>
    pool.run(runRequest("pool.echo", [label, ms])).then((o) => order.push(value(o) as string));
  // One long and one short run, one on each Web Worker; the next ones are sent ahead, some
  // behind the long run. Without stealing they would end after it.
  const all = [track("long", 1_500), track("short", 10), track("x", 10), track("y", 10)];
  await within(Promise.all(all), 10_000, "runs");
  assert.equal(order.at(-1), "long", `order: ${order}`);
});

Deno.test("workers pool: childConcurrency 100 runs 100 sleeping tasks at once on one Web Worker", async () => {
  await using pool = await workersPool({ size: 1, childConcurrency: 100 });
  const outcomes = await within(
    Promise.all(Array.from({ length: 300 }, () => pool.run(runRequest("pool.where", [50])))),
    30_000,
    "300 runs",
  );
  const spans = outcomes.map((o) => value(o) as { start: number; end: number });
  const edges = spans.flatMap((s) => [[s.start, 1], [s.end, -1]] as const)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0, most = 0;
  for (const [, d] of edges) most = Math.max(most, now += d);
  assert.equal(most, 100);
});
