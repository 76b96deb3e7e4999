// The Broker conformance suite: one set of behaviours every transport must show.
// Each transport's test file calls `brokerSuite(name, make)` with a factory that returns a
// fresh broker and a unique queue prefix, so suites can run side by side on one server.
import assert from "node:assert/strict";
import type { Broker } from "../lib/brokers/broker.ts";
import { decodeTask, encodeTask } from "../lib/protocol/message.ts";

export interface BrokerFixture {
  broker: Broker;
  /** A queue name unique to this test run. */
  queue: string;
}

const message = (id: string, args: unknown[] = [1, 2]) =>
  encodeTask({ id, name: "tasks.add", args, kwargs: {} });

async function take(
  broker: Broker,
  queues: string[],
  n: number,
  options: { prefetch?: number; ack?: boolean; timeout?: number } = {},
) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeout ?? 10_000);
  const got = [];
  try {
    for await (
      const d of broker.consume(queues, {
        prefetch: options.prefetch ?? 0,
        signal: controller.signal,
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
  make: () => Promise<BrokerFixture>,
  options: { ignore?: boolean } = {},
) {
  const ignore = options.ignore ?? false;

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
    name: `${name}: close() is idempotent`,
    ignore,
    async fn() {
      const { broker } = await make();
      await broker.close();
      await broker.close();
    },
  });
}
