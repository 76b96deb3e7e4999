// The Broker conformance suite: one set of behaviours every transport must show.
// Each transport's test file calls `brokerSuite(name, make)` with a factory that returns a
// fresh broker and a unique queue prefix, so suites can run side by side on one server.
import assert from "node:assert/strict";
import {
  type Broker,
  DEAD_LETTER_REASON_HEADER,
  type DeadLetterEvent,
  type Delivery,
} from "../lib/brokers/broker.ts";
import { decodeTask, encodeTask, type Message } from "../lib/protocol/message.ts";

export interface BrokerFixture {
  broker: Broker;
  /** A queue name unique to this test run. */
  queue: string;
  /** The dead letters of a queue, oldest first (each broker keeps them its own way). */
  deadLetters?: (queue: string) => Promise<Message[]>;
  /**
   * The broker gives a message back in a way that marks it redelivered (AMQP `basic.nack`
   * with requeue sets the `redelivered` flag).
   */
  releaseMarksRedelivered?: boolean;
}

/** What the suite asks of a fixture. */
export interface BrokerFixtureOptions {
  /** The broker's `maxDeliveries`. */
  maxDeliveries?: number;
}

const message = (id: string, args: unknown[] = [1, 2]) =>
  encodeTask({ id, name: "tasks.add", args, kwargs: {} });

