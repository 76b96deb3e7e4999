/**
 * The `workers` pool: N Web Workers, each loading the app module and running up to
 * `childConcurrency` tasks at once. A hard time limit or a terminate stops the Web Worker and a
 * new one takes its place; so does a crash, an exit (`Deno.exit()`, `self.close()`) and
 * recycling after `maxTasksPerChild` tasks.
 *
 * Each `run()` call is one run with its own sequence number: messages between the parent and a
 * Web Worker carry that number, never the task id (ids are not unique: a client may resend
 * one). The Web Worker is chosen synchronously when `run()` is called and the run is recorded
 * on it before anything is awaited, so two runs never take the same free place.
 *
 * @module
 */

import type { Logger } from "../app.ts";
import type { Backend } from "../backends/backend.ts";
import type { Broker } from "../brokers/broker.ts";
import { TaskRevokedError, WorkerLostError } from "../errors.ts";
import type { ErrorShape, Outcome, RunRequest } from "./outcome.ts";
import { toErrorShape } from "./outcome.ts";
import type { Pool, PoolRunOptions } from "./pool.ts";
import { type ProxyRequest, ProxyServer } from "./_proxy.ts";
import { type LongTimeout, setLongTimeout } from "../_timer.ts";

/** Messages from the parent to a Web Worker. */
export type ToWorker =
  | { type: "init"; appModule: string; brokerUrl: string; backendUrl: string }
  | { type: "run"; seq: number; request: RunRequest }
  | { type: "abort"; seq: number; reason: ErrorShape }
  | { type: "ping" };

/** Messages from a Web Worker to the parent. */
export type FromWorker =
  | { type: "ready"; tasks: string[] }
  | { type: "init-error"; error: ErrorShape }
  | { type: "done"; seq: number; outcome: Outcome; heapUsed?: number }
  | { type: "pong" }
  | { type: "exiting"; reason: string }
  | ProxyRequest;

/** Options of {@linkcode WorkersPool}. */
export interface WorkersPoolOptions {
  /** The module that exports the app (default export or `app`). */
  appModule: string | URL;
  /** Number of Web Workers. @default {navigator.hardwareConcurrency} */
  size?: number;
  /**
   * Tasks one Web Worker runs at once. With more than 1, a hard time limit, a terminate or a
   * crash of one task also ends the tasks that share its Web Worker (outcome `lost`).
   * @default {1}
   */
  childConcurrency?: number;
  /** Recycle a Web Worker after this many tasks. @default {Infinity} */
  maxTasksPerChild?: number;
  /**
   * Recycle a Web Worker after a task once its memory (`heapUsed + external` of its isolate,
   * reported with each result) exceeds this many KiB. @default {Infinity}
   */
  maxMemoryPerChild?: number;
  /** The parent's broker, for calls tasks make. */
  broker: Broker;
  /** The parent's backend, for calls tasks make. */
  backend: Backend;
  /** Where to log. */
  logger?: Logger;
}

// One run() call, from the queue to its outcome.
interface Run {
  readonly seq: number;
  readonly request: RunRequest;
  readonly options: PoolRunOptions;
  readonly resolve: (o: Outcome) => void;
  slot: Slot | undefined;
  settled: boolean;
  timers: LongTimeout[];
  onAbort: (() => void) | undefined;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  running: Map<number, Run>;
  done: number;
  started: boolean;
  retiring: boolean;
  dead: boolean;
  lastSeen: number;
}

const WORKER_URL = new URL("../../worker.ts", import.meta.url);

// The parent pings every Web Worker this often. An idle one that stays silent for
// HEARTBEAT_MISSES pings is gone (it exited in a way that sent no message) and is replaced.
// A busy one may be silent because a task blocks its event loop: that is not a death.
const HEARTBEAT_MS = 5000;
const HEARTBEAT_MISSES = 3;

/**
 * A pool of Web Workers.
 *
 * @example
 * ```ts ignore
 * import { WorkersPool } from "./worker_pool.ts";
 * const pool = new WorkersPool({ appModule: new URL("./tasks.ts", import.meta.url), broker, backend });
 * await pool.start();
 * ```
 */
