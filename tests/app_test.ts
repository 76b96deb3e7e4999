// App, Task and results with the inline pool (tasks on the main isolate) and eager mode.
import assert from "node:assert/strict";
import {
  App,
  Consumer,
  NotRegistered,
  TaskRevokedError,
  TimeLimitExceeded,
} from "@celeriac/celeriac";
import type { MemoryBroker } from "@celeriac/celeriac/transport";

function freshApp(options: ConstructorParameters<typeof App>[0] = {}) {
  const ns = crypto.randomUUID();
  return new App({ broker: `memory://${ns}`, backend: `memory://${ns}`, ...options });
}

Deno.test("constructing an App opens nothing and close() is idempotent", async () => {
  const app = new App({ broker: "redis://127.0.0.1:1/0", backend: "memory://" });
  app.task("t", () => 1);
  await app.close();
  await app.close();
});

Deno.test("sendTask() refuses args that are not a list and kwargs that are not an object", async () => {
  await using app = freshApp();
  await assert.rejects(() => app.sendTask("t", "x" as unknown as unknown[]), TypeError);
  await assert.rejects(
    () => app.sendTask("t", [], [] as unknown as Record<string, unknown>),
    TypeError,
  );
});

Deno.test("routes send tasks to their queue: exact names, prefixes, then the task's own queue", async () => {
  await using app = freshApp({ routes: { "reports.daily": "slow", "images.*": { queue: "gpu" } } });
  app.task("other.x", () => 1, { queue: "own" });
  assert.equal(app.route("reports.daily"), "slow");
  assert.equal(app.route("images.resize"), "gpu");
  assert.equal(app.route("other.x"), "own");
  assert.equal(app.route("nothing"), "celery");
  assert.equal(app.route("images.resize", "explicit"), "explicit");
});

Deno.test("inline pool: results, failures and unknown tasks", async () => {
  await using app = freshApp();
  const add = app.task("add", async (x: number, y: number) => {
    await new Promise((r) => setTimeout(r, 1));
    return x + y;
  });
  const controller = new AbortController();
  const worker = new Consumer(app, { pool: "inline", concurrency: 50, signal: controller.signal });
  const running = worker.run();
  const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => add.delay(i, 1)));
  const values = await Promise.all(rs.map((r) => r.get({ timeout: 10_000 })));
  assert.deepEqual(values, Array.from({ length: 200 }, (_, i) => i + 1));
  await assert.rejects(
    async () => (await app.sendTask("nope")).get({ timeout: 5000 }),
    NotRegistered,
  );
  assert.equal(worker.processed, 200);
  controller.abort();
  await running;
});

Deno.test("inline pool: a hard limit reports TimeLimitExceeded and aborts the task's signal", async () => {
  await using app = freshApp();
  let aborted = false;
  const hang = app.task("hang", function () {
    return new Promise((resolve) => {
      this.signal.addEventListener("abort", () => {
        aborted = true;
        resolve(null);
      });
    });
  }, { timeLimit: 0.2 });
  const controller = new AbortController();
  const running = new Consumer(app, { pool: "inline", signal: controller.signal }).run();
  await assert.rejects(async () => (await hang.delay()).get({ timeout: 5000 }), TimeLimitExceeded);
  assert.ok(aborted);
  controller.abort();
  await running;
});

Deno.test("an expired task is REVOKED without running", async () => {
  await using app = freshApp();
  let ran = false;
  const t = app.task("t", () => ran = true);
  const r = await t.applyAsync([], {}, { expires: new Date(Date.now() - 1000) });
  const controller = new AbortController();
  const running = new Consumer(app, { pool: "inline", signal: controller.signal }).run();
  await assert.rejects(() => r.get({ timeout: 5000 }), (e: Error) => {
    assert.ok(e instanceof TaskRevokedError);
    assert.equal(e.message, "expired");
    return true;
  });
  assert.equal(ran, false);
  controller.abort();
  await running;
});

