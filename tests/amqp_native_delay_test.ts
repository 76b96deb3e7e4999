// Celery 5.5+'s native delayed delivery (`celery_delayed_0..27`, kombu 5.6
// `transport/native_delayed_delivery.py`) and quorum queues' constraints. CI has Celery 5.2.6,
// which has no native delayed delivery, so the Celery side is built here as kombu 5.6 builds it
// (the same names, arguments and binding keys, declared with amqplib) and countdowns are sent as
// Celery 5.6's `send_task` sends them (exchange `celery_delayed_27`, routing key = the countdown's
// 28 binary digits + the queue's routing key). Each test runs in a private vhost, since the
// topology's names are global to a vhost.
import assert from "node:assert/strict";
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import { App } from "@celeriac/celeriac";
import { AmqpBroker } from "../lib/brokers/amqp.ts";
import { nativeRoutingKey } from "../lib/brokers/_amqp_native_delay.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { eventually, startWorker } from "./_helpers.ts";
import { python } from "./_amqp_helpers.ts";
import { unique } from "./_control_helpers.ts";

async function rabbitmqctl(...args: string[]): Promise<string> {
  const out = await new Deno.Command("rabbitmqctl", { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`rabbitmqctl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

// A private vhost for one test, deleted after it.
async function withVhost(fn: (url: string, vhost: string) => Promise<void>): Promise<void> {
  const vhost = unique("celeriac-nd");
  await rabbitmqctl("add_vhost", vhost);
  await rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*");
  try {
    await fn(`amqp://guest:guest@127.0.0.1:5672/${vhost}`, vhost);
  } finally {
    await rabbitmqctl("delete_vhost", vhost);
  }
}

interface Binding {
  source: string;
  destination: string;
  kind: "queue" | "exchange";
  key: string;
}

// kombu 5.6's topology, written out from its rules (declare_native_delayed_delivery_...).
function kombuTopology(queueType: "classic" | "quorum") {
  const queues: { name: string; args: Record<string, unknown> }[] = [];
  const bindings: Binding[] = [];
  let key = "1.#";
  for (let level = 27; level >= 0; level--) {
    const name = `celery_delayed_${level}`;
    const args: Record<string, unknown> = {
      "x-queue-type": queueType,
      "x-overflow": "reject-publish",
      "x-message-ttl": 2 ** level * 1000,
      "x-dead-letter-exchange": level > 0
        ? `celery_delayed_${level - 1}`
        : "celery_delayed_delivery",
    };
    if (queueType === "quorum") args["x-dead-letter-strategy"] = "at-least-once";
    queues.push({ name, args });
    bindings.push({ source: name, destination: name, kind: "queue", key });
    key = `*.${key}`;
  }
  key = "0.#";
  for (let level = 27; level > 0; level--) {
    bindings.push({
      source: `celery_delayed_${level}`,
      destination: `celery_delayed_${level - 1}`,
      kind: "exchange",
      key,
    });
    key = `*.${key}`;
  }
  bindings.push({
    source: "celery_delayed_0",
    destination: "celery_delayed_delivery",
    kind: "exchange",
    key,
  });
  return { queues, bindings };
}

// Declares the topology on `url` with amqplib, as kombu does (exchanges durable topic).
async function declareAsKombu(url: string, queueType: "classic" | "quorum") {
  const { queues, bindings } = kombuTopology(queueType);
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    for (const q of queues) {
      await ch.assertExchange(q.name, "topic", { durable: true });
      await ch.assertQueue(q.name, { durable: true, arguments: q.args });
    }
    await ch.assertExchange("celery_delayed_delivery", "topic", { durable: true });
    for (const b of bindings) {
      if (b.kind === "queue") await ch.bindQueue(b.destination, b.source, b.key);
      else await ch.bindExchange(b.destination, b.source, b.key);
    }
    await ch.close();
  } finally {
    await conn.close();
  }
}

async function listBindings(vhost: string): Promise<Binding[]> {
  const out = await rabbitmqctl(
    "list_bindings",
    "-q",
    "--no-table-headers",
    "-p",
    vhost,
    "source_name",
    "destination_name",
    "destination_kind",
    "routing_key",
  );
  return out.split("\n").filter((l) => l.trim()).map((line) => {
    const [source, destination, kind, key] = line.split("\t");
    return { source: source!, destination: destination!, kind: kind as Binding["kind"], key: key! };
  });
}

const has = (all: Binding[], b: Binding) =>
  all.some((x) =>
    x.source === b.source && x.destination === b.destination && x.kind === b.kind &&
    x.key === b.key
  );

