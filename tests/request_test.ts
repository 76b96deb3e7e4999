// One delivery, one fate: the settle table, and request-level faults a Python client can cause
// (a listener that throws, a cyclic return value, an errback carrying an int above 2^53), on
// memory:// with the inline pool.
import assert from "node:assert/strict";
import { App, type TaskContext } from "@celeriac/celeriac";
import type { MemoryBroker } from "@celeriac/celeriac/transport";
import { encodeTask } from "../lib/protocol/message.ts";
import { type AckOptions, decideSettle, type Ending } from "../lib/worker/settle.ts";
import { eventually, startWorker } from "./_helpers.ts";

function freshApp() {
  const id = crypto.randomUUID();
  return new App({ broker: `memory://req-${id}`, backend: `memory://req-${id}`, maxDeliveries: 3 });
}

const LATE: AckOptions = {
  acksLate: true,
  acksOnFailureOrTimeout: true,
  rejectOnWorkerLost: false,
  cold: false,
  exhausted: false,
};

Deno.test("decideSettle: admission endings settle alike in both ack modes", () => {
  const table: [Ending, string][] = [
    ["malformed", "dead-letter"],
    ["unregistered", "dead-letter"],
    ["poison", "dead-letter"],
    ["revoked", "ack"],
    ["rescheduled", "ack"],
    ["shutdown", "requeue"],
    ["internal", "requeue"],
  ];
  for (const [ending, settle] of table) {
    assert.equal(decideSettle(ending, false, LATE), settle, ending);
    assert.equal(decideSettle(ending, false, { ...LATE, acksLate: false }), settle, ending);
  }
  assert.equal(decideSettle("internal", false, { ...LATE, exhausted: true }), "dead-letter");
});

Deno.test("decideSettle: after the run, late ack follows the task's ack options", () => {
  assert.equal(decideSettle("success", false, LATE), "ack");
  assert.equal(decideSettle("failure", false, LATE), "ack");
  assert.equal(
    decideSettle("failure", false, { ...LATE, acksOnFailureOrTimeout: false }),
    "dead-letter",
  );
  assert.equal(
    decideSettle("timeout", false, { ...LATE, acksOnFailureOrTimeout: false }),
    "dead-letter",
  );
  assert.equal(decideSettle("reject", false, LATE), "dead-letter");
  assert.equal(decideSettle("reject-requeue", false, LATE), "requeue");
  assert.equal(decideSettle("lost", false, LATE), "ack");
  assert.equal(decideSettle("lost", false, { ...LATE, rejectOnWorkerLost: true }), "requeue");
  assert.equal(
    decideSettle("lost", false, { ...LATE, rejectOnWorkerLost: true, exhausted: true }),
    "dead-letter",
  );
  assert.equal(decideSettle("lost", false, { ...LATE, cold: true, exhausted: true }), "requeue");
  assert.equal(decideSettle("unstored", false, LATE), "requeue");
  assert.equal(decideSettle("unstored", false, { ...LATE, exhausted: true }), "dead-letter");
});

Deno.test("decideSettle: with early ack nothing is left to do but republish a requeueing Reject", () => {
  const early = { ...LATE, acksLate: false };
  for (const ending of ["success", "failure", "timeout", "lost", "reject", "internal"] as const) {
    assert.equal(decideSettle(ending, true, early), "none", ending);
  }
  assert.equal(decideSettle("reject-requeue", true, early), "requeue");
});

Deno.test("a signal listener that throws is logged and the worker carries on", async () => {
  const app = freshApp();
  const logged: string[] = [];
  app.logger = { debug() {}, info() {}, warn() {}, error: (m: string) => void logged.push(m) };
  const add = app.task("req.add", (x: number, y: number) => x + y);
  app.addEventListener("taskReceived", () => {
    throw new RangeError("listener boom");
  });
  app.addEventListener("taskSuccess", () => Promise.reject(new Error("async listener boom")));
  await using _worker = startWorker(app, { pool: "inline" });
  const r = await add.delay(2, 3);
  assert.equal(await r.get({ timeout: 5000 }), 5);
  assert.equal(await (await add.delay(1, 1)).get({ timeout: 5000 }), 2);
  await eventually(() => logged.some((m) => /async listener boom/.test(m)));
  assert.ok(
    logged.some((m) => /listener of taskReceived failed: RangeError: listener boom/.test(m)),
  );
  await app.close();
});

