import assert from "node:assert/strict";
import type amqp from "amqplib";
import { AmqpBroker } from "../lib/brokers/amqp.ts";
import { ChannelAcks } from "../lib/brokers/_amqp_acks.ts";
import type { Delivery } from "../lib/brokers/broker.ts";
import { createBroker } from "../lib/transport/registry.ts";
import { decodeTask, encodeTask, type Message } from "../lib/protocol/message.ts";
import { brokerSuite } from "./_broker_suite.ts";
import { AMQP_URL, cleanup, python, queueCounts, taskQueueNames } from "./_amqp_helpers.ts";

const made: string[] = [];
function uniqueQueue(tag = "t") {
  const q = `celeriac-test-${tag}-${crypto.randomUUID()}`;
  made.push(q);
  return q;
}

brokerSuite("amqp broker", (options = {}) => {
  const queue = uniqueQueue("suite");
  made.push(`${queue}.a`, `${queue}.b`, `${queue}.dlq`);
  const broker = new AmqpBroker(AMQP_URL, options);
  return Promise.resolve({
    broker,
    queue,
    releaseMarksRedelivered: true,
    // The dead letters are the durable queue `<queue>.dlq`: read (and ack) what it holds.
    deadLetters: async (q: string) => {
      const out: Message[] = [];
      const signal = AbortSignal.timeout(1_000);
      for await (const d of broker.consume([`${q}.dlq`], { prefetch: 0, signal })) {
        out.push(d.message);
        await d.ack();
      }
      return out;
    },
  });
});

type Call = Parameters<typeof encodeTask>[0];
const task = (id: string, extra: Partial<Call> = {}) =>
  encodeTask({ ...{ id, name: "tasks.add", args: [2, 3], kwargs: {} }, ...extra });

async function first(broker: AmqpBroker, queues: string[], timeout = 10_000) {
  const signal = AbortSignal.timeout(timeout);
  for await (const d of broker.consume(queues, { prefetch: 1, signal })) return d;
  throw new Error("no delivery");
}

Deno.test("createBroker('amqp://') makes an AmqpBroker and hides the password", async () => {
  await using broker = await createBroker("amqp://guest:secret@127.0.0.1:5672//");
  assert.ok(broker instanceof AmqpBroker);
  assert.equal(broker.url, "amqp://guest:***@127.0.0.1:5672//");
});

Deno.test("a bad amqp URL or option is a clear error", () => {
  assert.throws(() => new AmqpBroker("amqp://[bad"), TypeError);
  assert.throws(() => new AmqpBroker(AMQP_URL, { maxPriority: 0 }), RangeError);
});

Deno.test("headers round-trip through the AMQP field table: null, nested arrays, numbers", async () => {
  const queue = uniqueQueue("hdr");
  await using broker = new AmqpBroker(AMQP_URL);
  const m = task("hdr-1", {
    id: "hdr-1",
    name: "tasks.add",
    args: [],
    kwargs: {},
    timeLimit: null,
    retries: 300,
    headers: {
      "x-neg": -5,
      "x-big": 2 ** 40,
      "x-float": 1.5,
      "x-nested": { a: [1, "x", true, null], "!": "bang" },
    },
  });
  await broker.publish(queue, m);
  const d = await first(broker, [queue]);
  await d.ack();
  assert.deepEqual(d.message.headers.timelimit, [null, null]);
  assert.equal(d.message.headers.shadow, null);
  assert.equal(d.message.headers.retries, 300);
  assert.equal(d.message.headers["x-neg"], -5);
  assert.equal(d.message.headers["x-big"], 2 ** 40);
  assert.equal(d.message.headers["x-float"], 1.5);
  assert.deepEqual(d.message.headers["x-nested"], { a: [1, "x", true, null], "!": "bang" });
  assert.equal(d.message.properties.correlation_id, "hdr-1");
  assert.equal(d.message.properties.delivery_mode, 2);
  assert.equal(decodeTask(d.message).retries, 300);
});

