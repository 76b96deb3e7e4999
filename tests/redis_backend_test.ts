import assert from "node:assert/strict";
import { RedisBackend } from "../lib/backends/redis.ts";
import { backendSuite, meta } from "./_backend_suite.ts";
import {
  countConnections,
  killConnections,
  python,
  rawClient,
  REDIS_BACKEND,
  sleep,
} from "./_redis_helpers.ts";

backendSuite(
  "redis backend",
  () => Promise.resolve({ backend: new RedisBackend(REDIS_BACKEND), prefix: crypto.randomUUID() }),
);

Deno.test("redis backend: a result stored by celeriac is read by Python AsyncResult.get()", async () => {
  await using backend = new RedisBackend(REDIS_BACKEND, { resultExpires: 60_000 });
  const id = crypto.randomUUID();
  await backend.store(id, meta(id, "SUCCESS", { sum: 5, list: [1, "é"] }));
  const got = await python("get", REDIS_BACKEND, id);
  assert.deepEqual(got, { result: { sum: 5, list: [1, "é"] }, state: "SUCCESS" });
  const redis = await rawClient(REDIS_BACKEND);
  try {
    const ttl = await redis.ttl(`celery-task-meta-${id}`);
    assert.ok(ttl > 50 && ttl <= 60, `ttl ${ttl}`);
  } finally {
    await redis.disconnect();
  }
});

Deno.test("redis backend: a result stored by Python Celery is read by get() and waitFor()", async () => {
  await using backend = new RedisBackend(REDIS_BACKEND);
  const id = crypto.randomUUID();
  const waiting = (async () => {
    const seen = [];
    for await (const m of backend.waitFor([id])) seen.push(m);
    return seen;
  })();
  await sleep(100);
  await python("store", REDIS_BACKEND, id);
  const [m] = await waiting;
  assert.equal(m?.status, "SUCCESS");
  assert.deepEqual(m?.result, { from: "python", n: [1, 2] });
  assert.deepEqual((await backend.get(id))?.result, { from: "python", n: [1, 2] });
});

Deno.test("redis backend: every waiter shares one subscriber connection", async () => {
  const name = `celeriac-test-${crypto.randomUUID()}`;
  await using backend = new RedisBackend(REDIS_BACKEND, { connectionName: name });
  await using writer = new RedisBackend(REDIS_BACKEND);
  const ids = Array.from({ length: 50 }, () => crypto.randomUUID());
  const waits = ids.map(async (id) => {
    for await (const m of backend.waitFor([id])) return m.result;
  });
  await sleep(200);
  assert.equal(await countConnections(name, REDIS_BACKEND), 2);
  await Promise.all(ids.map((id, i) => writer.store(id, meta(id, "SUCCESS", i))));
  assert.deepEqual(await Promise.all(waits), ids.map((_, i) => i));
});

Deno.test("redis backend: a finished waiter unsubscribes from its channel, and one that waits again is not cut off", async () => {
  await using backend = new RedisBackend(REDIS_BACKEND);
  await using writer = new RedisBackend(REDIS_BACKEND);
  const redis = await rawClient(REDIS_BACKEND);
  const subscribers = async (id: string) =>
    Number((await redis.pubSubNumSub(`celery-task-meta-${id}`))[`celery-task-meta-${id}`]);
  const result = async (id: string) => {
    for await (const m of backend.waitFor([id])) return m.result;
  };
  try {
    const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
    const first = result(a);
    await sleep(100);
    assert.equal(await subscribers(a), 1);
    await writer.store(a, meta(a, "SUCCESS", 1));
    assert.equal(await first, 1);
    // The UNSUBSCRIBE is not awaited by the waiter: it goes out right after.
    for (let i = 0; i < 100 && await subscribers(a) > 0; i++) await sleep(10);
    assert.equal(await subscribers(a), 0);
    // A waiter that starts on the same channel as one ends is not cut off by its UNSUBSCRIBE.
    const watching = (async () => {
      for await (const m of backend.watch(b)) return m.status;
    })();
    await sleep(100);
    await writer.store(b, meta(b, "STARTED", null));
    assert.equal(await watching, "STARTED");
    const again = result(b);
    await sleep(100);
    assert.equal(await subscribers(b), 1);
    await writer.store(b, meta(b, "SUCCESS", 2));
    assert.equal(await again, 2);
  } finally {
    await redis.disconnect();
  }
});

Deno.test("redis backend: a waiting waitFor() resumes after its connections are killed", async () => {
  const name = `celeriac-test-${crypto.randomUUID()}`;
  await using backend = new RedisBackend(REDIS_BACKEND, { connectionName: name });
  await using writer = new RedisBackend(REDIS_BACKEND);
  const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
  const seen: string[] = [];
  const waiting = (async () => {
    for await (const m of backend.waitFor([a, b])) seen.push(m.task_id);
  })().catch(() => {});
  await sleep(150);
  assert.equal(await killConnections(name, REDIS_BACKEND), 2);
  // Stored while the subscriber is reconnecting: found by the re-read after reconnect.
  await writer.store(a, meta(a, "SUCCESS", 1));
  await sleep(500);
  // Stored after: delivered by the re-established subscription.
  await writer.store(b, meta(b, "FAILURE", { exc_type: "ValueError" }));
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([waiting, new Promise((r) => timer = setTimeout(r, 5000))]);
  clearTimeout(timer);
  assert.deepEqual(seen, [a, b]);
});

Deno.test("redis backend: chord parts use Celery's .s/.j keys and the keys are gone after completion", async () => {
  await using backend = new RedisBackend(REDIS_BACKEND);
  const gid = crypto.randomUUID();
  const redis = await rawClient(REDIS_BACKEND);
  try {
    await backend.setChordSize(gid, 2);
    assert.equal(await redis.get(`celery-taskset-meta-${gid}.s`), "2");
    assert.equal(
      await backend.chordPartReturn(gid, 1, { taskId: "t1", status: "SUCCESS", result: 10 }),
      null,
    );
    const [member] = await redis.zRange(`celery-taskset-meta-${gid}.j`, 0, -1);
    assert.deepEqual(JSON.parse(member!), [1, "t1", "SUCCESS", 10]);
    assert.equal(await redis.zScore(`celery-taskset-meta-${gid}.j`, member!), 1);
    const parts = await backend.chordPartReturn(gid, 0, {
      taskId: "t0",
      status: "SUCCESS",
      result: 0,
    });
    assert.deepEqual(parts?.map((p) => p.taskId), ["t0", "t1"]);
    assert.equal(
      await redis.exists([`celery-taskset-meta-${gid}.j`, `celery-taskset-meta-${gid}.s`]),
      0,
    );
    // A late duplicate (a redelivered header task) never completes the chord again.
    assert.equal(
      await backend.chordPartReturn(gid, 0, { taskId: "t0", status: "SUCCESS", result: 0 }),
      null,
    );
  } finally {
    await redis.del(`celery-taskset-meta-${gid}.j`);
    await redis.disconnect();
  }
});

Deno.test("redis backend: a saved group is stored in Celery's GroupResult tuple format", async () => {
  await using backend = new RedisBackend(REDIS_BACKEND);
  const gid = crypto.randomUUID();
  const redis = await rawClient(REDIS_BACKEND);
  try {
    await backend.saveGroup(gid, ["a", "b"]);
    assert.deepEqual(JSON.parse((await redis.get(`celery-taskset-meta-${gid}`))!), {
      result: [[gid, null], [[["a", null], null], [["b", null], null]]],
    });
  } finally {
    await redis.del(`celery-taskset-meta-${gid}`);
    await redis.disconnect();
  }
});
