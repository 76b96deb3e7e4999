/** Long timers (lib/_timer.ts): no overflow past 2^31 ms, chaining, clear, abort. */

import assert from "node:assert/strict";
import { MAX_TIMEOUT_MS, setLongTimeout, sleep } from "../lib/_timer.ts";

Deno.test("setLongTimeout() of 2^31 ms and more does not fire at once (setTimeout does)", async () => {
  let fired = 0;
  const timers = [2 ** 31, 2 ** 31 + 1000, 30 * 86_400_000, 2 ** 40, Infinity].map((ms) =>
    setLongTimeout(() => fired++, ms)
  );
  try {
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fired, 0);
    assert.ok(timers.every((t) => t.pending));
  } finally {
    for (const t of timers) t.clear();
  }
  assert.ok(timers.every((t) => !t.pending));
});

Deno.test("setLongTimeout() chains chunks and fires once, after the whole delay", async () => {
  const start = performance.now();
  let calls = 0;
  await new Promise<void>((resolve) => {
    setLongTimeout(
      () => {
        calls++;
        resolve();
      },
      120,
      { chunkMs: 25 },
    );
  });
  const elapsed = performance.now() - start;
  assert.ok(elapsed >= 119, `fired after ${elapsed} ms`);
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(calls, 1);
});

Deno.test("setLongTimeout() can be cleared between chunks and never fires then", async () => {
  let fired = false;
  const timer = setLongTimeout(() => (fired = true), 100, { chunkMs: 20 });
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(timer.pending);
  timer.clear();
  timer.clear();
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(fired, false);
  assert.equal(timer.pending, false);
});

Deno.test("setLongTimeout() with 0, a negative delay or NaN fires on a later turn, not synchronously", async () => {
  for (const ms of [0, -5, NaN]) {
    let fired = false;
    const done = new Promise<void>((resolve) =>
      setLongTimeout(() => ((fired = true), resolve()), ms)
    );
    assert.equal(fired, false);
    await done;
    assert.equal(fired, true);
  }
});

Deno.test("sleep() resolves after the delay and rejects with the signal's reason on abort", async () => {
  await sleep(5, undefined, { chunkMs: 2 });
  const controller = new AbortController();
  const long = sleep(2 ** 31 + 1, controller.signal);
  setTimeout(() => controller.abort(new Error("stop")), 10);
  await assert.rejects(long, /stop/);
  await assert.rejects(sleep(1, AbortSignal.abort(new Error("already"))), /already/);
  assert.equal(MAX_TIMEOUT_MS, 2 ** 31 - 1);
});
