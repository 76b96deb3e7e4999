import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { KvBackend } from "../lib/backends/kv.ts";
import { KvBroker } from "../lib/brokers/kv.ts";
import { DEAD_LETTER_REASON_HEADER, type DeadLetterEvent } from "../lib/brokers/broker.ts";
import { createBackend, createBroker } from "../lib/transport/registry.ts";
import { DEFAULT_KV_PATH, kvTarget } from "../lib/_kv.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { backendSuite, meta } from "./_backend_suite.ts";
import { brokerSuite } from "./_broker_suite.ts";

const dir = Deno.makeTempDirSync({ prefix: "celeriac-kv-test-" });
const file = join(dir, "test.kv");
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const message = (id: string) => encodeTask({ id, name: "tasks.add", args: [1, 2], kwargs: {} });

brokerSuite("kv broker", (options = {}) => {
  const id = crypto.randomUUID();
  const broker = new KvBroker(`kv://${file}`, options);
  return Promise.resolve({ broker, queue: `q-${id}`, deadLetters: (q) => broker.deadLetters(q) });
});

backendSuite("kv backend", () => {
  const id = crypto.randomUUID();
  return Promise.resolve({ backend: new KvBackend(`kv://${file}`), prefix: id });
});

Deno.test("kv URLs map to files, :memory: and KV Connect", () => {
  assert.equal(kvTarget("kv://").target, resolve(DEFAULT_KV_PATH));
  assert.equal(kvTarget("kv:").target, resolve(DEFAULT_KV_PATH));
  assert.equal(kvTarget("kv:///tmp/a/b.kv").target, "/tmp/a/b.kv");
  assert.equal(kvTarget("kv://./rel/x.kv").target, resolve("rel/x.kv"));
  assert.equal(kvTarget("kv://:memory:").target, ":memory:");
  assert.deepEqual(kvTarget("kv+https://api.deno.com/databases/abc/connect"), {
    target: "https://api.deno.com/databases/abc/connect",
    local: false,
  });
  assert.equal(kvTarget("kv://", "https://example.com/kv").target, "https://example.com/kv");
  assert.throws(() => kvTarget("redis://x"), TypeError);
  assert.throws(() => new KvBroker("kv://", { leaseTime: -1 }), RangeError);
  assert.throws(() => new KvBroker("kv:///tmp/x.kv?leaseTime=abc"), RangeError);
  assert.throws(() => new KvBroker("kv:///tmp/x.kv?bogus=1"), TypeError);
  assert.equal(kvTarget("kv:///tmp/x.kv?leaseTime=5").target, "/tmp/x.kv");
});

Deno.test("kv:// creates .celeriac/celeriac.kv under the current directory", async () => {
  const cwd = Deno.cwd();
  const here = Deno.makeTempDirSync({ dir });
  Deno.chdir(here);
  try {
    await using broker = await createBroker("kv://");
    await broker.publish("default", message("d"));
    assert.ok(Deno.statSync(join(here, ".celeriac", "celeriac.kv")).isFile);
    assert.equal(await broker.purge("default"), 1);
  } finally {
    Deno.chdir(cwd);
  }
});

Deno.test("kv broker and backend from one path share a handle, closed by the last close()", async () => {
  const path = `kv://${join(dir, "shared.kv")}`;
  const broker = await createBroker(path);
  const backend = await createBackend(path);
  await broker.publish("s", message("s"));
  await backend.store("s", meta("s", "SUCCESS", 1));
  await broker.close();
  // The backend still works after the broker closed.
  assert.equal((await backend.get("s"))?.result, 1);
  await backend.close();
  await backend.close();
  await assert.rejects(() => broker.publish("s", message("t")), /closed/);
});

Deno.test("kv broker serves priority 9 first, FIFO within a priority", async () => {
  await using broker = new KvBroker(`kv://${file}`);
  const q = `prio-${crypto.randomUUID()}`;
  await broker.publish(q, message("low-1"), { priority: 0 });
  await broker.publish(q, message("high-1"), { priority: 9 });
  await broker.publish(q, message("low-2"), { priority: 0 });
  await broker.publish(q, message("high-2"), { priority: 9 });
  await broker.publish(q, message("mid"), { priority: 5 });
  const seen: unknown[] = [];
  const controller = new AbortController();
  for await (const d of broker.consume([q], { prefetch: 1, signal: controller.signal })) {
    seen.push(d.message.headers.id);
    await d.ack();
    if (seen.length === 5) break;
  }
  assert.deepEqual(seen, ["high-1", "high-2", "mid", "low-1", "low-2"]);
  await assert.rejects(() => broker.publish(q, message("x"), { priority: 10 }), RangeError);
});

