// Tests of the hot-path changes made for performance (bench branch) and of the bench helpers:
// the plain-JSON fast paths, the Notifier, batched LPUSH and batched result stores on Redis.
import {
  deepStrictEqual as assertEquals,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { Notifier } from "../lib/_signal.ts";
import { EncodeError } from "../lib/errors.ts";
import { parseJson, stringifyJson } from "../lib/protocol/json.ts";
import { RedisBroker } from "../lib/brokers/redis.ts";
import { RedisBackend } from "../lib/backends/redis.ts";
import { makeMeta } from "../lib/app.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { percentile } from "../bench/bench.ts";
import { summarize } from "../bench/profile_summary.ts";
import { median } from "../bench/extras.ts";
import { deleteByPrefix, rawClient, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

Deno.test("percentile is nearest-rank, as the peer suites", () => {
  const v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assertEquals(percentile(v, 50), 5);
  assertEquals(percentile(v, 99), 10);
  assertEquals(percentile(v, 0), 1);
  assertEquals(percentile([7], 99), 7);
  assertEquals(Number.isNaN(percentile([], 50)), true);
});

Deno.test("profile summary: self time by function and file, inclusive time up the tree", () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });
  const s = summarize({
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2] },
      { id: 2, callFrame: frame("outer", "file:///x/lib/a.ts"), children: [3] },
      { id: 3, callFrame: frame("inner", "file:///x/lib/b.ts") },
    ],
    samples: [2, 3, 3, 3],
    timeDeltas: [0, 1000, 1000, 1000, 1000],
    startTime: 0,
    endTime: 4000,
  });
  assertEquals(s.self[0]!.label, "inner lib/b.ts:1");
  assertEquals(s.self[0]!.ms, 3);
  assertEquals(s.files.map((r) => r.label), ["lib/b.ts", "lib/a.ts"]);
  assertEquals(s.total.find((r) => r.label.startsWith("outer"))!.ms, 4);
});

Deno.test("parseJson: plain texts parse as JSON.parse, tags and big ints still revive", () => {
  for (const text of ['{"a":[1,2.5,"x",null,true]}', '"\\u00e9"', "[1e300, -0, 12345678901]"]) {
    assertEquals(parseJson(text), JSON.parse(text));
  }
  assertEquals(parseJson('{"n":9007199254740993}'), { n: 9007199254740993n });
  assertEquals(parseJson('{"n":-12345678901234567890}'), { n: -12345678901234567890n });
  assertEquals(parseJson('{"__type__":"uuid","__value__":"u"}'), "u");
  // Tag keys spelled with escapes are still tags.
  assertEquals(parseJson('{"\\u005f_type__":"uuid","__value__":"u"}'), "u");
  assertEquals(parseJson('{"__t\\u0079pe__":"uuid","__value__":"u"}'), "u");
  // Sixteen digits in a string only takes the slow path; the value is the same.
  assertEquals(parseJson('["1234567890123456"]'), ["1234567890123456"]);
});

Deno.test("stringifyJson: plain data as JSON.stringify; bigint, Date, bytes by kombu's rule; Map fails", () => {
  const plain = { a: [1, "x", null, { b: true }] };
  assertEquals(stringifyJson(plain), JSON.stringify(plain));
  assertEquals(
    stringifyJson({ d: new Date(0), u: undefined }),
    '{"d":"1970-01-01T00:00:00Z","u":null}',
  );
  assertEquals(stringifyJson({ n: 2n ** 64n }), '{"n":18446744073709551616}');
  assertEquals(
    stringifyJson({ b: new Uint8Array([1, 2]) }),
    '{"b":{"__type__":"base64","__value__":"AQI="}}',
  );
  assertEquals(stringifyJson(undefined), "null");
  assertThrows(() => stringifyJson({ m: new Map([["k", 1]]) }), EncodeError);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assertThrows(() => stringifyJson(cyclic), EncodeError);
});

