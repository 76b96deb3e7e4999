// Events: the worker's dispatcher (online, heartbeat, task events batched as task.multi,
// offline), app.events() as a receiver, and Python's `celery events --dump` reading a
// celeriac worker over Redis.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { EventDispatcher } from "../lib/worker/events.ts";
import { LamportClock } from "../lib/_clock.ts";
import { MemoryBroker } from "../lib/brokers/memory.ts";
import type { BroadcastMessage } from "../lib/brokers/broker.ts";
import type { CeleryEvent } from "../lib/events.ts";
import { eventually, startWorker } from "./_helpers.ts";
import { background, REDIS, REDIS_BACKEND, unique } from "./_control_helpers.ts";

function memoryApp() {
  const url = `memory://${crypto.randomUUID()}`;
  const app = new App({ broker: url, backend: url });
  app.task("ev.add", (x: number, y: number) => x + y);
  app.task("ev.boom", () => {
    throw new RangeError("too big");
  });
  return app;
}

function collect(app: App) {
  const stop = new AbortController();
  const events: CeleryEvent[] = [];
  const ready = Promise.withResolvers<void>();
  const done = (async () => {
    for await (const e of app.events({ signal: stop.signal, onReady: ready.resolve })) {
      events.push(e);
    }
  })();
  return {
    events,
    ready: ready.promise,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await done;
    },
  };
}

Deno.test("a worker sends worker-online, heartbeats, task events with Celery's fields, and worker-offline", async () => {
  await using app = memoryApp();
  await using seen = collect(app);
  await seen.ready;
  const w = startWorker(app, {
    pool: "inline",
    hostname: "ev1@test",
    taskEvents: true,
    heartbeatInterval: 0.2,
  });
  const ok = await app.sendTask("ev.add", [2, 2]);
  const bad = await app.sendTask("ev.boom");
  try {
    assert.equal(await ok.get({ timeout: 5000 }), 4);
    await assert.rejects(() => bad.get({ timeout: 5000 }));
    await eventually(() =>
      seen.events.filter((e) => e.type === "worker-heartbeat").length >= 2 &&
      seen.events.some((e) => e.type === "task-failed")
    );
  } finally {
    await w.stop();
  }
  await eventually(() => seen.events.some((e) => e.type === "worker-offline"));
  const types = seen.events.map((e) => e.type);
  assert.equal(types[0], "worker-online");
  const online = seen.events[0]!;
  for (
    const field of [
      "hostname",
      "utcoffset",
      "pid",
      "clock",
      "freq",
      "active",
      "processed",
      "loadavg",
      "sw_ident",
      "sw_ver",
      "sw_sys",
      "timestamp",
      "type",
    ]
  ) assert.ok(field in online, `worker-online lacks ${field}`);
  assert.equal(online.hostname, "ev1@test");
  assert.equal(online.freq, 0.2);
  const mine = (type: string) => seen.events.filter((e) => e.type === type && e.uuid === ok.id);
  const received = mine("task-received")[0]!;
  assert.equal(received.name, "ev.add");
  assert.equal(received.args, "(2, 2)");
  assert.equal(received.kwargs, "{}");
  assert.equal(mine("task-started").length, 1);
  const succeeded = mine("task-succeeded")[0]!;
  assert.equal(succeeded.result, "4");
  assert.equal(typeof succeeded.runtime, "number");
  const failed = seen.events.find((e) => e.type === "task-failed" && e.uuid === bad.id)!;
  assert.equal(failed.exception, "RangeError('too big')");
  // The clock only moves forward.
  const clocks = seen.events.filter((e) => e.hostname === "ev1@test").map((e) => e.clock!);
  assert.deepEqual(clocks, [...clocks].sort((a, b) => a - b));
  assert.equal(types.at(-1), "worker-offline");
});