Deno.test("kv broker redelivers an unacked message once its lease expires", async () => {
  const q = `lease-${crypto.randomUUID()}`;
  const options = { leaseTime: 300, maintenanceInterval: 50 };
  await using a = new KvBroker(`kv://${file}`, options);
  await a.publish(q, message("lost"));
  const controller = new AbortController();
  const it = a.consume([q], { signal: controller.signal })[Symbol.asyncIterator]();
  const first = (await it.next()).value!;
  assert.equal(first.deliveryCount, 1);
  controller.abort();
  await it.return?.(undefined);
  // Simulate a dead consumer: its process stops renewing the lease.
  await a.close();
  await using b = new KvBroker(`kv://${file}`, options);
  const started = Date.now();
  const c2 = new AbortController();
  for await (const d of b.consume([q], { signal: c2.signal })) {
    assert.equal(d.message.headers.id, "lost");
    assert.equal(d.redelivered, true);
    assert.equal(d.deliveryCount, 2);
    await d.ack();
    break;
  }
  assert.ok(Date.now() - started < 2_000);
  assert.equal(await b.size(q), 0);
});

Deno.test("kv broker renews the lease of a delivery outstanding longer than the lease", async () => {
  const q = `renew-${crypto.randomUUID()}`;
  const options = { leaseTime: 200, maintenanceInterval: 50 };
  await using a = new KvBroker(`kv://${file}`, options);
  await using b = new KvBroker(`kv://${file}`, options);
  await a.publish(q, message("slow"));
  const ca = new AbortController();
  const it = a.consume([q], { signal: ca.signal })[Symbol.asyncIterator]();
  const held = (await it.next()).value!;
  // Another consumer must not get it while `a` still holds it (3 lease times).
  const cb = new AbortController();
  const timer = setTimeout(() => cb.abort(), 600);
  let stolen = 0;
  for await (const d of b.consume([q], { signal: cb.signal })) {
    stolen++;
    await d.ack();
  }
  clearTimeout(timer);
  assert.equal(stolen, 0);
  await held.ack();
  ca.abort();
  await it.return?.(undefined);
});

Deno.test("kv broker dead-letters a message after maxDeliveries", async () => {
  const q = `dead-${crypto.randomUUID()}`;
  await using broker = new KvBroker(`kv://${file}`, { maxDeliveries: 3 });
  await broker.publish(q, message("poison"));
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5_000);
  const counts: number[] = [];
  for await (const d of broker.consume([q], { signal: controller.signal })) {
    counts.push(d.deliveryCount);
    await d.reject({ requeue: true });
    if (counts.length === 3) {
      // Nothing is left to deliver.
      setTimeout(() => controller.abort(), 300);
    }
  }
  clearTimeout(timer);
  assert.deepEqual(counts, [1, 2, 3]);
  const dead = await broker.deadLetters(q);
  assert.deepEqual(dead.map((m) => m.headers.id), ["poison"]);
});

Deno.test("kv broker reports a lease expired past maxDeliveries through onDeadLetter", async () => {
  const q = `dead-lease-${crypto.randomUUID()}`;
  const options = { leaseTime: 200, maintenanceInterval: 50, maxDeliveries: 1 };
  await using a = new KvBroker(`kv://${file}`, options);
  await a.publish(q, message("crashes-its-worker"));
  const controller = new AbortController();
  const it = a.consume([q], { signal: controller.signal })[Symbol.asyncIterator]();
  assert.equal((await it.next()).value!.deliveryCount, 1);
  controller.abort();
  await it.return?.(undefined);
  // The worker died holding it: nobody renews the lease.
  await a.close();
  await using b = new KvBroker(`kv://${file}`, options);
  const events: DeadLetterEvent[] = [];
  const c2 = new AbortController();
  const timer = setTimeout(() => c2.abort(), 5_000);
  const onDeadLetter = (e: DeadLetterEvent) => {
    events.push(e);
    c2.abort();
  };
  for await (const d of b.consume([q], { signal: c2.signal, onDeadLetter })) await d.ack();
  clearTimeout(timer);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.queue, q);
  assert.equal(events[0]!.message?.headers.id, "crashes-its-worker");
  assert.match(events[0]!.reason, /lease expired after 1 deliveries \(maxDeliveries 1\)/);
  const dead = await b.deadLetters(q);
  assert.deepEqual(dead.map((m) => m.headers.id), ["crashes-its-worker"]);
  assert.equal(dead[0]!.headers[DEAD_LETTER_REASON_HEADER], events[0]!.reason);
});

