// The brokers' optional admin methods (the dashboard's Queues page) on Redis and Deno KV:
// counts by kind, the ETA list, dead letters browsed, replayed by id and purged.
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Broker, Delivery } from "../lib/brokers/broker.ts";
import { KvBroker } from "../lib/brokers/kv.ts";
import { RedisBroker } from "../lib/brokers/redis.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { rawClient, REDIS } from "./_redis_helpers.ts";

async function exercise(broker: Broker, queue: string): Promise<void> {
  const task = (id: string) => encodeTask({ id, name: "t", args: [id], kwargs: {} });
  await broker.publish(queue, task("a"));
  await broker.publish(queue, task("b"));
  await broker.publish(queue, task("c"));
  await broker.schedule(queue, task("later"), new Date(Date.now() + 3_600_000));
  const stop = new AbortController();
  let seen = 0;
  let held: Delivery | undefined;
  for await (const d of broker.consume([queue], { prefetch: 3, signal: stop.signal })) {
    // Dead-letter a and b, keep c delivered and unacked.
    if (d.message.headers.id !== "c") await d.reject({ requeue: false });
    else held = d;
    if (++seen === 3) break;
  }
  const [counts] = await broker.queueCounts!([queue]);
  assert.deepEqual(counts, { queue, waiting: 0, reserved: 1, scheduled: 1, deadLettered: 2 });
  const scheduled = await broker.browseScheduled!(queue);
  assert.deepEqual(scheduled.map((s) => s.message.headers.id), ["later"]);
  assert.ok(scheduled[0]!.eta > Date.now() + 3_500_000);
  const dead = await broker.browseDeadLetters!(queue);
  assert.deepEqual(dead.map((d) => d.message.headers.id).sort(), ["a", "b"]);
  const a = dead.find((d) => d.message.headers.id === "a")!;
  assert.equal(await broker.replayDeadLetters!(queue, [a.id]), 1);
  assert.equal(await broker.replayDeadLetters!(queue, [a.id]), 0);
  const [after] = await broker.queueCounts!([queue]);
  assert.equal(after!.waiting, 1);
  assert.equal(after!.deadLettered, 1);
  assert.equal(await broker.purgeDeadLetters!(queue), 1);
  assert.equal((await broker.queueCounts!([queue]))[0]!.deadLettered, 0);
  for await (const d of broker.consume([queue], { signal: stop.signal })) {
    assert.equal(d.message.headers.id, "a");
    await d.ack();
    break;
  }
  await held?.ack();
}

Deno.test("Redis admin methods count, list, replay and purge", async () => {
  const prefix = `admin-${crypto.randomUUID().slice(0, 8)}:`;
  const broker = new RedisBroker(REDIS, { keyPrefix: prefix });
  try {
    await exercise(broker, "q");
  } finally {
    await broker.close();
    const raw = await rawClient();
    const keys = await raw.keys(`${prefix}*`);
    if (keys.length) await raw.del(keys);
    await raw.disconnect();
  }
});

Deno.test("Deno KV admin methods count, list, replay and purge", async () => {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-admin-" });
  const broker = new KvBroker(`kv://${join(dir, "admin.kv")}`);
  try {
    await exercise(broker, "q");
  } finally {
    await broker.close();
    await Deno.remove(dir, { recursive: true });
  }
});