Deno.test("nativeRoutingKey is kombu's calculate_routing_key: 28 binary digits, then the routing key", () => {
  assert.equal(nativeRoutingKey(5, "celery"), `${"0.".repeat(25)}1.0.1.celery`);
  assert.equal(nativeRoutingKey(2 ** 28 - 1, "q"), `${"1.".repeat(28)}q`);
  assert.throws(() => nativeRoutingKey(0, "q"), RangeError);
  assert.throws(() => nativeRoutingKey(2 ** 28, "q"), RangeError);
});

Deno.test("a countdown sent as Celery 5.6 sends it (celery_delayed_27) runs on a celeriac worker, not before its ETA", async () => {
  await withVhost(async (url, vhost) => {
    const queue = unique("nd-worker");
    // The Celery 5.6 side: kombu's topology, and a quorum queue behind a topic exchange
    // (Celery's documented quorum setup).
    await declareAsKombu(url, "quorum");
    await python(`
from kombu import Connection, Exchange, Queue
with Connection("${url}") as c:
    Queue("${queue}", Exchange("${queue}", type="topic"), routing_key="${queue}",
          queue_arguments={"x-queue-type": "quorum"})(c.default_channel).declare()
`);
    await using app = new App({ broker: url, backend: "rpc://", defaultQueue: queue });
    const ran = Promise.withResolvers<number>();
    app.task("nd.mark", () => {
      ran.resolve(Date.now());
      return "ok";
    });
    await using _w = startWorker(app, { pool: "inline", heartbeatInterval: 0 });
    // The worker binds its queue to celery_delayed_delivery, as a Celery 5.5+ worker does.
    await eventually(async () => {
      const all = await listBindings(vhost);
      return has(all, {
        source: "celery_delayed_delivery",
        destination: queue,
        kind: "exchange",
        key: `#.${queue}`,
      }) && has(all, { source: queue, destination: queue, kind: "queue", key: `#.${queue}` });
    }, 20_000);
    // What Celery 5.6's send_task does for a countdown to a quorum queue behind a topic
    // exchange: exchange celery_delayed_27, routing key calculate_routing_key(int(3), queue).
    const sent = JSON.parse(
      await python(`
import json, time
from celery import Celery
from kombu import Exchange
app = Celery("p", broker="${url}")
countdown = 3
rk = ".".join(list(f"{int(countdown):028b}")) + ".${queue}"
t0 = time.time()
r = app.send_task("nd.mark", countdown=countdown, exchange=Exchange("celery_delayed_27", type="topic"),
                  routing_key=rk)
print(json.dumps({"t0": t0 * 1000, "rk": rk}))
`),
    );
    assert.equal(sent.rk, nativeRoutingKey(3, queue));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const at = await Promise.race([
      ran.promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the countdown never ran")), 30_000);
      }),
    ]);
    clearTimeout(timer);
    // Not before its ETA (3 s after sending; a little slack for the two clocks' reads).
    assert.ok(at >= sent.t0 + 3_000 - 50, `ran ${at - sent.t0} ms after sending`);
  });
});

Deno.test("a celeriac countdown to a quorum queue goes through celery_delayed_* with Celery's routing key", async () => {
  await withVhost(async (url, vhost) => {
    const queue = unique("nd-client");
    {
      await using broker = new AmqpBroker(url, { queueType: "quorum" });
      const t0 = Date.now();
      const message = encodeTask({
        id: crypto.randomUUID(),
        name: "nd.mark",
        args: [],
        kwargs: {},
        eta: new Date(t0 + 2_300),
      });
      await broker.schedule(queue, message, new Date(t0 + 2_300));
      const conn = await amqp.connect(url);
      try {
        const ch = await conn.createChannel();
        // 2 whole seconds (Celery truncates): binary 10, so it waits in celery_delayed_1.
        assert.equal((await ch.checkQueue("celery_delayed_1")).messageCount, 1);
        // It reaches the queue with Celery's routing key, not before the truncated countdown.
        await ch.prefetch(1);
        const got = Promise.withResolvers<{ at: number; msg: amqp.ConsumeMessage }>();
        await ch.consume(queue, (msg) => {
          if (msg) got.resolve({ at: Date.now(), msg });
        });
        let timer: ReturnType<typeof setTimeout> | undefined;
        const { at, msg } = await Promise.race([
          got.promise,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error("never delivered")), 20_000);
          }),
        ]);
        clearTimeout(timer);
        ch.ack(msg);
        assert.equal(msg.fields.routingKey, nativeRoutingKey(2, queue));
        assert.equal(msg.properties.headers?.["x-first-death-queue"], "celery_delayed_1");
        assert.ok(at >= t0 + 2_000 - 50, `delivered ${at - t0} ms after scheduling`);
        // The topology is kombu's: every queue re-declares with kombu's arguments (a mismatch
        // would be PRECONDITION_FAILED), every binding is there.
        const { queues, bindings } = kombuTopology("quorum");
        for (const q of queues) await ch.assertQueue(q.name, { durable: true, arguments: q.args });
        const all = await listBindings(vhost);
        for (const b of bindings) assert.ok(has(all, b), `missing binding ${JSON.stringify(b)}`);
        assert.ok(has(all, {
          source: "celery_delayed_delivery",
          destination: queue,
          kind: "queue",
          key: `#.${queue}`,
        }));
        await ch.close();
      } finally {
        await conn.close();
      }
    }
  });
});

