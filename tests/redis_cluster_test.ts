// Redis Cluster (`redis+cluster://`): a private 3-master cluster on 16820-16822. The broker and
// backend conformance suites, a chord, the global rate limiter and the beat store pass on it;
// one queue's keys share a hash tag, results spread over the nodes.
import assert from "node:assert/strict";
import { App, chord, group } from "@celeriac/celeriac";
import { RedisBroker } from "../lib/brokers/redis.ts";
import { RedisBackend } from "../lib/backends/redis.ts";
import { RedisBeatStore } from "../lib/beat/store_redis.ts";
import { createRateLimiter } from "../lib/worker/rate_limit.ts";
import { keySlot } from "../lib/_redis_cluster.ts";
import { parseRedisUrl } from "../lib/_redis.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { brokerSuite } from "./_broker_suite.ts";
import { backendSuite, meta } from "./_backend_suite.ts";
import { startWorker } from "./_helpers.ts";
import { redisCommand, startCluster } from "./_redis_sentinel_nodes.ts";
import { assertRate, rateOf } from "./_rate.ts";

// Started before the first test, so no test owns its processes; the last test stops it.
const cluster = await startCluster(16820);

Deno.test("cluster: keySlot() agrees with CLUSTER KEYSLOT, hash tags included", async () => {
  const keys = ["foo", "{q}", "{q}.unacked", "celery-task-meta-1", "a{b}c", "{}x", "é{ü}"];
  for (const key of keys) {
    assert.equal(keySlot(key), await redisCommand<number>(16820, ["CLUSTER", "KEYSLOT", key]), key);
  }
  const u = parseRedisUrl("redis+cluster://:pw@127.0.0.1:16820,127.0.0.1:16821");
  assert.equal(u.cluster?.length, 2);
  assert.equal(u.password, "pw");
  assert.throws(() => parseRedisUrl("redis+cluster://127.0.0.1:16820/2"), TypeError);
});

brokerSuite("redis cluster broker", (options = {}) => {
  const broker = new RedisBroker(cluster.url, options);
  const queue = `q-${crypto.randomUUID()}`;
  return Promise.resolve({ broker, queue, deadLetters: (q) => broker.deadLetters(q) });
});

backendSuite(
  "redis cluster backend",
  () => Promise.resolve({ backend: new RedisBackend(cluster.url), prefix: crypto.randomUUID() }),
);

Deno.test("cluster: one queue's keys share its slot; queues and results spread over nodes", async () => {
  await using broker = new RedisBroker(cluster.url);
  await using backend = new RedisBackend(cluster.url);
  const queues = Array.from({ length: 6 }, () => `spread-${crypto.randomUUID()}`);
  for (const [i, q] of queues.entries()) {
    await broker.publish(q, encodeTask({ id: `t${i}`, name: "x", args: [], kwargs: {} }), {
      priority: 9,
    });
  }
  const got: string[] = [];
  for await (const d of broker.consume(queues, { prefetch: 6 })) {
    got.push(d.message.headers.id as string);
    await d.ack();
    if (got.length === 6) break;
  }
  assert.deepEqual(got.sort(), queues.map((_, i) => `t${i}`).sort());
  // Every key of a queue is in the queue's slot.
  const slots = new Set<number>();
  for (const q of queues) {
    const slot = keySlot(`{${q}}`);
    slots.add(slot);
    for (const name of ["", "\x06\x169", ".dlq", ".unacked", ".unacked_index", ".celeriac.eta"]) {
      assert.equal(keySlot(`{${q}}${name}`), slot);
    }
  }
  assert.ok(slots.size > 1);
  // Results of many tasks land on several nodes and come back in one call.
  const ids = Array.from({ length: 50 }, () => crypto.randomUUID());
  await Promise.all(ids.map((id) => backend.store(id, meta(id, "SUCCESS", id.length))));
  const counts = await Promise.all(
    cluster.ports.map((p) => redisCommand<number>(p, ["DBSIZE"])),
  );
  assert.ok(counts.filter((n) => n > 0).length >= 2, `keys per node: ${counts}`);
  const metas = [];
  for await (const m of backend.waitFor(ids)) {
    metas.push(m);
    if (metas.length === ids.length) break;
  }
  assert.equal(metas.length, ids.length);
});