export class WorkersPool implements Pool {
  #options: WorkersPoolOptions;
  #size: number;
  #childConcurrency: number;
  #slots = new Set<Slot>();
  #queue: Run[] = [];
  #proxy: ProxyServer;
  #closed = false;
  #failures = 0;
  #spawned = 0;
  #seq = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #respawnTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Creates the pool; `start()` spawns the Web Workers.
   *
   * @param options Options.
   * @throws {RangeError} When size or childConcurrency is not a positive integer.
   */
  constructor(options: WorkersPoolOptions) {
    this.#options = options;
    this.#size = options.size ?? navigator.hardwareConcurrency ?? 1;
    this.#childConcurrency = options.childConcurrency ?? 1;
    for (const [name, n] of [["size", this.#size], ["childConcurrency", this.#childConcurrency]]) {
      if (!Number.isInteger(n) || (n as number) < 1) {
        throw new RangeError(
          `Cannot create the pool: ${name} must be a positive integer, got ${n}`,
        );
      }
    }
    this.#proxy = new ProxyServer(options.broker, options.backend);
  }

  get capacity(): number {
    return this.#size * this.#childConcurrency;
  }

  /** The live Web Workers. */
  get workers(): number {
    return this.#slots.size;
  }

  /** Web Workers started since the pool was created (recycled and respawned ones included). */
  get spawned(): number {
    return this.#spawned;
  }

  /** Runs waiting for a free place. */
  get waiting(): number {
    return this.#queue.length;
  }

  async start(): Promise<void> {
    const slots = [];
    for (let i = this.#slots.size; i < this.#size; i++) slots.push(this.#spawn());
    this.#startHeartbeat();
    await Promise.all(slots.map((s) => s.ready));
  }

  #startHeartbeat(): void {
    if (this.#heartbeat !== undefined || this.#closed) return;
    this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MS);
    Deno.unrefTimer(this.#heartbeat);
  }

  #beat(): void {
    const now = Date.now();
    for (const slot of [...this.#slots]) {
      if (!slot.started || slot.dead) continue;
      if (now - slot.lastSeen > HEARTBEAT_MS * HEARTBEAT_MISSES && slot.running.size === 0) {
        this.#options.logger?.warn("A Web Worker stopped answering; replacing it");
        this.#kill(slot, toErrorShape(new WorkerLostError("The Web Worker stopped answering")));
        continue;
      }
      slot.worker.postMessage({ type: "ping" } satisfies ToWorker);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL, { type: "module" });
    this.#spawned++;
    const ready = Promise.withResolvers<void>();
    const slot: Slot = {
      worker,
      ready: ready.promise,
      running: new Map(),
      done: 0,
      started: false,
      retiring: false,
      dead: false,
      lastSeen: Date.now(),
    };
    // A rejected ready promise that nobody awaits must not crash the process.
    ready.promise.catch(() => {});
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      // A Web Worker being terminated may still say "exiting" (its unload handler runs).
      if (slot.dead) return;
      slot.lastSeen = Date.now();
      switch (m.type) {
        case "ready":
          slot.started = true;
          this.#failures = 0;
          ready.resolve();
          this.#drain();
          return;
        case "init-error":
          ready.reject(new Error(`The app module failed to load: ${m.error.message}`));
          this.#kill(slot, { name: "WorkerLostError", message: m.error.message, stack: null });
          return;
        case "done":
          return this.#finish(slot, m.seq, m.outcome, m.heapUsed);
        case "pong":
          return;
        case "exiting": {
          const message = `The Web Worker exited: ${m.reason}`;
          this.#options.logger?.error(message);
          if (!slot.started) ready.reject(new Error(message));
          this.#kill(slot, toErrorShape(new WorkerLostError(message)));
          return;
        }
        case "call":
        case "cancel":
          this.#proxy.handle(m, (r) => {
            if (!slot.dead) worker.postMessage(r);
          });
          return;
      }
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      const message = `Web Worker crashed: ${e.message}`;
      this.#options.logger?.error(message);
      if (!slot.started) ready.reject(new Error(message));
      this.#kill(slot, toErrorShape(new WorkerLostError(message)));
    };
    worker.onmessageerror = () => {
      this.#kill(slot, toErrorShape(new WorkerLostError("Web Worker sent an unreadable message")));
    };
    worker.postMessage(
      {
        type: "init",
        appModule: String(this.#options.appModule),
        brokerUrl: this.#options.broker.url,
        backendUrl: this.#options.backend.url,
      } satisfies ToWorker,
    );
    this.#slots.add(slot);
    return slot;
  }

  // Terminates a slot's Web Worker; its runs end `lost` (or with `override` for one of them).
  #kill(slot: Slot, error: ErrorShape, override?: { run: Run; outcome: Outcome }): void {
    if (slot.dead) return;
    slot.dead = true;
    slot.worker.terminate();
    this.#slots.delete(slot);
    const runs = [...slot.running.values()];
    slot.running.clear();
    for (const run of runs) {
      this.#settle(run, run === override?.run ? override.outcome : { kind: "lost", error });
    }
    if (!this.#closed && this.#slots.size < this.#size) this.#respawn();
    this.#drain();
  }

  #respawn(): void {
    // Back off when Web Workers keep failing to start (a broken app module).
    const wait = Math.min(5000, this.#failures++ * 200);
    const go = () => {
      this.#respawnTimer = undefined;
      while (!this.#closed && this.#slots.size < this.#size) {
        this.#spawn().ready.catch((e) => this.#options.logger?.error(String(e)));
      }
    };
    if (wait === 0) go();
    else if (this.#respawnTimer === undefined) this.#respawnTimer = setTimeout(go, wait);
  }

  // Ends a run once: clears its timers and abort listener and resolves its promise.
  #settle(run: Run, outcome: Outcome): void {
    if (run.settled) return;
    run.settled = true;
    for (const t of run.timers) t.clear();
    run.timers = [];
    if (run.onAbort) run.options.signal?.removeEventListener("abort", run.onAbort);
    run.resolve(outcome);
  }

  #finish(slot: Slot, seq: number, outcome: Outcome, heapUsed = 0): void {
    const run = slot.running.get(seq);
    if (!run) return;
    slot.running.delete(seq);
    slot.done++;
    this.#settle(run, outcome);
    const max = this.#options.maxTasksPerChild ?? Infinity;
    if (slot.done >= max) slot.retiring = true;
    if (heapUsed > (this.#options.maxMemoryPerChild ?? Infinity) * 1024) {
      this.#options.logger?.info(
        `Recycling a Web Worker: its heap (${
          Math.round(heapUsed / 1024)
        } KiB) exceeds maxMemoryPerChild`,
      );
      slot.retiring = true;
    }
    if (slot.retiring && slot.running.size === 0) {
      this.#kill(slot, toErrorShape(new WorkerLostError("recycled")));
      return;
    }
    this.#drain();
  }

