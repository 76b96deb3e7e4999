/**
 * The app module of the benchmarks: the no-op task `bench.add(x, y) -> x + y`, as in the peer
 * harness, and the async I/O task `bench.io(ms)`. Broker and backend come from the environment (`CELERIAC_BROKER_URL`,
 * `CELERIAC_RESULT_BACKEND`), so the worker process, its Web Workers and the producer agree.
 * Results expire after `BENCH_RESULT_EXPIRES_MS` (default 600 000, as the Celery harness).
 *
 * @module
 */

import { App } from "../mod.ts";

/** The benchmark app. */
export const app: App = new App({
  broker: Deno.env.get("CELERIAC_BROKER_URL") ?? "redis://127.0.0.1:6379/0",
  backend: Deno.env.get("CELERIAC_RESULT_BACKEND") ?? "redis://127.0.0.1:6379/1",
  defaultQueue: Deno.env.get("BENCH_QUEUE") ?? "celeriac-bench",
  resultExpires: Number(Deno.env.get("BENCH_RESULT_EXPIRES_MS") ?? 600_000),
});

/** The no-op task every scenario runs. */
export const add = app.task("bench.add", (x: number, y: number) => x + y);

// Runs of `bench.io` in progress in this isolate (the main one or a Web Worker's).
let inFlight = 0;

/**
 * The async I/O task of the `io-*` scenarios: waits `ms` (a `setTimeout`, standing for a
 * network call) and returns how many `bench.io` runs were in progress in its isolate when it
 * started, itself included.
 */
export const io = app.task("bench.io", async (ms: number) => {
  const seen = ++inFlight;
  try {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return seen;
  } finally {
    inFlight--;
  }
});

export default app;