Deno.test("Python kombu reads a celeriac message: V nulls, A arrays, typed ints", async () => {
  const queue = uniqueQueue("py-read");
  await using broker = new AmqpBroker(AMQP_URL);
  await broker.publish(
    queue,
    task("py-1", {
      id: "py-1",
      name: "tasks.add",
      args: [2, 3],
      kwargs: { y: 1 },
      retries: 300,
      timeLimit: 30,
      headers: { "x-neg": -5, "x-big": 2 ** 40, "x-nested": { a: [1, null, [true]] } },
    }),
  );
  const out = await python(
    `
import json, sys
from kombu import Connection, Queue
with Connection(sys.argv[1]) as conn:
    q = Queue(sys.argv[2], durable=True)
    with conn.SimpleQueue(q) as sq:
        m = sq.get(timeout=10)
        print(json.dumps({"headers": m.headers, "props": {k: m.properties.get(k) for k in
          ("correlation_id", "delivery_mode", "priority", "reply_to")},
          "ct": m.content_type, "body": m.decode()}, default=str))
        m.ack()
`,
    [AMQP_URL, queue],
  );
  const got = JSON.parse(out);
  assert.equal(got.headers.task, "tasks.add");
  assert.deepEqual(got.headers.timelimit, [30, null]);
  assert.equal(got.headers.retries, 300);
  assert.equal(got.headers["x-neg"], -5);
  assert.equal(got.headers["x-big"], 2 ** 40);
  assert.deepEqual(got.headers["x-nested"], { a: [1, null, [true]] });
  assert.equal(got.headers.eta, null);
  assert.equal(got.props.correlation_id, "py-1");
  assert.equal(got.props.delivery_mode, 2);
  assert.equal(got.ct, "application/json");
  assert.deepEqual(got.body, [[2, 3], { y: 1 }, {
    callbacks: null,
    errbacks: null,
    chain: null,
    chord: null,
  }]);
});

Deno.test("a Python apply_async message is decoded by celeriac", async () => {
  const queue = uniqueQueue("py-send");
  await using broker = new AmqpBroker(AMQP_URL);
  // Declare first, so that the Python side finds the same layout.
  await broker.purge(queue);
  const out = await python(
    `
import sys
from celery import Celery
app = Celery("t", broker=sys.argv[1])
r = app.send_task("tasks.add", args=[2], kwargs={"y": 2}, queue=sys.argv[2],
                  countdown=0, time_limit=30, soft_time_limit=20, headers={"x-custom": "v"},
                  expires=600)
print(r.id)
`,
    [AMQP_URL, queue],
  );
  const id = out.trim();
  const d = await first(broker, [queue]);
  await d.ack();
  const req = decodeTask(d.message);
  assert.equal(req.id, id);
  assert.equal(req.name, "tasks.add");
  assert.deepEqual(req.args, [2]);
  assert.deepEqual(req.kwargs, { y: 2 });
  assert.deepEqual(req.timeLimit, [30, 20]);
  assert.equal(req.headers["x-custom"], "v");
  assert.ok(req.expires instanceof Date);
  assert.equal(d.message.properties.delivery_mode, 2);
  assert.ok(d.message.properties.reply_to, "reply_to is the Python oid");
});

Deno.test("reject with requeue counts deliveries and dead-letters after maxDeliveries", async () => {
  const queue = uniqueQueue("dlq");
  await using broker = new AmqpBroker(AMQP_URL, { maxDeliveries: 3 });
  await broker.publish(queue, task("poison"));
  const counts: number[] = [];
  const signal = AbortSignal.timeout(10_000);
  for await (const d of broker.consume([queue], { prefetch: 1, signal })) {
    counts.push(d.deliveryCount);
    await d.reject({ requeue: true });
    if (counts.length === 3) break;
  }
  assert.deepEqual(counts, [1, 2, 3]);
  const dead = await first(broker, [`${queue}.dlq`]);
  assert.equal(dead.message.headers.id, "poison");
  await dead.ack();
  assert.equal(await broker.purge(queue), 0);
});

Deno.test("priority queues deliver the highest priority first", async () => {
  const queue = uniqueQueue("prio");
  await using broker = new AmqpBroker(AMQP_URL, { maxPriority: 10 });
  await broker.publish(queue, task("low"), { priority: 1 });
  await broker.publish(queue, task("high"), { priority: 9 });
  await broker.publish(queue, task("mid"), { priority: 5 });
  const got: string[] = [];
  for await (
    const d of broker.consume([queue], { prefetch: 1, signal: AbortSignal.timeout(10_000) })
  ) {
    got.push(d.message.headers.id as string);
    await d.ack();
    if (got.length === 3) break;
  }
  assert.deepEqual(got, ["high", "mid", "low"]);
});

Deno.test("a queue that exists with other arguments is adopted as it is (Celery's declaration wins)", async () => {
  const queue = uniqueQueue("adopt");
  {
    await using plain = new AmqpBroker(AMQP_URL);
    await plain.publish(queue, task("x"));
  }
  // Asked for priorities, it finds a plain queue: it uses it instead of failing with 406.
  await using prio = new AmqpBroker(AMQP_URL, { maxPriority: 5 });
  await prio.publish(queue, task("y"));
  const seen: string[] = [];
  for await (
    const d of prio.consume([queue], { prefetch: 2, signal: AbortSignal.timeout(10_000) })
  ) {
    seen.push(d.message.headers.id as string);
    await d.ack();
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen.sort(), ["x", "y"]);
});