  // The least busy Web Worker with a free place, or undefined. Synchronous on purpose.
  #pick(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (!s.started || s.dead || s.retiring || s.running.size >= this.#childConcurrency) {
        continue;
      }
      if (!best || s.running.size < best.running.size) best = s;
    }
    return best;
  }

  // Gives free places to waiting runs, oldest first.
  #drain(): void {
    while (this.#queue.length) {
      const slot = this.#pick();
      if (!slot) return;
      this.#dispatch(this.#queue.shift()!, slot);
    }
  }

  // Records the run on the slot, then posts it; nothing is awaited in between.
  #dispatch(run: Run, slot: Slot): void {
    run.slot = slot;
    slot.running.set(run.seq, run);
    const { softLimit, hardLimit } = run.options;
    if (softLimit) {
      run.timers.push(setLongTimeout(() => {
        if (slot.dead || !slot.running.has(run.seq)) return;
        slot.worker.postMessage(
          {
            type: "abort",
            seq: run.seq,
            reason: {
              name: "SoftTimeLimitExceeded",
              message: `SoftTimeLimitExceeded(${softLimit})`,
              stack: null,
            },
          } satisfies ToWorker,
        );
      }, softLimit * 1000));
    }
    if (hardLimit) {
      run.timers.push(setLongTimeout(() => {
        this.#kill(
          slot,
          toErrorShape(
            new WorkerLostError(
              `Web Worker terminated: task ${run.request.id} hit its hard time limit`,
            ),
          ),
          { run, outcome: { kind: "timeout", seconds: hardLimit } },
        );
      }, hardLimit * 1000));
    }
    slot.worker.postMessage({ type: "run", seq: run.seq, request: run.request } satisfies ToWorker);
  }

  // Stops one run: a waiting one leaves the queue, a running one loses its Web Worker.
  #abort(run: Run): void {
    if (run.settled) return;
    const reason = run.options.signal?.reason;
    const error = toErrorShape(
      reason instanceof Error && reason.name !== "AbortError"
        ? reason
        : new TaskRevokedError("terminated"),
    );
    const slot = run.slot;
    if (!slot) {
      const i = this.#queue.indexOf(run);
      if (i >= 0) this.#queue.splice(i, 1);
      this.#settle(run, { kind: "lost", error });
      return;
    }
    this.#kill(
      slot,
      toErrorShape(
        new WorkerLostError(`Web Worker terminated to stop task ${run.request.id}`),
      ),
      { run, outcome: { kind: "lost", error } },
    );
  }

  run(request: RunRequest, options: PoolRunOptions = {}): Promise<Outcome> {
    const { promise, resolve } = Promise.withResolvers<Outcome>();
    const run: Run = {
      seq: ++this.#seq,
      request,
      options,
      resolve,
      slot: undefined,
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
    const { signal } = options;
    if (signal?.aborted) {
      this.#abort(run);
      return promise;
    }
    if (signal) {
      run.onAbort = () => this.#abort(run);
      signal.addEventListener("abort", run.onAbort, { once: true });
    }
    const slot = this.#queue.length === 0 ? this.#pick() : undefined;
    if (slot) this.#dispatch(run, slot);
    else this.#queue.push(run);
    return promise;
  }

  async grow(n: number): Promise<void> {
    this.#size += n;
    const added = [];
    for (let i = 0; i < n && !this.#closed; i++) added.push(this.#spawn());
    await Promise.all(added.map((s) => s.ready));
  }

  shrink(n: number): Promise<void> {
    this.#size = Math.max(1, this.#size - n);
    const extra = [...this.#slots].sort((a, b) => a.running.size - b.running.size)
      .slice(0, Math.max(0, this.#slots.size - this.#size));
    for (const slot of extra) {
      slot.retiring = true;
      if (slot.running.size === 0) this.#kill(slot, toErrorShape(new WorkerLostError("shrunk")));
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#respawnTimer);
    this.#proxy.close();
    const error = toErrorShape(new WorkerLostError("The pool was closed"));
    for (const slot of [...this.#slots]) this.#kill(slot, error);
    for (const run of this.#queue.splice(0)) this.#settle(run, { kind: "lost", error });
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