Deno.test("delayedDelivery celeriac keeps celeriac's ms levels for a quorum queue", async () => {
  await withVhost(async (url) => {
    const queue = unique("nd-own");
    await using broker = new AmqpBroker(url, { queueType: "quorum", delayedDelivery: "celeriac" });
    const message = encodeTask({ id: "own", name: "nd.mark", args: [], kwargs: {} });
    await broker.schedule(queue, message, new Date(Date.now() + 1_200));
    for await (const d of broker.consume([queue], { signal: AbortSignal.timeout(15_000) })) {
      assert.equal(d.message.headers.id, "own");
      await d.ack();
      break;
    }
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      ch.on("error", () => {});
      await assert.rejects(ch.checkExchange("celery_delayed_delivery"), /404/);
    } finally {
      await conn.close().catch(() => {});
    }
  });
});

Deno.test("a worker consuming an adopted quorum queue and a classic one uses per-consumer QoS (quorum refuses global)", async () => {
  await withVhost(async (url) => {
    const quorum = unique("nd-q");
    const classic = unique("nd-c");
    await python(`
from kombu import Connection, Exchange, Queue
with Connection("${url}") as c:
    Queue("${quorum}", Exchange("${quorum}"), routing_key="${quorum}",
          queue_arguments={"x-queue-type": "quorum"})(c.default_channel).declare()
`);
    // Default options: the broker does not know the queue is quorum until it looks.
    await using broker = new AmqpBroker(url, { delayedDelivery: "celeriac" });
    await broker.publish(quorum, encodeTask({ id: "q", name: "t", args: [], kwargs: {} }));
    await broker.publish(classic, encodeTask({ id: "c", name: "t", args: [], kwargs: {} }));
    const seen = new Set<string>();
    const signal = AbortSignal.timeout(15_000);
    for await (const d of broker.consume([quorum, classic], { prefetch: 4, signal })) {
      seen.add(String(d.message.headers.id));
      await d.ack();
      if (seen.size === 2) break;
    }
    assert.deepEqual([...seen].sort(), ["c", "q"]);
  });
});

Deno.test("an adopted quorum queue's x-delivery-limit dead-letters to <queue>.dlq before RabbitMQ drops it", async () => {
  await withVhost(async (url) => {
    const queue = unique("nd-limit");
    // A Celery user's quorum queue with x-delivery-limit 2 (and other arguments, which the
    // probe reads one refusal at a time) whose dead-letter exchange does not exist: RabbitMQ
    // drops a message returned a third time.
    await python(`
from kombu import Connection, Exchange, Queue
with Connection("${url}") as c:
    Queue("${queue}", Exchange("${queue}"), routing_key="${queue}",
          queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": 2,
                           "x-max-length": 1000, "x-dead-letter-exchange": "nd-missing-dlx"}
          )(c.default_channel).declare()
`);
    await using broker = new AmqpBroker(url, { maxDeliveries: 10 });
    await broker.publish(queue, encodeTask({ id: "poison", name: "t", args: [], kwargs: {} }));
    const counts: number[] = [];
    const dead: string[] = [];
    const signal = AbortSignal.timeout(10_000);
    for await (
      const d of broker.consume([queue], {
        prefetch: 1,
        signal,
        onDeadLetter: (e) => dead.push(e.reason),
      })
    ) {
      counts.push(d.deliveryCount);
      await d.reject({ requeue: true });
      if (counts.length === 3) break;
    }
    assert.deepEqual(counts, [1, 2, 3]);
    assert.match(dead[0] ?? "", /delivered 3 times \(maxDeliveries 3\)/);
    for await (
      const d of broker.consume([`${queue}.dlq`], { signal: AbortSignal.timeout(10_000) })
    ) {
      assert.equal(d.message.headers.id, "poison");
      assert.equal(d.message.headers["x-delivery-count"], undefined);
      await d.ack();
      break;
    }
  });
});