Deno.test("a countdown waits in RabbitMQ, not in a consumer's prefetch slot", async () => {
  // Celery holds ETA messages unacked in the worker: they fill prefetch and trip RabbitMQ's
  // consumer_timeout (#6760). Here, with prefetch 1, a message sent during the countdown is
  // served before the scheduled one, which arrives only after its ETA.
  const queue = uniqueQueue("eta");
  await using broker = new AmqpBroker(AMQP_URL);
  const eta = new Date(Date.now() + 2_000);
  await broker.schedule(queue, task("eta-1"), eta);
  await broker.publish(queue, task("now"));
  const seen: string[] = [];
  for await (
    const d of broker.consume([queue], { prefetch: 1, signal: AbortSignal.timeout(15_000) })
  ) {
    seen.push(d.message.headers.id as string);
    if (seen.length === 1) await broker.publish(queue, task("during"));
    await d.ack();
    if (d.message.headers.id === "eta-1") {
      assert.ok(Date.now() >= eta.getTime(), "delivered before its ETA");
      assert.deepEqual(decodeTask(d.message).args, [2, 3]);
      assert.equal(d.message.headers.celeriac_delayed_to, undefined);
      assert.equal(d.message.headers["x-death"], undefined);
    }
    if (seen.length === 3) break;
  }
  assert.deepEqual(seen, ["now", "during", "eta-1"]);
  assert.equal((await queueCounts(queue)).ready, 0);
});

Deno.test("consume resumes after the connection is killed and no message is lost", async () => {
  const queue = uniqueQueue("recover");
  await using broker = new AmqpBroker(AMQP_URL, { connectionName: `celeriac-test-${queue}` });
  const n = 20;
  for (let i = 0; i < n; i++) await broker.publish(queue, task(`r-${i}`));
  const acked = new Set<string>();
  let killed = false;
  let redelivered = 0;
  for await (
    const d of broker.consume([queue], { prefetch: 5, signal: AbortSignal.timeout(30_000) })
  ) {
    const id = d.message.headers.id as string;
    if (d.redelivered) redelivered++;
    if (!killed && acked.size === 5) {
      // Drop the socket while this delivery (and the prefetched ones) are unacked.
      killed = true;
      broker.connection.destroySocket();
      await d.ack(); // a no-op on the dead channel: RabbitMQ redelivers it
      continue;
    }
    await d.ack();
    acked.add(id);
    if (acked.size === n) break;
  }
  assert.equal(acked.size, n);
  assert.ok(killed);
  assert.ok(redelivered >= 1, "the unacked messages came back as redelivered");
  // Publishing works again on the new connection.
  await broker.publish(queue, task("after"));
  assert.equal(await broker.purge(queue), 1);
});

Deno.test("ChannelAcks: one multiple ack for the settled front, single acks behind a held delivery, and a long-held one does not stop later runs", () => {
  // A recorder in place of the channel: this checks the frames the bookkeeping chooses (the
  // test below checks them against RabbitMQ).
  const frames: string[] = [];
  const channel = {
    ack: (m: { fields: { deliveryTag: number } }, multiple: boolean) =>
      frames.push(`${m.fields.deliveryTag}${multiple ? "+" : ""}`),
  } as unknown as amqp.Channel;
  const acks = new ChannelAcks(channel);
  const turn = (...tags: number[]) => {
    for (const t of tags) acks.ack(t);
    acks.flush();
  };
  for (let t = 1; t <= 6; t++) acks.delivered(t);
  turn(1, 2, 4, 5, 6); // 3 is held
  assert.deepEqual(frames.splice(0), ["2+", "4", "5", "6"]);
  acks.delivered(7);
  acks.delivered(8);
  acks.settled(7); // nacked: its frame went out already
  turn(8); // still behind 3
  assert.deepEqual(frames.splice(0), ["8"]);
  turn(3);
  assert.deepEqual(frames.splice(0), ["3+"]);
  for (let t = 9; t <= 11; t++) acks.delivered(t);
  turn(10, 9, 11);
  assert.deepEqual(frames.splice(0), ["11+"]);
});

