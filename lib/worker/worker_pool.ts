/**
 * The `workers` pool: N Web Workers, each loading the app module and running up to
 * `childConcurrency` tasks at once. A hard time limit terminates the Web Worker and a new one
 * takes its slot; so does a crash, and recycling after `maxTasksPerChild` tasks.
 *
 * @module
 */

import type { Logger } from "../app.ts";
import type { Backend } from "../backends/backend.ts";
import type { Broker } from "../brokers/broker.ts";
import { TaskRevokedError, WorkerLostError } from "../errors.ts";
import { Notifier } from "../_signal.ts";
import type { ErrorShape, Outcome, RunRequest } from "./outcome.ts";
import { toErrorShape } from "./outcome.ts";
import type { Pool, PoolRunOptions } from "./pool.ts";
import { type ProxyRequest, ProxyServer } from "./_proxy.ts";

/** Messages from the parent to a Web Worker. */
export type ToWorker =
  | { type: "init"; appModule: string; brokerUrl: string; backendUrl: string }
  | { type: "run"; request: RunRequest }
  | { type: "abort"; id: string; reason: ErrorShape };

/** Messages from a Web Worker to the parent. */
export type FromWorker =
  | { type: "ready"; tasks: string[] }
  | { type: "init-error"; error: ErrorShape }
  | { type: "done"; id: string; outcome: Outcome; heapUsed?: number }
  | ProxyRequest;

/** Options of {@linkcode WorkersPool}. */
export interface WorkersPoolOptions {
  /** The module that exports the app (default export or `app`). */
  appModule: string | URL;
  /** Number of Web Workers. @default {navigator.hardwareConcurrency} */
  size?: number;
  /** Tasks one Web Worker runs at once. @default {1} */
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

interface Running {
  resolve: (o: Outcome) => void;
  timers: ReturnType<typeof setTimeout>[];
  request: RunRequest;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  running: Map<string, Running>;
  done: number;
  started: boolean;
  retiring: boolean;
  dead: boolean;
}

const WORKER_URL = new URL("../../worker.ts", import.meta.url);

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
  #free = new Notifier();
  #proxy: ProxyServer;
  #closed = false;
  #failures = 0;
  #spawned = 0;

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

  async start(): Promise<void> {
    const slots = [];
    for (let i = 0; i < this.#size; i++) slots.push(this.#spawn());
    await Promise.all(slots.map((s) => s.ready));
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
    };
    // A rejected ready promise that nobody awaits must not crash the process.
    ready.promise.catch(() => {});
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      switch (m.type) {
        case "ready":
          slot.started = true;
          this.#failures = 0;
          ready.resolve();
          this.#free.notify();
          return;
        case "init-error":
          ready.reject(new Error(`The app module failed to load: ${m.error.message}`));
          this.#kill(slot, { name: "WorkerLostError", message: m.error.message, stack: null });
          return;
        case "done":
          return this.#finish(slot, m.id, m.outcome, m.heapUsed);
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

  // Terminates a slot's Web Worker; its running tasks end as `lost` (or `override` for one).
  #kill(slot: Slot, error: ErrorShape, override?: { id: string; outcome: Outcome }): void {
    if (slot.dead) return;
    slot.dead = true;
    slot.worker.terminate();
    this.#slots.delete(slot);
    for (const [id, r] of slot.running) {
      for (const t of r.timers) clearTimeout(t);
      r.resolve(id === override?.id ? override.outcome : { kind: "lost", error });
    }
    slot.running.clear();
    if (!this.#closed && this.#slots.size < this.#size) this.#respawn();
    this.#free.notify();
  }

  #respawn(): void {
    // Back off when Web Workers keep failing to start (a broken app module).
    const wait = Math.min(5000, this.#failures++ * 200);
    const go = () => {
      if (this.#closed || this.#slots.size >= this.#size) return;
      this.#spawn().ready.catch((e) => this.#options.logger?.error(String(e)));
    };
    if (wait === 0) go();
    else setTimeout(go, wait);
  }

  #finish(slot: Slot, id: string, outcome: Outcome, heapUsed = 0): void {
    const r = slot.running.get(id);
    if (!r) return;
    for (const t of r.timers) clearTimeout(t);
    slot.running.delete(id);
    slot.done++;
    r.resolve(outcome);
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
    }
    this.#free.notify();
  }

  async #acquire(): Promise<Slot> {
    while (true) {
      if (this.#closed) throw new WorkerLostError("The pool is closed");
      let best: Slot | undefined;
      for (const s of this.#slots) {
        if (!s.started || s.dead || s.retiring || s.running.size >= this.#childConcurrency) {
          continue;
        }
        if (!best || s.running.size < best.running.size) best = s;
      }
      if (best) return best;
      await this.#free.wait(undefined, 1000);
    }
  }

  async run(request: RunRequest, options: PoolRunOptions = {}): Promise<Outcome> {
    let slot: Slot;
    try {
      slot = await this.#acquire();
    } catch (error) {
      return { kind: "lost", error: toErrorShape(error) };
    }
    const { promise, resolve } = Promise.withResolvers<Outcome>();
    const timers: ReturnType<typeof setTimeout>[] = [];
    if (options.softLimit) {
      const s = options.softLimit;
      timers.push(setTimeout(() => {
        if (slot.dead) return;
        slot.worker.postMessage(
          {
            type: "abort",
            id: request.id,
            reason: {
              name: "SoftTimeLimitExceeded",
              message: `SoftTimeLimitExceeded(${s})`,
              stack: null,
            },
          } satisfies ToWorker,
        );
      }, s * 1000));
    }
    if (options.hardLimit) {
      const h = options.hardLimit;
      timers.push(setTimeout(() => {
        this.#kill(
          slot,
          toErrorShape(
            new WorkerLostError(
              `Web Worker terminated: task ${request.id} hit its hard time limit`,
            ),
          ),
          { id: request.id, outcome: { kind: "timeout", seconds: h } },
        );
      }, h * 1000));
    }
    slot.running.set(request.id, { resolve, timers, request });
    slot.worker.postMessage({ type: "run", request } satisfies ToWorker);
    return await promise;
  }

  terminate(taskId: string): void {
    for (const slot of this.#slots) {
      if (!slot.running.has(taskId)) continue;
      this.#kill(
        slot,
        toErrorShape(new WorkerLostError(`Web Worker terminated to stop task ${taskId}`)),
        {
          id: taskId,
          outcome: {
            kind: "failure",
            error: toErrorShape(new TaskRevokedError("terminated")),
            runtime: 0,
          },
        },
      );
    }
  }

  async grow(n: number): Promise<void> {
    this.#size += n;
    const added = [];
    for (let i = 0; i < n; i++) added.push(this.#spawn());
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
    this.#proxy.close();
    for (const slot of [...this.#slots]) {
      this.#kill(slot, toErrorShape(new WorkerLostError("The pool was closed")));
    }
    this.#free.notify();
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