Deno.test("task-received carries eta and expires as Python's isoformat, as Celery's strategy sends them", async () => {
  await using app = memoryApp();
  await using seen = collect(app);
  await seen.ready;
  await using _w = startWorker(app, {
    pool: "inline",
    hostname: "ev-eta@test",
    taskEvents: true,
    heartbeatInterval: 0,
  });
  const eta = new Date(Date.now() + 300);
  const expires = new Date(Date.now() + 60_000);
  const r = await app.sendTask("ev.add", [1, 2], {}, { eta, expires });
  assert.equal(await r.get({ timeout: 5000 }), 3);
  await eventually(() => seen.events.some((e) => e.type === "task-received" && e.uuid === r.id));
  const received = seen.events.find((e) => e.type === "task-received" && e.uuid === r.id)!;
  // `datetime.isoformat()` of an aware UTC datetime, not `Date.toISOString()`'s `...Z`.
  const py = (d: Date) => d.toISOString().replace("Z", "000+00:00");
  assert.equal(received.eta, py(eta));
  assert.equal(received.expires, py(expires));
});

Deno.test("without -E a worker sends worker events only; enable_events turns task events on", async () => {
  await using app = memoryApp();
  await using seen = collect(app);
  await seen.ready;
  await using _w = startWorker(app, { pool: "inline", hostname: "ev2@test", heartbeatInterval: 0 });
  await eventually(() => seen.events.some((e) => e.type === "worker-online"));
  await (await app.sendTask("ev.add", [1, 1])).get({ timeout: 5000 });
  assert.ok(!seen.events.some((e) => e.type.startsWith("task-")));
  const replies = await app.control.enableEvents({ reply: true, destination: ["ev2@test"] });
  assert.deepEqual(replies, [{ "ev2@test": { ok: "task events enabled" } }]);
  const r = await app.sendTask("ev.add", [1, 2]);
  await r.get({ timeout: 5000 });
  await eventually(() => seen.events.some((e) => e.type === "task-succeeded" && e.uuid === r.id));
  const off = await app.control.disableEvents({ reply: true, destination: ["ev2@test"] });
  assert.deepEqual(off, [{ "ev2@test": { ok: "task events disabled" } }]);
});

Deno.test("task events are batched into one task.multi message whose body is a list", async () => {
  const url = `memory://${crypto.randomUUID()}`;
  await using broker = new MemoryBroker(url);
  const messages: BroadcastMessage[] = [];
  const stop = new AbortController();
  const ready = Promise.withResolvers<void>();
  const reading = (async () => {
    for await (
      const m of broker.subscribe("celeryev", { signal: stop.signal, onReady: ready.resolve })
    ) {
      messages.push(m);
    }
  })();
  await ready.promise;
  const events = new EventDispatcher(broker, {
    hostname: "b@test",
    clock: new LamportClock(),
    taskEvents: true,
    bufferLimit: 3,
  });
  for (let i = 0; i < 4; i++) await events.send("task-started", { uuid: String(i) });
  await events.send("worker-heartbeat", { freq: 2 });
  await events.close();
  stop.abort();
  await reading;
  const multi = messages.filter((m) => m.routingKey === "task.multi");
  assert.deepEqual(multi.map((m) => JSON.parse(m.message.body).length), [3, 1]);
  const beat = messages.find((m) => m.routingKey === "worker.heartbeat")!;
  assert.equal(JSON.parse(beat.message.body).type, "worker-heartbeat");
  assert.equal(beat.message.headers.hostname, "b@test");
});

Deno.test("Python `celery events --dump` prints a celeriac worker's task-succeeded events", async () => {
  const queue = unique("ev-q");
  const host = `${unique("celeriac")}@test`;
  await using app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("ev.add", (x: number, y: number) => x + y);
  await using dump = background("/usr/bin/python3", [
    "-m",
    "celery",
    "-A",
    "control_app",
    "-b",
    REDIS,
    "events",
    "--dump",
  ], { PYTHONUNBUFFERED: "1" });
  await dump.waitFor("starting capture");
  // The dumper subscribes after that line: heartbeats (every 2 s) show when it listens.
  const w = startWorker(app, { pool: "inline", hostname: host, taskEvents: true });
  try {
    await dump.waitFor(`${host} [`, 20_000);
    const r = await app.sendTask("ev.add", [20, 22]);
    assert.equal(await r.get({ timeout: 5000 }), 42);
    await dump.waitFor(new RegExp(`task succeeded: ev\\.add\\(${r.id}\\).*result=42`), 10_000);
    assert.match(
      dump.output(),
      new RegExp(`task received: ev\\.add\\(${r.id}\\) args=\\(20, 22\\)`),
    );
    assert.match(dump.output(), /sw_ident=celeriac, sw_sys=Linux/);
  } finally {
    await w.stop();
    await dump.stop();
  }
});