Deno.test("Notifier: notify, pending flag, timeout, and abort wakes only that signal's waiters", async () => {
  const n = new Notifier();
  n.notify();
  await n.wait(); // pending: returns at once
  const a = new AbortController();
  const b = new AbortController();
  let bWoken = false;
  const waitA = n.wait(a.signal);
  const waitB = n.wait(b.signal).then(() => bWoken = true);
  a.abort();
  await waitA;
  await Promise.resolve();
  assertEquals(bWoken, false);
  // The same signal again: still wakes on notify (one listener per signal, reused).
  const again = n.wait(b.signal);
  n.notify();
  await Promise.all([waitB, again]);
  const t0 = performance.now();
  await n.wait(undefined, 20);
  assertEquals(performance.now() - t0 >= 15, true);
  b.abort();
  await n.wait(b.signal); // aborted: returns at once
});

Deno.test("Redis broker: 2500 concurrent publishes (batched LPUSH) arrive in call order", async () => {
  const queue = `perf-order-${crypto.randomUUID()}`;
  const broker = new RedisBroker(REDIS);
  try {
    const ids = Array.from({ length: 2500 }, (_, i) => `id-${i}`);
    await Promise.all(
      ids.map((id) => broker.publish(queue, encodeTask({ id, name: "t", args: [], kwargs: {} }))),
    );
    const raw = await rawClient();
    try {
      assertEquals(await raw.lLen(queue), 2500);
      const popped = await raw.lRange(queue, 0, -1); // head first: the newest
      const order = popped.reverse().map((e) => JSON.parse(e).headers.id);
      assertEquals(order, ids);
    } finally {
      await raw.del([queue, `_kombu.binding.${queue}`]);
      await raw.quit();
    }
  } finally {
    await broker.close();
  }
});

Deno.test("Redis broker: publish after close rejects", async () => {
  const broker = new RedisBroker(REDIS);
  await broker.close();
  await assertRejects(() =>
    broker.publish("q", encodeTask({ id: "1", name: "t", args: [], kwargs: {} }))
  );
});

Deno.test("Redis backend: 1200 concurrent stores (batched) are all stored and published; SUCCESS kept", async () => {
  const prefix = `perf-store-${crypto.randomUUID()}`;
  const backend = new RedisBackend(REDIS_BACKEND, { resultExpires: 60_000 });
  try {
    const ids = Array.from({ length: 1200 }, (_, i) => `${prefix}-${i}`);
    await backend.store(ids[0]!, makeMeta(ids[0]!, "SUCCESS", "first"));
    const seen: string[] = [];
    const waiting = (async () => {
      for await (const meta of backend.waitFor(ids.slice(1), {})) seen.push(meta.task_id);
    })();
    await new Promise((r) => setTimeout(r, 100));
    await Promise.all(ids.map((id, i) => backend.store(id, makeMeta(id, "SUCCESS", i))));
    await waiting;
    assertEquals(seen.length, 1199);
    assertEquals((await backend.get(ids[0]!))?.result, "first");
    assertEquals((await backend.get(ids[1199]!))?.result, 1199);
    // The same id twice in one batch: the later write wins unless the first was a SUCCESS.
    const twice = `${prefix}-twice`;
    await Promise.all([
      backend.store(twice, makeMeta(twice, "STARTED", null)),
      backend.store(twice, makeMeta(twice, "SUCCESS", 42)),
      backend.store(twice, makeMeta(twice, "FAILURE", "late")),
    ]);
    assertEquals((await backend.get(twice))?.status, "SUCCESS");
  } finally {
    await backend.close();
    await deleteByPrefix(`celery-task-meta-${prefix}`, REDIS_BACKEND);
  }
});

Deno.test("bench extras: median skips missing values", () => {
  assertEquals(median([3, null, 1, undefined, 2]), 2);
  assertEquals(median([4, 1, 3, 2]), 2.5);
  assertEquals(median([null]), null);
});
