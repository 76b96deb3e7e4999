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
  soft,
  spin,
  window,
} from "./apps/core_app.ts";
import { startWorker } from "./_helpers.ts";

Deno.test("workers pool: 1,000 tasks through memory:// all return the right values", async () => {
  await using _worker = startWorker(app, { concurrency: 2 });
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => add.delay(i, i)));
  const values = await Promise.all(results.map((r) => r.get({ timeout: 30_000 })));
  assert.deepEqual(values, Array.from({ length: 1000 }, (_, i) => 2 * i));
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