Deno.test("kv broker schedule() survives the broker closing before the ETA", async () => {
  const q = `eta-${crypto.randomUUID()}`;
  const eta = new Date(Date.now() + 500);
  {
    await using producer = new KvBroker(`kv://${file}`);
    await producer.schedule(q, message("later"), eta);
    assert.equal(await producer.size(q), 0);
  }
  await using consumer = new KvBroker(`kv://${file}`);
  const controller = new AbortController();
  for await (const d of consumer.consume([q], { signal: controller.signal })) {
    const late = Date.now() - eta.getTime();
    assert.ok(late >= -20 && late < 300, `delivered ${late} ms after the ETA`);
    await d.ack();
    break;
  }
});

Deno.test("kv backend: concurrent stores never replace SUCCESS", async () => {
  await using a = new KvBackend(`kv://${file}`);
  const id = `race-${crypto.randomUUID()}`;
  await Promise.all([
    a.store(id, meta(id, "SUCCESS", "win")),
    ...Array.from({ length: 10 }, () => a.store(id, meta(id, "STARTED"))),
  ]);
  // Whatever order they ran in, once SUCCESS is in it stays.
  await a.store(id, meta(id, "FAILURE", "late"));
  assert.equal((await a.get(id))?.status, "SUCCESS");
});

Deno.test("kv backend: results expire after resultExpires", async () => {
  await using backend = new KvBackend(`kv://${file}`, { resultExpires: 100 });
  const id = `exp-${crypto.randomUUID()}`;
  await backend.store(id, meta(id, "SUCCESS", 1));
  assert.equal((await backend.get(id))?.result, 1);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(await backend.get(id), null);
});

Deno.test("kv backend: waitFor() over more than 10 ids (split watches)", async () => {
  await using backend = new KvBackend(`kv://${file}`);
  const ids = Array.from({ length: 25 }, (_, i) => `many-${i}-${crypto.randomUUID()}`);
  const done = Array.fromAsync(backend.waitFor(ids));
  for (const id of [...ids].reverse()) await backend.store(id, meta(id, "SUCCESS", id));
  const got = await done;
  assert.deepEqual(got.map((m) => m.task_id).sort(), [...ids].sort());
});

Deno.test("kv backend: a redelivered chord part is counted once", async () => {
  await using backend = new KvBackend(`kv://${file}`);
  const gid = `chord-${crypto.randomUUID()}`;
  await backend.setChordSize(gid, 3);
  const part = (i: number) => ({ taskId: `t${i}`, status: "SUCCESS", result: i });
  assert.equal(await backend.chordPartReturn(gid, 0, part(0)), null);
  assert.equal(await backend.chordPartReturn(gid, 0, part(0)), null);
  assert.equal(await backend.chordPartReturn(gid, 2, part(2)), null);
  const parts = await backend.chordPartReturn(gid, 1, part(1));
  assert.deepEqual(parts?.map((p) => p.result), [0, 1, 2]);
});

Deno.test("kv broker broadcast() reaches every subscriber of the exchange, from now on", async () => {
  await using a = new KvBroker(`kv://${file}`);
  await using b = new KvBroker(`kv://${file}`);
  const exchange = `pidbox-${crypto.randomUUID()}`;
  const bc = (id: string, ex = exchange) => ({
    exchange: ex,
    routingKey: "",
    message: message(id),
  });
  await a.broadcast(bc("before"));
  const controller = new AbortController();
  const subscribers = [a, b].map(async (broker) => {
    const got: unknown[] = [];
    for await (const m of broker.subscribe(exchange, { signal: controller.signal })) {
      got.push(m.message.headers.id);
      if (got.length === 3) break;
    }
    return got;
  });
  await new Promise((r) => setTimeout(r, 100));
  await a.broadcast(bc("one"));
  await b.broadcast(bc("other", `${exchange}-x`));
  await b.broadcast(bc("two"));
  await a.broadcast(bc("three"));
  const timer = setTimeout(() => controller.abort(), 5_000);
  const results = await Promise.all(subscribers);
  clearTimeout(timer);
  for (const got of results) assert.deepEqual(got, ["one", "two", "three"]);
});
