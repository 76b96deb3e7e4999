// The RateLimiter seam: parsing Celery rates, GCRA reservations in memory, and the shared
// limiters (Redis, Deno KV) used by several processes at once.
import assert from "node:assert/strict";
import { assertRate } from "./_rate.ts";
import { backoffCountdown } from "@celeriac/celeriac";
import { createRateLimiter, MemoryRateLimiter, parseRate } from "@celeriac/celeriac/worker";
import { deleteByPrefix, REDIS } from "./_redis_helpers.ts";

Deno.test("parseRate reads Celery's rates and refuses nonsense with a clear error", () => {
  assert.equal(parseRate("10/s"), 10);
  assert.equal(parseRate("100/m"), 100 / 60);
  assert.equal(parseRate("1/h"), 1 / 3600);
  assert.equal(parseRate("5/sec"), 5);
  assert.equal(parseRate("7"), 7);
  assert.equal(parseRate(2.5), 2.5);
  for (const none of ["", 0, null, undefined]) assert.equal(parseRate(none), 0);
  for (const bad of ["fast", "10/d", "-1/s", "1/", -3, NaN]) {
    assert.throws(() => parseRate(bad as string), TypeError, String(bad));
  }
});

Deno.test("backoffCountdown follows factor * 2 ** retries, capped, with full jitter in range", () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((n) => backoffCountdown(n, { jitter: false })),
    [1, 2, 4, 8],
  );
  assert.equal(backoffCountdown(4, { factor: 3, jitter: false }), 48);
  assert.equal(backoffCountdown(30, { jitter: false }), 600);
  assert.equal(backoffCountdown(30, { max: 5, jitter: false }), 5);
  assert.equal(backoffCountdown(3, { random: () => 0.5 }), 4);
  for (let i = 0; i < 100; i++) {
    const c = backoffCountdown(3);
    assert.ok(c >= 0 && c <= 8);
  }
  assert.throws(() => backoffCountdown(-1), RangeError);
});

Deno.test("MemoryRateLimiter reserves slots 1/rate apart and refuses slots beyond maxWaitMs", async () => {
  let now = 1000;
  const limiter = new MemoryRateLimiter(() => now);
  assert.deepEqual(await limiter.reserve("t", 10, 500), { reserved: true, waitMs: 0 });
  assert.deepEqual(await limiter.reserve("t", 10, 500), { reserved: true, waitMs: 100 });
  assert.deepEqual(await limiter.reserve("t", 10, 500), { reserved: true, waitMs: 200 });
  // Other names are independent.
  assert.deepEqual(await limiter.reserve("u", 10, 500), { reserved: true, waitMs: 0 });
  // Too far: not reserved, and nothing was taken.
  assert.deepEqual(await limiter.reserve("t", 10, 250), { reserved: false, waitMs: 300 });
  assert.deepEqual(await limiter.reserve("t", 10, 300), { reserved: true, waitMs: 300 });
  // Idle time does not build a burst: capacity is one, as Celery's token bucket.
  now += 10_000;
  assert.equal((await limiter.reserve("t", 10, 0)).waitMs, 0);
  assert.equal((await limiter.reserve("t", 10, 0)).reserved, false);
  await limiter.close();
});

Deno.test("acquire() waits for its slot and stops when the signal aborts", async () => {
  await using limiter = new MemoryRateLimiter();
  const t0 = performance.now();
  for (let i = 0; i < 4; i++) await limiter.acquire("t", "20/s");
  assert.ok(performance.now() - t0 >= 140, `took ${performance.now() - t0} ms`);
  const controller = new AbortController();
  const waiting = limiter.acquire("slow", "1/h");
  await waiting;
  const blocked = limiter.acquire("slow", "1/h", controller.signal);
  controller.abort(new Error("stop"));
  await assert.rejects(blocked, /stop/);
  await assert.rejects(() => limiter.acquire("t", "nonsense"), TypeError);
});

Deno.test("createRateLimiter shares one limiter per memory:// URL and refuses brokers without a store", async () => {
  const a = await createRateLimiter("memory://rl-shared");
  const b = await createRateLimiter("memory://rl-shared");
  assert.equal(a, b);
  await assert.rejects(() => createRateLimiter("amqp://guest@localhost"), TypeError);
});

// Each child process takes `n` slots of `name` at `rate` and prints the times it got them.
const CHILD = `
import { createRateLimiter } from "${new URL("../lib/worker/rate_limit.ts", import.meta.url).href}";
const [url, prefix, name, n] = Deno.args;
const limiter = await createRateLimiter(url, { prefix });
const times = [];
for (let i = 0; i < Number(n); i++) { await limiter.acquire(name, "20/s"); times.push(Date.now()); }
await limiter.close();
console.log(JSON.stringify(times));
`;

async function twoProcesses(url: string, prefix: string): Promise<number> {
  const run = () =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", CHILD, url, prefix, "tasks.shared", "15"],
      cwd: new URL("../", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
  const outs = await Promise.all([run(), run()]);
  const times: number[] = [];
  for (const out of outs) {
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    times.push(...JSON.parse(new TextDecoder().decode(out.stdout)));
  }
  times.sort((a, b) => a - b);
  return (times.length - 1) / ((times.at(-1)! - times[0]!) / 1000);
}

Deno.test("the Redis limiter holds two processes together to 20/s (within 10 %)", async () => {
  const prefix = `celeriac-test-${crypto.randomUUID()}:`;
  try {
    const rate = await twoProcesses(REDIS, prefix);
    assertRate(rate, 20);
  } finally {
    await deleteByPrefix(prefix);
  }
});

Deno.test("the Deno KV limiter holds two processes together to 20/s (within 10 %)", async () => {
  const path = await Deno.makeTempFile({ suffix: ".kv" });
  try {
    const rate = await twoProcesses(`kv://${path}`, "t");
    assertRate(rate, 20);
  } finally {
    for (const p of [path, `${path}-shm`, `${path}-wal`]) await Deno.remove(p).catch(() => {});
  }
});
