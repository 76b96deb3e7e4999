// Shared helpers for tests: start a Consumer over an app for the duration of a test.
import { type App, Consumer, type ConsumerOptions } from "@celeriac/celeriac";

export const CORE_APP = new URL("./apps/core_app.ts", import.meta.url);

export interface RunningWorker extends AsyncDisposable {
  consumer: Consumer;
  stop(): Promise<void>;
}

/** Starts a worker; `await using` stops it warmly at the end of the test. */
export function startWorker(app: App, options: ConsumerOptions = {}): RunningWorker {
  const controller = new AbortController();
  const consumer = new Consumer(app, {
    appModule: CORE_APP,
    ...options,
    signal: controller.signal,
  });
  const running = consumer.run();
  const stop = async () => {
    controller.abort();
    await running;
  };
  return { consumer, stop, [Symbol.asyncDispose]: stop };
}

/** Runs `fn` with an inline worker (20 at a time) consuming the app's queues, then stops it. */
export async function withWorker<T>(app: App, fn: () => Promise<T>): Promise<T> {
  await using _worker = startWorker(app, { pool: "inline", concurrency: 20 });
  return await fn();
}

/** Waits until `predicate` holds, polling every 20 ms, for at most `ms`. */
export async function eventually(predicate: () => boolean | Promise<boolean>, ms = 10_000) {
  const until = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
