/**
 * The app module of the benchmarks: one no-op task, `bench.add(x, y) -> x + y`, as in the peer
 * harness. Broker and backend come from the environment (`CELERIAC_BROKER_URL`,
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

export default app;