Deno.test("cluster: a chord, a group and remote control run on the cluster", async () => {
  const queue = `canvas-${crypto.randomUUID()}`;
  await using app = new App({ broker: cluster.url, backend: cluster.url, defaultQueue: queue });
  const add = app.task("cl.add", (a: number, b: number) => a + b);
  const total = app.task("cl.total", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const hostname = `cluster-${crypto.randomUUID()}@test`;
  await using _worker = startWorker(app, {
    pool: "inline",
    concurrency: 8,
    queues: [queue],
    heartbeatInterval: 0,
    hostname,
  });
  const r = await chord(Array.from({ length: 20 }, (_, i) => add.s(i, i)), total.s()).delay();
  assert.equal(await r.get({ timeout: 30_000 }), 380);
  const g = await group(Array.from({ length: 10 }, (_, i) => add.s(i, 1))).delay();
  assert.deepEqual(await g.get({ timeout: 30_000 }), Array.from({ length: 10 }, (_, i) => i + 1));
  // Remote control (pidbox fanout and replies) over the cluster's pub/sub.
  const pong = await app.control.inspect({ destination: [hostname], timeout: 2_000 }).ping()
    .collect();
  assert.deepEqual(pong, { [hostname]: { ok: "pong" } });
});

Deno.test("cluster: the global rate limiter holds two limiters together to 20/s", async () => {
  const prefix = `rl-${crypto.randomUUID()}:`;
  const a = await createRateLimiter(cluster.url, { prefix });
  const b = await createRateLimiter(cluster.url, { prefix });
  try {
    const times: number[] = [];
    await Promise.all([a, b].map(async (l) => {
      for (let i = 0; i < 10; i++) {
        await l.acquire("cl.limited", "20/s");
        times.push(Date.now());
      }
    }));
    assertRate(rateOf(times), 20);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("cluster: the beat store's lease and compare-and-set work on the cluster", async () => {
  await using store = new RedisBeatStore(cluster.url, { prefix: `beat-${crypto.randomUUID()}:` });
  assert.equal(await store.acquireLease("a", 5_000), true);
  assert.equal(await store.acquireLease("b", 5_000), false);
  assert.equal(await store.renewLease("a", 5_000), true);
  await store.releaseLease("a");
  assert.equal(await store.acquireLease("b", 5_000), true);
  const s0 = { lastRunAt: null, totalRunCount: 0, since: 5 };
  const s1 = { lastRunAt: 10, totalRunCount: 1, since: 5 };
  assert.equal(await store.compareAndSet("e", null, s0), true);
  const race = await Promise.all([
    store.compareAndSet("e", s0, s1),
    store.compareAndSet("e", s0, { ...s1, lastRunAt: 11 }),
  ]);
  assert.equal(race.filter(Boolean).length, 1);
  assert.equal((await store.getState("e"))?.totalRunCount, 1);
});

Deno.test("cluster: the admin methods count, list, replay and purge per queue", async () => {
  await using broker = new RedisBroker(cluster.url);
  const queues = [`adm-a-${crypto.randomUUID()}`, `adm-b-${crypto.randomUUID()}`];
  const task = (id: string) => encodeTask({ id, name: "t", args: [id], kwargs: {} });
  for (const q of queues) {
    await broker.publish(q, task(`${q}-1`));
    await broker.publish(q, task(`${q}-2`));
    await broker.schedule(q, task(`${q}-later`), new Date(Date.now() + 3_600_000));
  }
  const held = [];
  for await (const d of broker.consume([queues[0]!], { prefetch: 2 })) {
    if (d.message.headers.id === `${queues[0]}-1`) await d.reject({ requeue: false });
    else held.push(d);
    if (held.length === 1) break;
  }
  assert.deepEqual(await broker.queueCounts(queues), [
    { queue: queues[0], waiting: 0, reserved: 1, scheduled: 1, deadLettered: 1 },
    { queue: queues[1], waiting: 2, reserved: 0, scheduled: 1, deadLettered: 0 },
  ]);
  assert.deepEqual(
    (await broker.browseScheduled(queues[1]!)).map((m) => m.message.headers.id),
    [`${queues[1]}-later`],
  );
  const dead = await broker.browseDeadLetters(queues[0]!);
  assert.deepEqual(dead.map((d) => d.message.headers.id), [`${queues[0]}-1`]);
  assert.equal(await broker.replayDeadLetters(queues[0]!), 1);
  assert.equal((await broker.queueCounts([queues[0]!]))[0]!.waiting, 1);
  assert.equal(await broker.purgeDeadLetters(queues[0]!), 0);
  for (const d of held) await d.ack();
});

Deno.test({
  name: "cluster: stop the private cluster",
  // Reaps the server processes the file's first test started: their handles belong to it.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => cluster.stop(),
});
