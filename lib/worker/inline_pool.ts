/**
 * The `inline` pool: tasks run on the main isolate, as many at once as `capacity`. Best for
 * I/O-bound async tasks. A hard time limit cannot stop a task here: the outcome is reported as
 * `timeout` and the task's signal aborts, but its code runs on until it returns.
 *
 * @module
 */

import type { App } from "../app.ts";
import { SoftTimeLimitExceeded, TaskRevokedError } from "../errors.ts";
import { execute } from "./execute.ts";
import type { Outcome, RunRequest } from "./outcome.ts";
import type { Pool, PoolRunOptions } from "./pool.ts";

/**
 * Runs tasks on the main isolate.
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * import { InlinePool } from "./inline_pool.ts";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * await using pool = new InlinePool(app, 10);
 * console.assert(pool.capacity === 10);
 * await app.close();
 * ```
 */
export class InlinePool implements Pool {
  #capacity: number;
  #app: App;
  #running = new Map<string, AbortController>();

  /**
   * Creates the pool.
   *
   * @param app The app whose tasks run here.
   * @param capacity How many tasks at once.
   */
  constructor(app: App, capacity: number) {
    this.#app = app;
    this.#capacity = capacity;
  }

  get capacity(): number {
    return this.#capacity;
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  async run(request: RunRequest, options: PoolRunOptions = {}): Promise<Outcome> {
    const controller = new AbortController();
    this.#running.set(request.id, controller);
    const timers: ReturnType<typeof setTimeout>[] = [];
    const { promise: hard, resolve: onHard } = Promise.withResolvers<Outcome>();
    if (options.softLimit) {
      const s = options.softLimit;
      timers.push(setTimeout(() => controller.abort(new SoftTimeLimitExceeded(s)), s * 1000));
    }
    if (options.hardLimit) {
      const h = options.hardLimit;
      timers.push(setTimeout(() => {
        controller.abort(new SoftTimeLimitExceeded(h));
        onHard({ kind: "timeout", seconds: h });
      }, h * 1000));
    }
    try {
      return await Promise.race([
        execute(
          this.#app,
          request,
          controller.signal,
          options.onState ?? (() => Promise.resolve()),
        ),
        hard,
      ]);
    } finally {
      for (const t of timers) clearTimeout(t);
      this.#running.delete(request.id);
    }
  }

  terminate(taskId: string): void {
    this.#running.get(taskId)?.abort(new TaskRevokedError("terminated"));
  }

  grow(n: number): Promise<void> {
    this.#capacity += n;
    return Promise.resolve();
  }

  shrink(n: number): Promise<void> {
    this.#capacity = Math.max(1, this.#capacity - n);
    return Promise.resolve();
  }

  close(): Promise<void> {
    for (const c of this.#running.values()) c.abort(new TaskRevokedError("terminated"));
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