async function take(
  broker: Broker,
  queues: string[],
  n: number,
  options: {
    prefetch?: number;
    ack?: boolean;
    timeout?: number;
    onDeadLetter?: (e: DeadLetterEvent) => void;
  } = {},
): Promise<Delivery[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeout ?? 10_000);
  const got: Delivery[] = [];
  try {
    for await (
      const d of broker.consume(queues, {
        prefetch: options.prefetch ?? 0,
        signal: controller.signal,
        ...(options.onDeadLetter ? { onDeadLetter: options.onDeadLetter } : {}),
      })
    ) {
      got.push(d);
      if (options.ack !== false) await d.ack();
      if (got.length >= n) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return got;
}

export function brokerSuite(
  name: string,
  make: (options?: BrokerFixtureOptions) => Promise<BrokerFixture>,
  options: {
    ignore?: boolean;
    /** Whether the broker has fan-out and direct exchanges (SQS has neither). @default {true} */
    fanout?: boolean;
  } = {},
) {
  const ignore = options.ignore ?? false;
  const ignoreFanout = ignore || options.fanout === false;

  Deno.test({
    name: `${name}: publish then consume returns the same message, FIFO`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      for (let i = 0; i < 5; i++) await broker.publish(queue, message(`id-${i}`, [i, i]));
      const got = await take(broker, [queue], 5);
      assert.deepEqual(got.map((d) => d.message.headers.id), [0, 1, 2, 3, 4].map((i) => `id-${i}`));
      const req = decodeTask(got[2]!.message);
      assert.deepEqual(req.args, [2, 2]);
      assert.equal(got[0]!.queue, queue);
      assert.equal(got[0]!.deliveryCount, 1);
      assert.equal(got[0]!.redelivered, false);
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: a rejected message with requeue comes back, marked redelivered`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      await broker.publish(queue, message("again"));
      const [first] = await take(broker, [queue], 1, { ack: false });
      await first!.reject({ requeue: true });
      const [second] = await take(broker, [queue], 1);
      assert.equal(second!.message.headers.id, "again");
      assert.equal(second!.redelivered, true);
      assert.equal(second!.deliveryCount, 2);
    },
  });

  Deno.test({
    name: `${name}: a rejected message without requeue is gone`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      await broker.publish(queue, message("drop"));
      await broker.publish(queue, message("keep"));
      const [first] = await take(broker, [queue], 1, { ack: false });
      await first!.reject({ requeue: false });
      const [second] = await take(broker, [queue], 1);
      assert.equal(second!.message.headers.id, "keep");
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: prefetch bounds the deliveries not yet acked`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      for (let i = 0; i < 4; i++) await broker.publish(queue, message(`p-${i}`));
      const controller = new AbortController();
      const held = [];
      const it = broker.consume([queue], { prefetch: 2, signal: controller.signal })[
        Symbol.asyncIterator
      ]();
      held.push((await it.next()).value);
      held.push((await it.next()).value);
      // A third delivery must wait until one of the two is acked.
      let third = false;
      const next = it.next().then((r) => {
        third = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(third, false);
      await held[0].ack();
      const r = await next;
      assert.equal(r.done, false);
      await held[1].ack();
      await r.value.ack();
      controller.abort();
      await it.return?.();
      assert.equal(await broker.purge(queue), 1);
    },
  });

  Deno.test({
    name: `${name}: consume over several queues takes from each`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      await broker.publish(`${queue}.a`, message("a"));
      await broker.publish(`${queue}.b`, message("b"));
      const got = await take(broker, [`${queue}.a`, `${queue}.b`], 2);
      assert.deepEqual(got.map((d) => d.message.headers.id).sort(), ["a", "b"]);
    },
  });

  Deno.test({
    name: `${name}: schedule() delivers after the ETA and not before`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      const eta = new Date(Date.now() + 700);
      await broker.schedule(queue, message("later"), eta);
      await broker.publish(queue, message("now"));
      const got = await take(broker, [queue], 2);
      assert.equal(got[0]!.message.headers.id, "now");
      assert.equal(got[1]!.message.headers.id, "later");
      assert.ok(Date.now() >= eta.getTime() - 50, "delivered before its ETA");
    },
  });

  Deno.test({
    name: `${name}: aborting the signal ends consume()`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      let n = 0;
      for await (const _d of broker.consume([queue], { signal: controller.signal })) n++;
      assert.equal(n, 0);
    },
  });

  Deno.test({
    name: `${name}: purge() removes waiting messages and counts them`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      for (let i = 0; i < 3; i++) await broker.publish(queue, message(`x-${i}`));
      assert.equal(await broker.purge(queue), 3);
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: reject without requeue moves the message to the dead letters with its reason`,
    ignore,
    async fn() {
      const fixture = await make();
      const { broker, queue } = fixture;
      await using _ = broker;
      assert.ok(fixture.deadLetters, "the fixture reads the dead letters");
      await broker.publish(queue, message("dead-1"));
      const events: DeadLetterEvent[] = [];
      const [d] = await take(broker, [queue], 1, {
        ack: false,
        onDeadLetter: (e) => events.push(e),
      });
      await d!.reject({ requeue: false, reason: "bad input: x" });
      const dead = await fixture.deadLetters(queue);
      assert.deepEqual(dead.map((m) => m.headers.id), ["dead-1"]);
      assert.equal(dead[0]!.headers[DEAD_LETTER_REASON_HEADER], "bad input: x");
      assert.deepEqual(decodeTask(dead[0]!).args, [1, 2]);
      assert.equal(events.length, 0, "a reject the consumer asked for is not reported back");
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: requeue past maxDeliveries dead-letters and fires onDeadLetter`,
    ignore,
    async fn() {
      const fixture = await make({ maxDeliveries: 2 });
      const { broker, queue } = fixture;
      await using _ = broker;
      await broker.publish(queue, message("poison"));
      const events: DeadLetterEvent[] = [];
      const onDeadLetter = (e: DeadLetterEvent) => events.push(e);
      const [first] = await take(broker, [queue], 1, { ack: false, onDeadLetter });
      await first!.reject({ requeue: true });
      const [second] = await take(broker, [queue], 1, { ack: false, onDeadLetter });
      assert.equal(second!.deliveryCount, 2);
      await second!.reject({ requeue: true });
      assert.equal(events.length, 1);
      assert.equal(events[0]!.queue, queue);
      assert.equal(events[0]!.message?.headers.id, "poison");
      assert.match(events[0]!.reason, /maxDeliveries 2/);
      if (fixture.deadLetters) {
        const dead = await fixture.deadLetters(queue);
        assert.deepEqual(dead.map((m) => m.headers.id), ["poison"]);
        assert.match(
          String(dead[0]!.headers[DEAD_LETTER_REASON_HEADER] ?? "maxDeliveries"),
          /maxDeliveries/,
        );
      }
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: a delivery settles once; a second ack or reject returns the first promise`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      await broker.publish(queue, message("once"));
      const controller = new AbortController();
      const it = broker.consume([queue], { prefetch: 1, signal: controller.signal })[
        Symbol.asyncIterator
      ]();
      const d = (await it.next()).value as Delivery;
      const acked = d.ack();
      assert.equal(d.reject({ requeue: true }), acked);
      assert.equal(d.ack(), acked);
      await acked;
      // The prefetch slot was freed once: a second message comes, the first never again.
      await broker.publish(queue, message("after"));
      const next = (await it.next()).value as Delivery;
      assert.equal(next.message.headers.id, "after");
      await next.ack();
      controller.abort();
      await it.return?.();
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: prefetch must be an integer >= 0, and 0 means unlimited`,
    ignore,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      for (const bad of [-1, 1.5, NaN]) {
        await assert.rejects(async () => {
          for await (const _d of broker.consume([queue], { prefetch: bad })) break;
        }, RangeError);
      }
      await assert.rejects(async () => {
        for await (const _d of broker.consume([], {})) break;
      }, TypeError);
      await assert.rejects(async () => {
        for await (const _d of broker.consume([""], {})) break;
      }, TypeError);
      await assert.rejects(() => broker.publish("", message("x")), TypeError);
      for (let i = 0; i < 6; i++) await broker.publish(queue, message(`u-${i}`));
      // Unlimited: all six are handed out while none is settled.
      const held = await take(broker, [queue], 6, { prefetch: 0, ack: false });
      assert.equal(held.length, 6);
      await Promise.all(held.map((d) => d.ack()));
      assert.equal(await broker.purge(queue), 0);
    },
  });

  Deno.test({
    name: `${name}: aborting gives back what was claimed but not handed out, uncounted`,
    ignore,
    async fn() {
      const { broker, queue, releaseMarksRedelivered } = await make();
      await using _ = broker;
      for (let i = 0; i < 3; i++) await broker.publish(queue, message(`g-${i}`));
      const controller = new AbortController();
      const it = broker.consume([queue], { prefetch: 3, signal: controller.signal })[
        Symbol.asyncIterator
      ]();
      const d = (await it.next()).value as Delivery;
      assert.equal(d.message.headers.id, "g-0");
      controller.abort();
      await it.return?.();
      await d.ack();
      const rest = await take(broker, [queue], 2);
      assert.deepEqual(rest.map((r) => r.message.headers.id).sort(), ["g-1", "g-2"]);
      if (!releaseMarksRedelivered) {
        for (const r of rest) {
          assert.equal(r.deliveryCount, 1, "a given-back message is not counted");
        }
      }
    },
  });

  Deno.test({
    name: `${name}: broadcast() reaches every subscriber of the exchange`,
    ignore: ignoreFanout,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      assert.ok(broker.broadcast && broker.subscribe, "broadcast and subscribe are implemented");
      const exchange = `${queue}.ev`;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 10_000);
      const readers = [0, 1].map(() => {
        const ready = Promise.withResolvers<void>();
        const got = (async () => {
          for await (
            const m of broker.subscribe!(exchange, {
              signal: controller.signal,
              onReady: ready.resolve,
            })
          ) {
            return m;
          }
        })();
        return { ready: ready.promise, got };
      });
      try {
        await Promise.all(readers.map((r) => r.ready));
        await broker.broadcast({ exchange, routingKey: "task.sent", message: message("bc") });
        for (const r of readers) {
          const m = await r.got;
          assert.equal(m?.message.headers.id, "bc");
          assert.equal(m?.exchange, exchange);
          assert.equal(m?.routingKey, "task.sent");
        }
      } finally {
        clearTimeout(timer);
        controller.abort();
        await Promise.allSettled(readers.map((r) => r.got));
      }
    },
  });

  Deno.test({
    name: `${name}: publishDirect() reaches the queue bound with its routing key only`,
    ignore: ignoreFanout,
    async fn() {
      const { broker, queue } = await make();
      await using _ = broker;
      assert.ok(broker.publishDirect && broker.consumeDirect, "direct replies are implemented");
      const exchange = `${queue}.reply`;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 10_000);
      const consumer = (key: string) => {
        const ready = Promise.withResolvers<void>();
        const got = (async () => {
          for await (
            const m of broker.consumeDirect!(exchange, key, {
              queue: `${key}.${exchange}`,
              signal: controller.signal,
              onReady: ready.resolve,
            })
          ) {
            return m;
          }
        })();
        return { ready: ready.promise, got };
      };
      const mine = consumer(`${queue}-me`);
      const other = consumer(`${queue}-other`);
      try {
        await Promise.all([mine.ready, other.ready]);
        await broker.publishDirect(exchange, `${queue}-me`, message("reply"));
        assert.equal((await mine.got)?.headers.id, "reply");
        await broker.publishDirect(exchange, `${queue}-other`, message("reply-2"));
        assert.equal((await other.got)?.headers.id, "reply-2");
      } finally {
        clearTimeout(timer);
        controller.abort();
        await Promise.allSettled([mine.got, other.got]);
      }
    },
  });

  Deno.test({
    name: `${name}: close() is idempotent`,
    ignore,
    async fn() {
      const { broker } = await make();
      await broker.close();
      await broker.close();
    },
  });
}