Deno.test("a task returning a cyclic object fails with EncodeError, and the worker carries on", async () => {
  const app = freshApp();
  const cyclic = app.task("req.cyclic", () => {
    const a: Record<string, unknown> = {};
    a.self = a;
    return a;
  });
  const ok = app.task("req.ok", () => "ok");
  await using _worker = startWorker(app, { pool: "inline", taskEvents: true });
  const r = await cyclic.delay();
  await assert.rejects(r.get({ timeout: 5000 }), (e: Error) => e.name === "EncodeError");
  assert.equal(await (await ok.delay()).get({ timeout: 5000 }), "ok");
  await app.close();
});

Deno.test("failing tasks whose errback carries an int above 2^53 do not wedge a -c 1 worker", async () => {
  const app = freshApp();
  const seen: unknown[] = [];
  app.task("req.fail", () => {
    throw new Error("boom");
  });
  app.task("req.handler", (_failed: string, big: unknown) => void seen.push(big));
  const good = app.task("req.good", (i: number) => i);
  const broker = await app.getBroker();
  // What a Python client sends for `fail.apply_async(link_error=handler.s(10**23))`.
  const errback =
    `{"task": "req.handler", "args": [100000000000000000000000], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}`;
  for (let i = 0; i < 4; i++) {
    const id = crypto.randomUUID();
    const message = encodeTask({ id, name: "req.fail", args: [], kwargs: {} });
    message.body =
      `[[], {}, {"callbacks": null, "errbacks": [${errback}], "chain": null, "chord": null}]`;
    await broker.publish("celery", message);
  }
  await using _worker = startWorker(app, { pool: "inline", concurrency: 1 });
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => good.delay(i)));
  const values = await Promise.all(results.map((r) => r.get({ timeout: 10_000 })));
  assert.deepEqual(values, Array.from({ length: 20 }, (_, i) => i));
  await eventually(() => seen.length === 4);
  assert.equal(seen[0], 100000000000000000000000n);
  await app.close();
});

Deno.test("warm shutdown with a timeout stops a task that runs on and requeues it (late ack)", async () => {
  const app = freshApp();
  let started = 0;
  const slow = app.task("req.slow", async function (this: TaskContext) {
    started++;
    // Ignores its soft signal for a long while; only the pool's stop ends it.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 60_000);
      this.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }, { acksLate: true });
  const worker = startWorker(app, { pool: "inline", shutdownTimeout: 0.3 });
  await slow.delay();
  await eventually(() => started === 1);
  const t0 = Date.now();
  await worker.stop();
  assert.ok(Date.now() - t0 < 5000, `warm shutdown took ${Date.now() - t0} ms`);
  const broker = (await app.getBroker()) as MemoryBroker;
  assert.equal(await broker.purge("celery"), 1, "the message went back to its queue");
  await app.close();
});

Deno.test("a bzip2-compressed body fails its task id clearly (stored FAILURE, task-failed), then is dead-lettered", async () => {
  const app = freshApp();
  app.task("req.add", (x: number, y: number) => x + y);
  const failed: { id: string; exception: { exc_type: string } }[] = [];
  app.addEventListener("taskFailure", (e) => void failed.push(e.detail));
  const broker = (await app.getBroker()) as MemoryBroker;
  const id = crypto.randomUUID();
  const message = encodeTask({ id, name: "req.add", args: [1, 2], kwargs: {} });
  // The headers as kombu writes them for compression='bzip2'; the body is never read.
  message.headers.compression = "application/x-bz2";
  message.contentEncoding = "binary";
  message.body = "BZh91AY&SY...";
  await broker.publish("celery", message);
  await using _worker = startWorker(app, { pool: "inline" });
  await assert.rejects(
    app.asyncResult(id).get({ timeout: 5000 }),
    (e: Error) =>
      e.name === "DecodeError" && /compressed with bzip2/.test(e.message) &&
      /supported: gzip, zlib, brotli/.test(e.message),
  );
  await eventually(() => broker.deadLetters("celery").length === 1);
  assert.equal(broker.deadLetters("celery")[0]!.headers.id, id);
  assert.deepEqual(failed.map((f) => [f.id, f.exception.exc_type]), [[id, "DecodeError"]]);
  await app.close();
});
