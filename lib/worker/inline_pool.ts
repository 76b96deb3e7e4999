/**
 * The `inline` pool: tasks run on the main isolate, as many at once as `capacity`. Best for
 * I/O-bound async tasks; CPU-bound tasks belong on the `workers` pool.
 *
 * Time limits and terminates only reach tasks that yield: the run ends at once (outcome
 * `timeout` or `lost`) and the task's signal aborts, but its code runs on until it returns,
 * and a synchronous busy loop cannot be interrupted at all in the main isolate.
 *
 * While the pool runs it listens for `unhandledrejection` and `error` on `globalThis`, so that
 * an uncaught async throw inside a task fails that task instead of the process. The task is
 * found through the async context of the rejected promise; when that is lost (a throw in a
 * timer callback) and exactly one task runs, it is that one; otherwise the error is logged.
 *
 * @module
 */

import type { App } from "../app.ts";
import { SoftTimeLimitExceeded, TaskRevokedError, WorkerLostError } from "../errors.ts";
import { currentTask, execute } from "./execute.ts";
import { type Outcome, type RunRequest, toErrorShape } from "./outcome.ts";
import type { Pool, PoolRunOptions } from "./pool.ts";
import { type LongTimeout, setLongTimeout } from "../_timer.ts";

// One run() call, from the queue to its outcome.
interface InlineRun {
  readonly pool: InlinePool;
  readonly request: RunRequest;
  readonly options: PoolRunOptions;
  readonly resolve: (o: Outcome) => void;
  readonly controller: AbortController;
  started: number;
  settled: boolean;
  timers: LongTimeout[];
  onAbort: (() => void) | undefined;
}

