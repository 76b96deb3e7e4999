// RabbitMQ failure modes on a private node (never the shared one): the broker restarted in
// the middle of a run loses no task and the worker carries on by itself; a countdown longer
// than RabbitMQ's consumer_timeout runs once and the worker's channel survives.
// One node serves the whole file; the last test stops it.
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { App, AsyncResult, Consumer } from "@celeriac/celeriac";
import { eventually } from "./_helpers.ts";
import type { AmqpBroker } from "../lib/brokers/amqp.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { REDIS_BACKEND, unique } from "./_control_helpers.ts";
import { type RabbitNode, startRabbitNode } from "./_rabbitmq_node.ts";

const CONSUMER_TIMEOUT = 5_000;

let started: Promise<RabbitNode> | undefined;
// The node starts on first use. consumer_timeout is checked on each channel tick, every 60 s
// by default: a 500 ms tick makes the 5 s timeout bite on time.
const rabbit = () =>
  started ??= startRabbitNode({
    config: [`consumer_timeout = ${CONSUMER_TIMEOUT}`],
    advanced: "[{rabbit, [{channel_tick_interval, 500}]}].",
  });

/** Runs a consumer; `ended` tells whether `run()` returned (it must not, until stopped). */
function runWorker(app: App, hostname: string, queue: string) {
  const controller = new AbortController();
  const consumer = new Consumer(app, {
    pool: "inline",
    concurrency: 20,
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
    consumer,
    state,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await running;
    },
  };
}

interface ConsumerRow {
  queue_name: string;
  consumer_tag: string;
  channel_pid: string;
}

async function consumersOf(node: RabbitNode, queue: string): Promise<ConsumerRow[]> {
  const out = await node.ctl(
    "list_consumers",
    "-q",
    "--formatter",
    "json",
    "queue_name",
    "consumer_tag",
    "channel_pid",
  );
  return (JSON.parse(out) as ConsumerRow[]).filter((r) => r.queue_name === queue);
}

