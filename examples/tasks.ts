// The demo's app module: what a user's `tasks.ts` looks like. The worker imports it (in every
// Web Worker too), so it only defines the app and its tasks.
import { App } from "@celeriac/celeriac";

export const app = new App();

/** Adds two numbers. */
export const add = app.task("demo.add", (x: number, y: number) => x + y);

/** A CPU-bound task: runs on a Web Worker, so it does not block the others. */
export const fib = app.task("demo.fib", (n: number): number => {
  const go = (k: number): number => k < 2 ? k : go(k - 1) + go(k - 2);
  return go(n);
});

/** An I/O-like task that takes a while and reports progress. */
export const slow = app.task("demo.slow", async function (ms: number) {
  await this.updateState("PROGRESS", { sleeping: ms });
  await new Promise((r) => setTimeout(r, ms));
  return `slept ${ms} ms on ${this.hostname}`;
});

export default app;
