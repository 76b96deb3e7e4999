import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import {
  DEAD_LETTER_REASON_HEADER,
  type DeadLetterEvent,
  type Delivery,
} from "../lib/brokers/broker.ts";
import { stringifyJson } from "../lib/protocol/json.ts";
import { PRIORITY_SEP, RedisBroker } from "../lib/brokers/redis.ts";
import {
  closeRedisClient,
  createRedisClient,
  parseRedisUrl,
  SharedRedisClient,
} from "../lib/_redis.ts";
import { DELIVERIES_PIN } from "../lib/brokers/redis_scripts/claim.ts";
import { toKombuEnvelope } from "../lib/protocol/kombu.ts";
import { decodeTask, encodeTask } from "../lib/protocol/message.ts";
import { brokerSuite } from "./_broker_suite.ts";
import {
  deleteByPrefix,
  killConnections,
  python,
  rawClient,
  REDIS,
  sleep,
  waitBlocked,
} from "./_redis_helpers.ts";

// Prefixes the conformance suite used; the last test of this file deletes their keys.
const suitePrefixes: string[] = [];

brokerSuite("redis broker", (options = {}) => {
  const id = crypto.randomUUID();
  const keyPrefix = `celeriac-test-${id}:`;
  suitePrefixes.push(keyPrefix);
  const broker = new RedisBroker(REDIS, { keyPrefix, ...options });
  return Promise.resolve({ broker, queue: `q-${id}`, deadLetters: (q) => broker.deadLetters(q) });
});

function fixture(options: ConstructorParameters<typeof RedisBroker>[1] = {}) {
  const id = crypto.randomUUID();
  const prefix = `celeriac-test-${id}:`;
  return {
    id,
    prefix,
    queue: `q-${id}`,
    name: `celeriac-test-${id}`,
    make: (more: ConstructorParameters<typeof RedisBroker>[1] = {}) =>
      new RedisBroker(REDIS, {
        keyPrefix: prefix,
        connectionName: `celeriac-test-${id}`,
        ...options,
        ...more,
      }),
  };
}

async function takeOne(broker: RedisBroker, queue: string, timeout = 10_000): Promise<Delivery> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  try {
    for await (const d of broker.consume([queue], { prefetch: 1, signal: controller.signal })) {
      return d;
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`Nothing delivered from ${queue} in ${timeout} ms`);
}

const task = (id: string, args: unknown[] = [2, 2]) =>
  encodeTask({ id, name: "tasks.add", args, kwargs: {} });

