// The app module the pool tests run in Web Workers (and on the inline pool). Each isolate
// draws one random id when it loads this module, so a task can say which isolate ran it.
import { App } from "@celeriac/celeriac";

export const app = new App({ broker: "memory://pool", backend: "memory://pool" });

const ISOLATE = crypto.randomUUID();

// Sleeps `ms`; an abort ends the sleep early (so no timer outlives a stopped task).
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/** The abort reasons tasks saw on their signal (for the inline pool, which shares this isolate). */
export const aborts: string[] = [];

/** Sleeps `ms` and reports which isolate ran it and when. */
export const where = app.task("pool.where", async (ms: number) => {
  const start = performance.timeOrigin + performance.now();
  await sleep(ms);
  return { isolate: ISOLATE, start, end: performance.timeOrigin + performance.now() };
});

/** Returns `label` after `ms`. */
export const echo = app.task("pool.echo", async function (label: string, ms: number) {
  await sleep(ms, this.signal);
  return label;
});

/** Exits its Web Worker. */
export const exit = app.task("pool.exit", () => {
  Deno.exit(3);
});

/** Closes its Web Worker. */
export const closeSelf = app.task("pool.close_self", () => {
  (globalThis as unknown as { close(): void }).close();
  return new Promise(() => {});
});

/** Never returns; records the reason when its signal aborts. */
export const hang = app.task("pool.hang", function () {
  this.signal.addEventListener("abort", () => aborts.push(this.signal.reason?.name));
  return new Promise(() => {});
});

/** Rejects from a timer callback, outside the task's own promise, then would return "ran". */
export const asyncThrow = app.task("pool.async_throw", async function (message: string) {
  setTimeout(async () => {
    await sleep(1);
    throw new Error(message);
  }, 10);
  await sleep(300, this.signal);
  return "ran";
});

export default app;

/** A run request as the consumer builds it, for tests that drive a pool directly. */
export function runRequest(name: string, args: unknown[], id: string = crypto.randomUUID()) {
  return {
    id,
    name,
    args,
    kwargs: {},
    context: {
      id,
      name,
      retries: 0,
      rootId: id,
      parentId: null,
      group: null,
      groupIndex: null,
      eta: null,
      expires: null,
      headers: {},
      deliveryInfo: { queue: "celery", redelivered: false, deliveryCount: 1, priority: null },
      hostname: "pool-test",
      isEager: false,
      replyTo: null,
    },
  };
}