// The run of each running task's signal: the task context that execute() carries through the
// task's awaits, timers and promises (`currentTask`) holds that signal, so an uncaught error
// finds its run without a second AsyncLocalStorage layer per task.
const runsBySignal = new WeakMap<AbortSignal, InlineRun>();
// Pools that are listening for uncaught errors (one listener for all of them).
const listening = new Set<InlinePool>();

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
  #running = new Set<InlineRun>();
  #queue: InlineRun[] = [];
  #closed = false;

  /**
   * Creates the pool.
   *
   * @param app The app whose tasks run here.
   * @param capacity How many tasks at once.
   * @throws {RangeError} When capacity is not a positive integer.
   */
  constructor(app: App, capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot create the pool: capacity must be a positive integer, got ${capacity}`,
      );
    }
    this.#app = app;
    this.#capacity = capacity;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Runs waiting for a free place. */
  get waiting(): number {
    return this.#queue.length;
  }

  start(): Promise<void> {
    this.#listen();
    return Promise.resolve();
  }

  run(request: RunRequest, options: PoolRunOptions = {}): Promise<Outcome> {
    const { promise, resolve } = Promise.withResolvers<Outcome>();
    const run: InlineRun = {
      pool: this,
      request,
      options,
      resolve,
      controller: new AbortController(),
      started: 0,
      settled: false,
      timers: [],
      onAbort: undefined,
    };
    if (this.#closed) {
      this.#settle(run, {
        kind: "lost",
        error: toErrorShape(new WorkerLostError("The pool is closed")),
      });
      return promise;
    }
    this.#listen();
    const { signal } = options;
    if (signal?.aborted) {
      this.#abort(run);
      return promise;
    }
    if (signal) {
      run.onAbort = () => this.#abort(run);
      signal.addEventListener("abort", run.onAbort, { once: true });
    }
    if (this.#queue.length === 0 && this.#running.size < this.#capacity) this.#start(run);
    else this.#queue.push(run);
    return promise;
  }

  // Records the run as running, then starts its code; nothing is awaited in between.
  #start(run: InlineRun): void {
    this.#running.add(run);
    run.started = performance.now();
    const { softLimit, hardLimit, onState } = run.options;
    if (softLimit) {
      run.timers.push(setLongTimeout(
        () => run.controller.abort(new SoftTimeLimitExceeded(softLimit)),
        softLimit * 1000,
      ));
    }
    if (hardLimit) {
      run.timers.push(setLongTimeout(() => {
        run.controller.abort(new SoftTimeLimitExceeded(hardLimit));
        this.#settle(run, { kind: "timeout", seconds: hardLimit });
      }, hardLimit * 1000));
    }
    runsBySignal.set(run.controller.signal, run);
    run.options.onStart?.();
    execute(
      this.#app,
      run.request,
      run.controller.signal,
      onState ?? (() => Promise.resolve()),
    ).then((outcome) => this.#settle(run, outcome));
  }

  // Ends a run once, frees its place and starts the next waiting run.
  #settle(run: InlineRun, outcome: Outcome): void {
    if (run.settled) return;
    run.settled = true;
    for (const t of run.timers) t.clear();
    run.timers = [];
    if (run.onAbort) run.options.signal?.removeEventListener("abort", run.onAbort);
    const wasRunning = this.#running.delete(run);
    run.resolve(outcome);
    if (wasRunning) this.#drain();
  }

  #drain(): void {
    while (this.#queue.length && this.#running.size < this.#capacity && !this.#closed) {
      this.#start(this.#queue.shift()!);
    }
  }

  #abort(run: InlineRun): void {
    if (run.settled) return;
    const reason = run.options.signal?.reason;
    const error = reason instanceof Error && reason.name !== "AbortError"
      ? reason
      : new TaskRevokedError("terminated");
    const i = this.#queue.indexOf(run);
    if (i >= 0) this.#queue.splice(i, 1);
    run.controller.abort(new TaskRevokedError("terminated"));
    this.#settle(run, { kind: "lost", error: toErrorShape(error) });
  }

  // An uncaught error thrown by a task's code: the task fails with it.
  #fail(run: InlineRun, error: unknown): void {
    this.#app.logger.error(
      `Task ${run.request.name}[${run.request.id}] raised an uncaught error: ${error}`,
      { error },
    );
    run.controller.abort(error);
    this.#settle(run, {
      kind: "failure",
      error: toErrorShape(error),
      runtime: (performance.now() - run.started) / 1000,
    });
  }

  #listen(): void {
    if (this.#closed || listening.has(this)) return;
    if (listening.size === 0) {
      globalThis.addEventListener("unhandledrejection", InlinePool.#onRejection);
      globalThis.addEventListener("error", InlinePool.#onError);
    }
    listening.add(this);
  }

  #unlisten(): void {
    if (!listening.delete(this)) return;
    if (listening.size === 0) {
      globalThis.removeEventListener("unhandledrejection", InlinePool.#onRejection);
      globalThis.removeEventListener("error", InlinePool.#onError);
    }
  }

  static #onRejection = (event: PromiseRejectionEvent): void => {
    event.preventDefault();
    InlinePool.#blame(event.reason, "unhandled rejection");
  };

  static #onError = (event: ErrorEvent): void => {
    event.preventDefault();
    InlinePool.#blame(event.error ?? new Error(event.message), "uncaught error");
  };

  // Finds the task an uncaught error belongs to: its async context, else the only one running.
  static #blame(error: unknown, what: string): void {
    const signal = currentTask.getStore()?.signal;
    let run = signal ? runsBySignal.get(signal) : undefined;
    if (!run) {
      const all = [...listening].flatMap((p) => [...p.#running]);
      if (all.length === 1) run = all[0];
    }
    if (run && !run.settled && run.pool.#running.has(run)) {
      run.pool.#fail(run, error);
      return;
    }
    const pool = run?.pool ?? [...listening][0];
    const logger = pool ? pool.#app.logger : undefined;
    const where = run ? ` from task ${run.request.name}[${run.request.id}] after it ended` : "";
    logger?.error(`Caught an ${what}${where}: ${error}`, { error });
  }

  grow(n: number): Promise<void> {
    this.#capacity += n;
    this.#drain();
    return Promise.resolve();
  }

  shrink(n: number): Promise<void> {
    this.#capacity = Math.max(1, this.#capacity - n);
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const error = toErrorShape(new WorkerLostError("The pool was closed"));
    for (const run of this.#queue.splice(0)) this.#settle(run, { kind: "lost", error });
    for (const run of [...this.#running]) {
      run.controller.abort(new TaskRevokedError("terminated"));
      this.#settle(run, { kind: "lost", error });
    }
    this.#unlisten();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