Deno.test("redis broker: publish() writes kombu's envelope, binding and priority list, and Python kombu reads it", async () => {
  const f = fixture();
  await using broker = f.make();
  const redis = await rawClient();
  try {
    await broker.publish(f.queue, task("env-1", [2, "é"]), { priority: 5 });
    const list = `${f.prefix}${f.queue}${PRIORITY_SEP}3`;
    const [raw] = await redis.lRange(list, 0, -1);
    const env = JSON.parse(raw!);
    assert.deepEqual(Object.keys(env), [
      "body",
      "content-encoding",
      "content-type",
      "headers",
      "properties",
    ]);
    assert.equal(env["content-type"], "application/json");
    assert.equal(env.properties.body_encoding, "base64");
    assert.match(env.properties.delivery_tag, /^[0-9a-f-]{36}$/);
    assert.deepEqual(env.properties.delivery_info, { exchange: "", routing_key: f.queue });
    assert.equal(env.properties.priority, 5);
    assert.equal(env.headers.id, "env-1");
    assert.deepEqual(
      await redis.sMembers(`${f.prefix}_kombu.binding.${f.queue}`),
      [`${f.queue}${PRIORITY_SEP}${PRIORITY_SEP}${f.queue}`],
    );
    const got = await python("receive", REDIS, f.prefix, f.queue);
    assert.deepEqual(got.payload, [[2, "é"], {}, {
      callbacks: null,
      errbacks: null,
      chain: null,
      chord: null,
    }]);
    assert.equal((got.headers as Record<string, unknown>).task, "tasks.add");
    assert.equal(got.content_type, "application/json");
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: a task sent by Python Celery is decoded by celeriac's consumer", async () => {
  const f = fixture();
  await using broker = f.make();
  try {
    await python("send", REDIS, f.prefix, f.queue, `py-${f.id}`);
    const d = await takeOne(broker, f.queue);
    const req = decodeTask(d.message);
    assert.equal(req.id, `py-${f.id}`);
    assert.equal(req.name, "tasks.add");
    assert.deepEqual(req.args, [2]);
    assert.deepEqual(req.kwargs, { y: 3 });
    assert.equal(req.headers["x-custom"], "v");
    assert.equal(req.priority, 5);
    assert.equal(d.deliveryCount, 1);
    await d.ack();
  } finally {
    await deleteByPrefix(f.prefix);
  }
});

// As a listpack (Redis's encoding for a hash of up to 512 short fields), every HINCRBY of the
// claim script and HDEL of the ack scans the whole hash: with 100+ tasks in flight that was a
// sixth of redis-server's CPU per task.
Deno.test("redis broker: the deliveries hash stays in the hashtable encoding, and its pin is not a delivery", async () => {
  const f = fixture();
  await using broker = f.make();
  const redis = await rawClient();
  try {
    await broker.publish(f.queue, task("pin-1"));
    const d = await takeOne(broker, f.queue);
    const key = `${f.prefix}celeriac.deliveries`;
    assert.equal(await redis.sendCommand(["OBJECT", "ENCODING", key]), "hashtable");
    await d.ack();
    assert.deepEqual(await redis.hKeys(key), [DELIVERIES_PIN]);
    assert.equal(await redis.sendCommand(["OBJECT", "ENCODING", key]), "hashtable");
    // The next claim puts the pin back if the hash went away.
    await redis.del(key);
    await broker.publish(f.queue, task("pin-2"));
    const again = await takeOne(broker, f.queue);
    assert.equal(again.deliveryCount, 1);
    assert.equal(await redis.sendCommand(["OBJECT", "ENCODING", key]), "hashtable");
    await again.ack();
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: a claim is recorded in kombu's unacked hash and index, and ack removes it", async () => {
  const f = fixture();
  await using broker = f.make();
  const redis = await rawClient();
  try {
    await broker.publish(f.queue, task("u-1"));
    const d = await takeOne(broker, f.queue);
    const tag = d.message.properties.delivery_tag as string;
    const [env, exchange, rk] = JSON.parse((await redis.hGet(`${f.prefix}unacked`, tag))!);
    assert.equal(env.headers.id, "u-1");
    assert.equal(exchange, "");
    assert.equal(rk, f.queue);
    const score = await redis.zScore(`${f.prefix}unacked_index`, tag);
    assert.ok(score !== null && Math.abs(score - Date.now() / 1000) < 5);
    assert.equal(await redis.lLen(`${f.prefix}${f.queue}`), 0);
    await d.ack();
    assert.equal(await redis.hExists(`${f.prefix}unacked`, tag), false);
    assert.equal(await redis.zScore(`${f.prefix}unacked_index`, tag), null);
    assert.equal(await redis.hExists(`${f.prefix}celeriac.deliveries`, tag), false);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: an unacked message left by a crashed consumer is restored by the sweep, redelivered", async () => {
  const f = fixture({ visibilityTimeout: 500 });
  await using broker = f.make();
  const redis = await rawClient();
  try {
    // What a kombu worker that died after its claim leaves behind.
    const env = toKombuEnvelope(task("crash-1"), { queue: f.queue });
    const tag = env.properties.delivery_tag;
    await redis.multi()
      .zAdd(`${f.prefix}unacked_index`, { score: Date.now() / 1000 - 10, value: tag })
      .hSet(`${f.prefix}unacked`, tag, JSON.stringify([env, "", f.queue]))
      .exec();
    assert.equal(await broker.restoreVisible(), 1);
    const [raw] = await redis.lRange(`${f.prefix}${f.queue}`, 0, -1);
    assert.equal(JSON.parse(raw!).headers.redelivered, true);
    assert.equal(await redis.hExists(`${f.prefix}unacked`, tag), false);
    const d = await takeOne(broker, f.queue);
    assert.equal(d.message.headers.id, "crash-1");
    assert.equal(d.redelivered, true);
    assert.equal(d.deliveryCount, 2);
    await d.ack();
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: a held delivery's lease is renewed, so the sweep never restores it", async () => {
  const f = fixture({ visibilityTimeout: 600, leaseInterval: 100 });
  await using holder = f.make();
  await using sweeper = f.make();
  const redis = await rawClient();
  try {
    await holder.publish(f.queue, task("long-1"));
    const d = await takeOne(holder, f.queue);
    for (let i = 0; i < 8; i++) {
      await sleep(200);
      assert.equal(await sweeper.restoreVisible(), 0);
    }
    assert.equal(await redis.lLen(`${f.prefix}${f.queue}`), 0);
    await d.ack();
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: after maxDeliveries a requeued message goes to the dead-letter list", async () => {
  const f = fixture({ maxDeliveries: 3 });
  await using broker = f.make();
  const redis = await rawClient();
  try {
    await broker.publish(f.queue, task("poison"));
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const d = await takeOne(broker, f.queue);
      counts.push(d.deliveryCount);
      await d.reject({ requeue: true });
    }
    assert.deepEqual(counts, [1, 2, 3]);
    assert.equal(await redis.lLen(`${f.prefix}${f.queue}`), 0);
    const dead = await broker.deadLetters(f.queue);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.headers.id, "poison");
    assert.deepEqual(await redis.hKeys(`${f.prefix}celeriac.deliveries`), [DELIVERIES_PIN]);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: what the claim script dead-letters by itself is reported, with its reason", async () => {
  const f = fixture({ maxDeliveries: 2 });
  await using broker = f.make();
  const redis = await rawClient();
  try {
    const list = `${f.prefix}${f.queue}`;
    const good = stringifyJson(
      toKombuEnvelope(task("good"), { queue: f.queue, exchange: "", routingKey: f.queue }),
    );
    const untagged = JSON.parse(good);
    delete untagged.properties.delivery_tag;
    const worn = JSON.parse(good);
    worn.properties.delivery_tag = `worn-${f.id}`;
    // Delivered twice already (by a worker that died each time).
    await redis.hSet(`${f.prefix}celeriac.deliveries`, `worn-${f.id}`, "2");
    const junk = "\x00\x01 not json" + "x".repeat(10_000);
    // LPUSH, consumed from the right: junk, untagged, worn, then the good one.
    await redis.lPush(list, [junk, JSON.stringify(untagged), JSON.stringify(worn), good]);
    const events: DeadLetterEvent[] = [];
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 10_000);
    const got: string[] = [];
    for await (
      const d of broker.consume([f.queue], {
        prefetch: 10,
        signal: controller.signal,
        onDeadLetter: (e) => events.push(e),
      })
    ) {
      got.push(String(d.message.headers.id));
      await d.ack();
      break;
    }
    clearTimeout(timer);
    assert.deepEqual(got, ["good"]);
    assert.equal(events.length, 3);
    assert.ok(events.every((e) => e.queue === f.queue));
    assert.match(events[0]!.reason, /not JSON/);
    assert.equal(events[0]!.message, null);
    assert.equal(events[0]!.raw?.length, 4096, "the event carries the start of the text");
    assert.match(events[1]!.reason, /no string delivery_tag/);
    assert.equal(events[1]!.message?.headers.id, "good");
    assert.match(events[2]!.reason, /delivered 3 times \(maxDeliveries 2\)/);
    assert.equal(events[2]!.message?.headers.id, "good");
    assert.equal(await redis.lLen(`${f.prefix}${f.queue}.dlq`), 3);
    assert.equal(await redis.hLen(`${f.prefix}unacked`), 0);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: 300 malformed envelopes among good ones: each is delivered or reported, none vanishes", async () => {
  const f = fixture();
  await using broker = f.make();
  const redis = await rawClient();
  try {
    const good = (id: string) =>
      JSON.parse(stringifyJson(
        toKombuEnvelope(task(id), { queue: f.queue, exchange: "", routingKey: f.queue }),
      ));
    const kinds: ((n: number) => string)[] = [
      (n) => String.fromCharCode(...Array.from({ length: 40 }, (_, i) => (n * 31 + i * 7) % 256)),
      (n) => JSON.stringify(good(`t-${n}`)).slice(0, 20 + (n % 50)),
      (n) => JSON.stringify({ ...good(`p-${n}`), properties: "nope" }),
      (n) => JSON.stringify({ ...good(`h-${n}`), headers: [1, 2] }),
      (n) => JSON.stringify({ ...good(`b-${n}`), body: 42 }),
      (n) => JSON.stringify(n),
    ];
    const raws: string[] = [];
    let goods = 0;
    for (let n = 0; n < 360; n++) {
      if (n % 6 === 5) {
        raws.push(JSON.stringify(good(`ok-${n}`)));
        goods++;
      } else {
        raws.push(kinds[n % kinds.length]!(n));
      }
    }
    await redis.lPush(`${f.prefix}${f.queue}`, raws);
    const events: DeadLetterEvent[] = [];
    let delivered = 0;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 20_000);
    for await (
      const d of broker.consume([f.queue], {
        prefetch: 16,
        signal: controller.signal,
        onDeadLetter: (e) => events.push(e),
      })
    ) {
      delivered++;
      await d.ack();
      if (delivered + events.length >= raws.length) break;
    }
    clearTimeout(timer);
    // Reports of the last claim may still be settling.
    for (let i = 0; i < 50 && delivered + events.length < raws.length; i++) await sleep(20);
    assert.equal(delivered, goods);
    assert.equal(events.length, raws.length - goods);
    assert.ok(events.every((e) => e.reason.length > 0 && e.queue === f.queue));
    for (let i = 0; i < 50 && (await redis.hLen(`${f.prefix}unacked`)) > 0; i++) await sleep(20);
    assert.equal(await redis.hLen(`${f.prefix}unacked`), 0);
    assert.equal(await redis.lLen(`${f.prefix}${f.queue}.dlq`), raws.length - goods);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: an envelope that does not decode is dead-lettered with the decoder's reason", async () => {
  const f = fixture();
  await using broker = f.make();
  const redis = await rawClient();
  try {
    // JSON with a delivery tag, but no body: the claim script takes it, the decoder refuses it.
    const bad = JSON.stringify({
      headers: {},
      properties: { delivery_tag: `bad-${f.id}`, big: 123456789012345678901234567890 },
    }).replace("1.2345678901234568e+29", "123456789012345678901234567890");
    await redis.lPush(`${f.prefix}${f.queue}`, bad);
    await broker.publish(f.queue, task("after"));
    const events: DeadLetterEvent[] = [];
    const d = await (async () => {
      const signal = AbortSignal.timeout(10_000);
      for await (
        const d of broker.consume([f.queue], { signal, onDeadLetter: (e) => events.push(e) })
      ) return d;
    })();
    assert.equal(d?.message.headers.id, "after");
    await d?.ack();
    assert.equal(events.length, 1);
    assert.match(events[0]!.reason, /could not be decoded: .*body/);
    assert.equal(events[0]!.raw, bad);
    const [dead] = await redis.lRange(`${f.prefix}${f.queue}.dlq`, 0, -1);
    const parsed = JSON.parse(dead!);
    assert.match(parsed.headers[DEAD_LETTER_REASON_HEADER], /could not be decoded/);
    assert.ok(dead!.includes("123456789012345678901234567890"), "big ints are kept exact");
    assert.equal(await redis.hLen(`${f.prefix}unacked`), 0);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: schedule() keeps the message in the ETA sorted set, and two consumers promote it once", async () => {
  const f = fixture();
  await using a = f.make();
  await using b = f.make();
  const redis = await rawClient();
  try {
    const eta = new Date(Date.now() + 800);
    await a.schedule(f.queue, task("eta-1"), eta);
    assert.equal(await redis.zCard(`${f.prefix}celeriac.eta`), 1);
    assert.equal(await redis.lLen(`${f.prefix}${f.queue}`), 0);
    const controller = new AbortController();
    const got: { who: string; at: number; id: unknown }[] = [];
    const run = async (broker: RedisBroker, who: string) => {
      for await (const d of broker.consume([f.queue], { signal: controller.signal })) {
        got.push({ who, at: Date.now(), id: d.message.headers.id });
        await d.ack();
      }
    };
    const runs = [run(a, "a"), run(b, "b")];
    await sleep(2500);
    controller.abort();
    await Promise.all(runs);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.id, "eta-1");
    assert.ok(got[0]!.at >= eta.getTime() - 5, "delivered before its ETA");
    assert.ok(got[0]!.at < eta.getTime() + 1500, "promoted late");
    assert.equal(await redis.zCard(`${f.prefix}celeriac.eta`), 0);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: the consumer resumes by itself after its connections are killed", async () => {
  const f = fixture({ blockTimeout: 300 });
  await using consumer = f.make();
  await using producer = f.make({ connectionName: `${f.name}-producer` });
  try {
    const controller = new AbortController();
    const seen: unknown[] = [];
    const run = (async () => {
      for await (const d of consumer.consume([f.queue], { signal: controller.signal })) {
        seen.push(d.message.headers.id);
        await d.ack();
      }
    })();
    await producer.publish(f.queue, task("before"));
    for (let i = 0; i < 50 && seen.length < 1; i++) await sleep(50);
    assert.deepEqual(seen, ["before"]);
    assert.ok(await killConnections(f.name) >= 2, "expected the consumer's connections");
    await producer.publish(f.queue, task("after"));
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(50);
    controller.abort();
    await run;
    assert.deepEqual(seen, ["before", "after"]);
  } finally {
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis: a shared client replaced as wedged is not handed back by the next get()", async () => {
  const shared = new SharedRedisClient(() => createRedisClient(parseRedisUrl(REDIS)));
  const first = await shared.get();
  // The consumer's recovery replaces its client and asks for a new one in the same breath.
  shared.replace(first);
  const second = await shared.get();
  try {
    assert.notEqual(second, first);
    assert.equal(await second.ping(), "PONG");
  } finally {
    await closeRedisClient(second, 0);
  }
});

Deno.test("redis broker: a stop ends the blocking wait at once, and a message claimed behind it goes back to the queue", async () => {
  // A long blockTimeout: an idle wait ends early only if the stop ends it.
  const f = fixture({ blockTimeout: 30_000 });
  await using consumer = f.make();
  const redis = await rawClient();
  const consume = (controller: AbortController, delivered: string[]) =>
    (async () => {
      for await (const d of consumer.consume([f.queue], { signal: controller.signal })) {
        delivered.push(d.message.headers.id as string);
        await d.ack();
      }
    })();
  try {
    const idle = new AbortController();
    const idleRun = consume(idle, []);
    await waitBlocked(f.name);
    const t0 = Date.now();
    idle.abort();
    await idleRun;
    assert.ok(Date.now() - t0 < 5_000, `the idle stop took ${Date.now() - t0} ms`);
    // A message arrives just as the consumer stops: the BLMOVE returns and the claim behind it
    // runs, but the consumer stops before it reads their replies. The message must be
    // delivered or back in the queue, never left in `unacked` by a claim whose reply was lost.
    const delivered: string[] = [];
    const n = 30;
    for (let i = 0; i < n; i++) {
      const controller = new AbortController();
      const run = consume(controller, delivered);
      await waitBlocked(f.name);
      const env = toKombuEnvelope(task(`m-${i}`), { queue: f.queue });
      const pushed = redis.lPush(`${f.prefix}${f.queue}`, JSON.stringify(env));
      // Stops after the push is written (the client writes at setImmediate) and before any
      // reply is read, half the time; the other half once the push is done.
      if (i % 2 === 0) await new Promise((resolve) => setImmediate(resolve));
      else await pushed;
      controller.abort();
      await pushed;
      await run;
    }
    const queued = (await redis.lRange(`${f.prefix}${f.queue}`, 0, -1))
      .map((raw) => JSON.parse(raw).headers.id as string);
    assert.deepEqual(
      [...delivered, ...queued].sort(),
      [...Array(n).keys()].map((i) => `m-${i}`).sort(),
    );
    assert.equal(await redis.hLen(`${f.prefix}unacked`), 0);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: a user not allowed CLIENT commands consumes, and a stop still ends the wait at once", async () => {
  const user = `celeriac-test-${crypto.randomUUID()}`;
  const redis = await rawClient();
  const prefix = `${user}:`;
  await redis.sendCommand(["ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-client"]);
  try {
    const url = new URL(REDIS);
    url.username = user;
    url.password = "pw";
    await using broker = new RedisBroker(url.href, { keyPrefix: prefix, blockTimeout: 30_000 });
    const queue = `q-${user}`;
    const controller = new AbortController();
    const seen: string[] = [];
    const run = (async () => {
      for await (const d of broker.consume([queue], { signal: controller.signal })) {
        seen.push(d.message.headers.id as string);
        await d.ack();
      }
    })();
    await sleep(300);
    await broker.publish(queue, task("acl-1"));
    for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(20);
    assert.deepEqual(seen, ["acl-1"]);
    await sleep(200);
    const t0 = Date.now();
    controller.abort();
    await run;
    assert.ok(Date.now() - t0 < 5_000, `the stop took ${Date.now() - t0} ms`);
  } finally {
    await redis.sendCommand(["ACL", "DELUSER", user]);
    await redis.disconnect();
    await deleteByPrefix(prefix);
  }
});

Deno.test("redis broker: broadcast() publishes on kombu's /<db>.<exchange>/<routing key> channel and subscribe() gets it", async () => {
  const f = fixture();
  await using broker = f.make();
  const redis = await rawClient();
  const channels: string[] = [];
  await redis.pSubscribe(`${f.prefix}/0.celeryev*`, (_m, channel) => channels.push(channel));
  try {
    const controller = new AbortController();
    const it = broker.subscribe("celeryev", { signal: controller.signal })[Symbol.asyncIterator]();
    const next = it.next();
    await sleep(100);
    await broker.broadcast({
      exchange: "celeryev",
      routingKey: "worker.heartbeat",
      message: task("ev"),
    });
    const r = await next;
    assert.equal(r.value?.routingKey, "worker.heartbeat");
    assert.equal(r.value?.message.headers.id, "ev");
    controller.abort();
    await it.return?.(undefined);
    assert.deepEqual(channels, [`${f.prefix}/0.celeryev/worker.heartbeat`]);
  } finally {
    await redis.disconnect();
  }
});

Deno.test("redis broker: 5,000 concurrent publishes all arrive, once each", async () => {
  // Speed is measured in bench/, not asserted here: this checks that pipelined publishes and
  // batched acks lose and duplicate nothing.
  const f = fixture();
  await using broker = f.make();
  try {
    const n = 5000;
    await Promise.all(Array.from({ length: n }, (_, i) => broker.publish(f.queue, task(`m-${i}`))));
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 30_000);
    const seen = new Set<unknown>();
    for await (const d of broker.consume([f.queue], { prefetch: 100, signal: controller.signal })) {
      seen.add(d.message.headers.id);
      void d.ack();
      if (seen.size === n) break;
    }
    clearTimeout(timer);
    assert.equal(seen.size, n);
    assert.equal(await broker.purge(f.queue), 0);
  } finally {
    await deleteByPrefix(f.prefix);
  }
});

Deno.test("redis broker: the conformance suite's keys are removed", async () => {
  for (const prefix of suitePrefixes) await deleteByPrefix(prefix);
  const redis = await rawClient();
  try {
    for (const prefix of suitePrefixes) {
      assert.deepEqual(await redis.keys(`${prefix}*`), []);
    }
  } finally {
    await redis.disconnect();
  }
});