Deno.test("amqp restart: RabbitMQ stop_app/start_app mid-run loses no acksLate task; the worker carries on", async () => {
  const node = await rabbit();
  const N = 2000;
  const queue = unique("restart-q");
  const host = `${unique("celeriac")}@test`;
  await using app = new App({
    broker: node.url,
    backend: REDIS_BACKEND,
    defaultQueue: queue,
    acksLate: true,
  });
  const runs = new Map<number, number>();
  app.task("restart.mark", async (i: number) => {
    runs.set(i, (runs.get(i) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 40));
    return i;
  });
  await using worker = runWorker(app, host, queue);
  await eventually(async () =>
    Object.keys(await app.control.inspect({ destination: [host] }).ping().collect()).length === 1
  );
  const ids: string[] = [];
  let published = 0;
  // Paced, and holding its second half until the broker is back, so that the restart lands
  // in the middle of both publishing and consuming however slow the machine is.
  const halfway = Promise.withResolvers<void>();
  const resumed = Promise.withResolvers<void>();
  const producing = (async () => {
    for (let i = 0; i < N; i += 50) {
      if (i === N / 2) {
        halfway.resolve();
        await resumed.promise;
      }
      const batch = Array.from({ length: Math.min(50, N - i) }, (_, k) => i + k);
      const results = await Promise.all(batch.map((j) => app.sendTask("restart.mark", [j])));
      ids.push(...results.map((r) => r.id));
      published += batch.length;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await halfway.promise;
  await eventually(() => runs.size >= N / 8, 30_000);
  const down = { published, ran: runs.size };
  await node.stopApp();
  await new Promise((r) => setTimeout(r, 1_000));
  await node.startApp();
  const up = { published, ran: runs.size };
  resumed.resolve();
  await producing;
  await eventually(() => runs.size === N, 60_000);
  assert.ok(down.ran < N && down.published < N, `restarted mid-run: ${JSON.stringify(down)}`);
  assert.equal(worker.state.ended, false, `the worker stopped: ${worker.state.error}`);
  // Every task ran, and every result is stored once under its own id.
  assert.equal(ids.length, N);
  assert.equal(new Set(ids).size, N);
  for (let i = 0; i < N; i++) assert.ok(runs.has(i), `task ${i} never ran`);
  // The last tasks may still be storing their results.
  let pending = ids;
  await eventually(async () => {
    const states = await Promise.all(pending.map((id) => new AsyncResult(id, app).state()));
    pending = pending.filter((_, k) => states[k] !== "SUCCESS");
    return pending.length === 0;
  }, 10_000).catch(() => assert.deepEqual(pending, [], "results missing"));
  // Tasks running while the connection died run again (at-least-once), nothing more.
  const twice = [...runs.values()].filter((n) => n > 1).length;
  assert.ok(twice <= 200, `${twice} tasks ran more than once`);
  // The connection was lost and reopened by the broker itself, not by a new worker.
  const broker = await app.getBroker() as AmqpBroker;
  assert.ok(broker.connection.generation >= 2, `generation ${broker.connection.generation}`);
  // The same worker is still consuming and answers remote control.
  assert.equal((await consumersOf(node, queue)).length, 1);
  const pong = await app.control.inspect({ destination: [host], timeout: 3000 }).ping().collect();
  assert.deepEqual(pong, { [host]: { ok: "pong" } });
  // deno-lint-ignore no-console
  console.log(
    `restart: ${N} tasks; broker down at ${JSON.stringify(down)}, back at ${
      JSON.stringify(up)
    }; ran twice: ${twice}`,
  );
  await (await app.getBroker()).purge(queue);
});

Deno.test("amqp restart: a countdown longer than consumer_timeout runs once and the channel survives", async () => {
  const node = await rabbit();
  // The node does enforce the timeout: a consumer sitting on an unacked message loses its channel.
  const conn = await amqp.connect(node.url.replace(/\/\/$/, "/%2F"));
  try {
    const control = unique("timeout-control");
    const ch = await conn.createChannel();
    const closed = new Promise<string>((resolve) => {
      ch.on("error", (e: Error) => resolve(e.message));
      ch.on("close", () => resolve("closed"));
    });
    await ch.assertQueue(control, { autoDelete: true });
    ch.sendToQueue(control, Buffer.from("hold me"));
    await ch.consume(control, () => {}, { noAck: false });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const why = await Promise.race([
      closed,
      new Promise((r) => timer = setTimeout(() => r("still open"), CONSUMER_TIMEOUT + 5_000)),
    ]);
    clearTimeout(timer);
    assert.match(String(why), /PRECONDITION_FAILED|timed out/, String(why));
  } finally {
    await conn.close();
  }

  const queue = unique("countdown-q");
  const host = `${unique("celeriac")}@test`;
  await using app = new App({ broker: node.url, backend: REDIS_BACKEND, defaultQueue: queue });
  const runs: { name: string; at: number }[] = [];
  app.task("countdown.once", () => {
    runs.push({ name: "once", at: Date.now() });
    return "once";
  });
  app.task("countdown.python", () => {
    runs.push({ name: "python", at: Date.now() });
    return "python";
  });
  app.task("countdown.after", () => {
    runs.push({ name: "after", at: Date.now() });
    return "after";
  });
  await using worker = runWorker(app, host, queue);
  await eventually(async () => (await consumersOf(node, queue)).length === 1);
  const [before] = await consumersOf(node, queue);
  const sent = Date.now();
  // Two countdowns: celeriac's (parked in RabbitMQ by schedule()) and one as Python Celery
  // sends it (an `eta` header on a plain publish, which the worker hands back to schedule()).
  const r = await app.sendTask("countdown.once", [], {}, { countdown: 8 });
  const pyId = crypto.randomUUID();
  const broker = await app.getBroker();
  await broker.publish(
    queue,
    encodeTask({
      id: pyId,
      name: "countdown.python",
      args: [],
      kwargs: {},
      eta: new Date(sent + 8_000),
    }),
  );
  assert.equal(await r.get({ timeout: 20_000 }), "once");
  assert.equal(await new AsyncResult(pyId, app).get({ timeout: 5_000 }), "python");
  for (const run of runs) {
    assert.ok(run.at - sent >= 7_900, `${run.name} after ${run.at - sent} ms`);
  }
  // Longer than a consumer_timeout tick: no second delivery shows up.
  await new Promise((r) => setTimeout(r, 2_000));
  assert.deepEqual(runs.map((x) => x.name).sort(), ["once", "python"]);
  // The worker's consumer is the same one (same tag, same channel) and still takes work.
  const after = await app.sendTask("countdown.after");
  assert.equal(await after.get({ timeout: 5_000 }), "after");
  assert.deepEqual(await consumersOf(node, queue), [before]);
  assert.equal(worker.state.ended, false);
});

Deno.test("amqp restart: stop the private RabbitMQ node", async () => {
  if (started) await (await started.catch(() => undefined))?.stop();
});
