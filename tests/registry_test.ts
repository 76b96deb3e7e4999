// The one scheme registry: every caller (App, beat, rate limits) gets its implementation from
// one table, unknown schemes fail loudly, and beat never silently falls back to memory.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { beatStoreFor, beatStoreForApp, startBeat } from "../lib/beat/beat.ts";
import { KvBeatStore } from "../lib/beat/store_kv.ts";
import { MemoryBeatStore } from "../lib/beat/store_memory.ts";
import { RedisBeatStore } from "../lib/beat/store_redis.ts";
import {
  createBackend,
  createBeatStore,
  createBroker,
  createRateLimiter,
  knownSchemes,
  schemeInfo,
} from "../lib/transport/registry.ts";
import { createRateLimiter as workerRateLimiter } from "../lib/worker/rate_limit.ts";

Deno.test("a mistyped reddis:// broker URL names the scheme and lists the known ones", async () => {
  const error = await createBroker("reddis://:pw@localhost:6379/0").then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof TypeError);
  assert.match(error.message, /unknown scheme "reddis:"/);
  assert.match(error.message, /redis:\/\//);
  assert.match(error.message, /amqp:\/\//);
  assert.doesNotMatch(error.message, /pw/, "the password is hidden");
});

Deno.test("every kind refuses a scheme that does not offer it, listing those that do", async () => {
  await assert.rejects(() => createBroker("rpc://"), /offers no broker.*memory:\/\//);
  await assert.rejects(() => createBackend("amqp://localhost"), /offers no result backend.*rpc:/);
  await assert.rejects(() => createBeatStore("amqp://localhost"), /offers no beat store/);
  await assert.rejects(() => createRateLimiter("amqp://localhost"), /global rate limit/);
  await assert.rejects(() => workerRateLimiter("amqps://localhost"), TypeError);
  await assert.rejects(() => createBroker("no-scheme"), /has no scheme/);
});

Deno.test("beat keeps its state in a kv+https:// backend's KV, not in memory", async () => {
  const store = await beatStoreFor("kv+https://kv.example.invalid/db");
  try {
    assert.ok(store instanceof KvBeatStore, `got ${store.constructor.name}`);
  } finally {
    await store.close();
  }
});

Deno.test("beat with an rpc:// backend uses the broker's store, or says it has none", async () => {
  const onRedis = await beatStoreForApp({
    backendUrl: "rpc://",
    brokerUrl: "redis://127.0.0.1:6379/0",
  });
  assert.ok(onRedis instanceof RedisBeatStore, `got ${onRedis.constructor.name}`);
  await onRedis.close();
  const onKv = await beatStoreForApp({ backendUrl: "rpc://", brokerUrl: "kv://:memory:" });
  assert.ok(onKv instanceof KvBeatStore);
  await onKv.close();
  await assert.rejects(
    () => beatStoreForApp({ backendUrl: "rpc://", brokerUrl: "amqp://guest:secret@localhost" }),
    (e: unknown) =>
      e instanceof TypeError && /Cannot start beat/.test(e.message) &&
      /pass a store/.test(e.message) && !/secret/.test(e.message),
  );
});

Deno.test("startBeat() on rpc:// + amqp:// fails instead of using a private memory store", async () => {
  const app = new App({ broker: "amqp://localhost:1//", backend: "rpc://" });
  try {
    await assert.rejects(() => startBeat(app), /Cannot start beat/);
  } finally {
    await app.close();
  }
});

Deno.test("memory:// gets memory implementations of every kind", async () => {
  const store = await createBeatStore("memory://");
  assert.ok(store instanceof MemoryBeatStore);
  const a = await createRateLimiter("memory://registry-test");
  const b = await workerRateLimiter("memory://registry-test");
  assert.equal(a, b, "one limiter per memory:// URL in the process");
  assert.deepEqual(schemeInfo("memory://")?.kinds, [
    "broker",
    "backend",
    "beat store",
    "rate limiter",
  ]);
  assert.equal(schemeInfo("rediss://h")?.transport, "redis");
  assert.equal(schemeInfo("rediss://h")?.secure, true);
  assert.ok(knownSchemes("backend").includes("rpc:"));
  assert.ok(!knownSchemes("broker").includes("rpc:"));
});
