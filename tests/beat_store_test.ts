import assert from "node:assert/strict";
import type { BeatStore, EntryState } from "../lib/beat/store.ts";
import { KvBeatStore } from "../lib/beat/store_kv.ts";
import { MemoryBeatStore } from "../lib/beat/store_memory.ts";
import { RedisBeatStore } from "../lib/beat/store_redis.ts";

const REDIS = Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379/1";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function storeSuite(name: string, make: () => Promise<BeatStore> | BeatStore) {
  Deno.test(`${name}: the lease has one owner, renews, expires and releases`, async () => {
    await using store = await make();
    assert.equal(await store.acquireLease("a", 300), true);
    assert.equal(await store.acquireLease("b", 300), false);
    assert.equal(await store.renewLease("b", 300), false);
    assert.equal(await store.acquireLease("a", 300), true, "the owner re-acquires");
    assert.equal(await store.renewLease("a", 300), true);
    await store.releaseLease("b"); // not the owner: no effect
    assert.equal(await store.acquireLease("b", 300), false);
    await store.releaseLease("a");
    assert.equal(await store.acquireLease("b", 200), true);
    await sleep(260);
    assert.equal(await store.renewLease("b", 200), false, "an expired lease cannot be renewed");
    assert.equal(await store.acquireLease("a", 200), true, "an expired lease can be taken");
    await store.releaseLease("a");
  });

  Deno.test(`${name}: compareAndSet writes only over the expected state`, async () => {
    await using store = await make();
    const s0: EntryState = { lastRunAt: null, totalRunCount: 0, since: 5 };
    const s1: EntryState = { lastRunAt: 10, totalRunCount: 1, since: 5 };
    assert.equal(await store.getState("e"), null);
    assert.equal(await store.compareAndSet("e", s0, s1), false, "absent is not s0");
    assert.equal(await store.compareAndSet("e", null, s0), true);
    assert.equal(await store.compareAndSet("e", null, s0), false, "already present");
    assert.deepEqual(await store.getState("e"), s0);
    const race = await Promise.all([
      store.compareAndSet("e", s0, s1),
      store.compareAndSet("e", s0, { ...s1, lastRunAt: 11 }),
    ]);
    assert.deepEqual(race.filter(Boolean).length, 1, "exactly one of two racers wins");
    assert.equal(await store.getState("other"), null);
  });
}

storeSuite("MemoryBeatStore", () => new MemoryBeatStore());
storeSuite("KvBeatStore", () => new KvBeatStore(":memory:"));
storeSuite(
  "RedisBeatStore",
  () => new RedisBeatStore(REDIS, { prefix: `test:beat:${crypto.randomUUID()}:` }),
);