Deno.test("acks of one turn go out together but never cover a delivery still held: after a lost connection only that one comes back", async () => {
  const queue = uniqueQueue("acks");
  await using broker = new AmqpBroker(AMQP_URL, { connectionName: `celeriac-test-${queue}` });
  for (let i = 0; i < 6; i++) await broker.publish(queue, task(`a-${i}`));
  const controller = new AbortController();
  const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(20_000)]);
  const it = broker.consume([queue], { prefetch: 6, signal })[Symbol.asyncIterator]();
  const next = async (ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const none = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
    try {
      return await Promise.race([it.next().then((r) => r.done ? undefined : r.value), none]);
    } finally {
      clearTimeout(timer);
    }
  };
  const held: Delivery[] = [];
  for (let i = 0; i < 6; i++) held.push((await next(10_000))!);
  assert.deepEqual(held.map((d) => d.message.headers.id), [0, 1, 2, 3, 4, 5].map((i) => `a-${i}`));
  // a-2 stays held; the others are acked in one turn (a-0 and a-1 before it, a-3..a-5 after).
  await Promise.all([0, 1, 3, 4, 5].map((i) => held[i]!.ack()));
  await new Promise((r) => setTimeout(r, 300));
  // RabbitMQ requeues what it still holds when the connection drops.
  broker.connection.destroySocket();
  const back = await next(15_000);
  assert.equal(back?.message.headers.id, "a-2");
  assert.ok(back!.redelivered);
  await back!.ack();
  assert.equal(await next(1_500), undefined, "an acked message came back");
  controller.abort();
  await it.return?.(undefined);
});

Deno.test("rabbitmqctl close_connection by connection_name: consumers come back, and the close is reported", async () => {
  const queue = uniqueQueue("ctl");
  const name = `celeriac-test-${queue}`;
  const errors: string[] = [];
  await using broker = new AmqpBroker(AMQP_URL, {
    connectionName: name,
    onError: (e) => errors.push(e.message),
  });
  await broker.publish(queue, task("before"));
  const got: string[] = [];
  for await (
    const d of broker.consume([queue], { prefetch: 1, signal: AbortSignal.timeout(30_000) })
  ) {
    got.push(d.message.headers.id as string);
    await d.ack();
    if (got.length === 1) {
      const list = await new Deno.Command("rabbitmqctl", {
        args: ["list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        stdout: "piped",
        stderr: "null",
      }).output();
      const line = new TextDecoder().decode(list.stdout).split("\n").find((l) => l.includes(name));
      assert.ok(line, "connection found by its name");
      const pid = line.trim().split(/\s+/)[0]!;
      await new Deno.Command("rabbitmqctl", {
        args: ["close_connection", pid, "test"],
        stdout: "null",
        stderr: "null",
      }).output();
      await broker.publish(queue, task("after"));
    }
    if (got.length === 2) break;
  }
  assert.deepEqual(got, ["before", "after"]);
  // CONNECTION_FORCED comes as `close` only, with no `error` event from amqplib.
  assert.equal(errors.length, 1, errors.join("\n"));
  assert.match(errors[0]!, /CONNECTION.FORCED/);
});

Deno.test("broadcast/subscribe on a topic and a fanout exchange", async () => {
  const topic = `celeriac-test-ev-${crypto.randomUUID()}`;
  const fanout = `celeriac-test-${crypto.randomUUID()}.pidbox`;
  await using broker = new AmqpBroker(AMQP_URL);
  const controller = new AbortController();
  const body = (type: string) => ({
    headers: { hostname: "w1@test" },
    properties: { delivery_mode: 1 },
    body: JSON.stringify({ type }),
    contentType: "application/json",
    contentEncoding: "utf-8",
  });
  const seen: string[] = [];
  let topical = 0;
  const events = (async () => {
    for await (
      const m of broker.subscribe(topic, { signal: controller.signal, routingKey: "worker.#" })
    ) {
      seen.push(`${m.routingKey}:${JSON.parse(m.message.body).type}`);
      if (++topical === 2) break;
    }
  })();
  const control = (async () => {
    for await (const m of broker.subscribe(fanout, { signal: controller.signal })) {
      seen.push(`fanout:${JSON.parse(m.message.body).type}`);
      break;
    }
  })();
  await new Promise((r) => setTimeout(r, 500));
  await broker.broadcast({ exchange: topic, routingKey: "task.succeeded", message: body("x") });
  await broker.broadcast({ exchange: topic, routingKey: "worker.heartbeat", message: body("hb") });
  await broker.broadcast({ exchange: fanout, routingKey: "", message: body("ping") });
  await broker.broadcast({ exchange: topic, routingKey: "worker.offline", message: body("off") });
  await Promise.all([events, control]);
  controller.abort();
  assert.deepEqual(seen.sort(), ["fanout:ping", "worker.heartbeat:hb", "worker.offline:off"]);
  await cleanup({ exchanges: [topic, fanout] });
});

Deno.test("clean up the test queues", async () => {
  for (const q of made) await cleanup(taskQueueNames(q));
});