Deno.test("revoke() stops a task before it runs", async () => {
  await using app = freshApp();
  let ran = false;
  const t = app.task("t", () => ran = true);
  const controller = new AbortController();
  const running = new Consumer(app, { pool: "inline", signal: controller.signal }).run();
  await new Promise((r) => setTimeout(r, 50)); // the worker subscribes to remote control
  const r = await t.applyAsync([], {}, { countdown: 0.5 });
  await r.revoke();
  await assert.rejects(() => r.get({ timeout: 5000 }), TaskRevokedError);
  assert.equal(ran, false);
  controller.abort();
  await running;
});

Deno.test("a countdown task waits in the broker, not in the worker, and runs after its ETA", async () => {
  await using app = freshApp();
  const t = app.task("t", () => Date.now());
  const controller = new AbortController();
  const running = new Consumer(app, { pool: "inline", signal: controller.signal }).run();
  const sent = Date.now();
  const r = await t.applyAsync([], {}, { countdown: 0.3 });
  const ranAt = await r.get({ timeout: 5000 }) as number;
  assert.ok(ranAt - sent >= 280, `ran after ${ranAt - sent} ms`);
  controller.abort();
  await running;
});

Deno.test("warm shutdown requeues prefetched messages that had not started", async () => {
  const ns = crypto.randomUUID();
  await using app = new App({ broker: `memory://${ns}`, backend: `memory://${ns}` });
  const slow = app.task("slow", (ms: number) => new Promise((r) => setTimeout(() => r(ms), ms)));
  for (let i = 0; i < 6; i++) await slow.delay(300);
  const controller = new AbortController();
  const worker = new Consumer(app, { pool: "inline", concurrency: 2, signal: controller.signal });
  const running = worker.run();
  await new Promise((r) => setTimeout(r, 100));
  controller.abort();
  await running;
  assert.equal(worker.processed, 2);
  const broker = await app.getBroker() as MemoryBroker;
  assert.equal(broker.size("celery"), 4);
});

Deno.test("apply() runs eagerly, with retries, and returns an EagerResult", async () => {
  await using app = freshApp();
  let calls = 0;
  const flaky = app.task("flaky", function (x: number) {
    calls++;
    if (this.retries < 2) this.retry({ countdown: 60 });
    return x * this.retries;
  });
  const r = flaky.apply([21]);
  assert.equal(await r.get(), 42);
  assert.equal(await r.state(), "SUCCESS");
  assert.equal(calls, 3);
  const boom = app.task("boom", () => {
    throw new RangeError("no");
  });
  await assert.rejects(() => boom.apply().get(), /no/);
  assert.equal(await boom.apply().state(), "FAILURE");
});

Deno.test("taskAlwaysEager runs tasks when sent and stores their results", async () => {
  await using app = freshApp({ taskAlwaysEager: true });
  const add = app.task("add", (x: number, y: number) => x + y);
  const r = await add.delay(1, 2);
  assert.equal(await r.state(), "SUCCESS");
  assert.equal(await r.get(), 3);
});

Deno.test("a malformed message is rejected visibly and the worker keeps running", async () => {
  await using app = freshApp();
  const add = app.task("add", (x: number, y: number) => x + y);
  const broker = await app.getBroker() as MemoryBroker;
  const rejected: unknown[] = [];
  app.addEventListener("taskRejected", (e) => rejected.push((e as CustomEvent).detail));
  await broker.publish("celery", {
    headers: { task: "add", id: "bad" },
    properties: {},
    body: "{not json",
    contentType: "application/json",
    contentEncoding: "utf-8",
  });
  await broker.publish("celery", {
    headers: {},
    properties: {},
    body: "[]",
    contentType: "application/x-python-serialize",
    contentEncoding: "binary",
  });
  const controller = new AbortController();
  const running = new Consumer(app, { pool: "inline", signal: controller.signal }).run();
  assert.equal(await (await add.delay(1, 1)).get({ timeout: 5000 }), 2);
  assert.equal(rejected.length, 2);
  assert.equal(broker.deadLetters("celery").length, 2);
  controller.abort();
  await running;
});
