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
 * Each Web Worker is also sent up to `lookahead` runs ahead, which wait there for a place: the
 * Web Worker starts the next one without a round trip to the parent, and the runs (and their
 * results) admitted in one turn cross in one message. A run sent ahead is claimed through a
 * shared cell (see {@linkcode RunMessage}), so until it starts the parent can still take it
 * back: when its Web Worker is terminated, recycled or shrunk it goes to another one, a
 * terminate of it leaves the Web Worker alone, and an idle Web Worker takes runs waiting
 * behind a busy one. Hard time limits are timed from the start the Web Worker reports, soft
 * ones by the Web Worker itself.
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
import { setImmediate } from "node:timers";

/**
 * One run sent to a Web Worker. `cell` indexes the slot's shared `Int32Array` of claims: the
 * parent writes `token` there before it posts the run; the Web Worker starts the run only if it
 * swaps `token` for `-token` (`Atomics.compareExchange`), and the parent takes back a run that
 * has not started by swapping `token` for 0. Exactly one of them wins, so a run sent ahead and
 * then moved, cancelled or handed back when its Web Worker dies is never run as well.
 */
export interface RunMessage {
  /** The run's sequence number. */
  seq: number;
  /** Its claim cell. */
  cell: number;
  /** Its claim token (positive). */
  token: number;
  /** What to run. */
  request: RunRequest;
  /** Soft time limit in seconds, timed by the Web Worker from the start. */
  softLimit: number | null;
  /**
   * Report the start at once, before the run can block the isolate (the parent then times its
   * hard limit and calls `onStart`).
   */
  notify: boolean;
}

/** The result of one run. */
export interface DoneMessage {
  /** The run's sequence number. */
  seq: number;
  /** What it produced. */
  outcome: Outcome;
  /** The isolate's memory after the run. */
  heapUsed?: number;
}

/** Messages from the parent to a Web Worker. */
export type ToWorker =
  | {
    type: "init";
    appModule: string;
    brokerUrl: string;
    backendUrl: string;
    claims: SharedArrayBuffer;
    concurrency: number;
    /** Report the isolate's memory with each result (for maxMemoryPerChild). */
    memory: boolean;
  }
  | { type: "run"; runs: RunMessage[] }
  | { type: "ping" };

/** Messages from a Web Worker to the parent. */
export type FromWorker =
  | { type: "ready"; tasks: string[] }
  | { type: "init-error"; error: ErrorShape }
  | { type: "done"; results: DoneMessage[]; started?: number[] }
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
  /**
   * Runs sent ahead to one Web Worker beyond `childConcurrency`: they wait there and start as
   * soon as a place frees, so the Web Worker does not wait for the parent between tasks, and
   * many runs and results cross in one message. A run sent ahead is still taken back (and given
   * to another Web Worker, or cancelled) until it starts; an idle Web Worker takes runs waiting
   * behind a busy one. `0` sends a run only to a free place.
   *
   * Off by default because the consumer acks an early-ack task sent ahead when its Web Worker
   * reports the start (`PoolRunOptions.onStart`), as Celery's prefork pool acks when its child
   * accepts a job, instead of before the run starts: a crash of the worker process just after
   * a start can run that task again. A run that has not started is not acked, so a crash does
   * not lose it, and a warm shutdown hands it back ({@linkcode WorkersPool.handBack}).
   * @default {0}
   */
  lookahead?: number;
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
  /** Claim cell and token while sent to a Web Worker. */
  cell: number;
  token: number;
  settled: boolean;
  timers: LongTimeout[];
  onAbort: (() => void) | undefined;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  /** Runs sent to it and not finished (started or waiting there), in the order sent. */
  running: Map<number, Run>;
  claims: Int32Array;
  freeCells: number[];
  /** Runs to post at the end of this turn. */
  outbox: RunMessage[];
  /** Runs given to it so far (sent ahead ones included), for maxTasksPerChild. */
  given: number;
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
  #lookahead: number;
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
   * @throws {RangeError} When size or childConcurrency is not a positive integer, or lookahead
   *   is negative.
   */
  constructor(options: WorkersPoolOptions) {
    this.#options = options;
    this.#size = options.size ?? navigator.hardwareConcurrency ?? 1;
    this.#childConcurrency = options.childConcurrency ?? 1;
    this.#lookahead = options.lookahead ?? 0;
    for (
      const [name, n, min] of [
        ["size", this.#size, 1],
        ["childConcurrency", this.#childConcurrency, 1],
        ["lookahead", this.#lookahead, 0],
      ] as const
    ) {
      if (!Number.isInteger(n) || n < min) {
        throw new RangeError(
          `Cannot create the pool: ${name} must be an integer >= ${min}, got ${n}`,
        );
      }
    }
    this.#proxy = new ProxyServer(options.broker, options.backend);
  }

  get capacity(): number {
    return this.#size * this.#childConcurrency;
  }

  /** Runs the pool takes beyond `capacity` to send ahead (`lookahead` per Web Worker). */
  get lookahead(): number {
    return this.#size * this.#lookahead;
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
    const places = this.#childConcurrency + this.#lookahead;
    const buffer = new SharedArrayBuffer(places * Int32Array.BYTES_PER_ELEMENT);
    const slot: Slot = {
      worker,
      ready: ready.promise,
      running: new Map(),
      claims: new Int32Array(buffer),
      freeCells: Array.from({ length: places }, (_, i) => places - 1 - i),
      outbox: [],
      given: 0,
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
          // A new Web Worker (grown, respawned) takes runs waiting behind busy ones.
          if (slot.running.size === 0) this.#steal(slot);
          return;
        case "init-error":
          ready.reject(new Error(`The app module failed to load: ${m.error.message}`));
          this.#kill(slot, { name: "WorkerLostError", message: m.error.message, stack: null });
          return;
        case "done":
          for (const seq of m.started ?? []) this.#started(slot, seq);
          for (const r of m.results) this.#finish(slot, r.seq, r.outcome, r.heapUsed);
          this.#afterFinish(slot);
          return;
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
        claims: buffer,
        concurrency: this.#childConcurrency,
        memory: (this.#options.maxMemoryPerChild ?? Infinity) < Infinity,
      } satisfies ToWorker,
    );
    this.#slots.add(slot);
    return slot;
  }

  // Takes a run back from its slot if it has not started there (it then never will).
  #reclaim(run: Run): boolean {
    const slot = run.slot;
    if (!slot) return true;
    if (Atomics.compareExchange(slot.claims, run.cell, run.token, 0) !== run.token) return false;
    this.#unassign(run, slot);
    slot.given--;
    return true;
  }

  #unassign(run: Run, slot: Slot): void {
    slot.running.delete(run.seq);
    slot.freeCells.push(run.cell);
    run.slot = undefined;
    for (const t of run.timers) t.clear();
    run.timers = [];
  }

  // Terminates a slot's Web Worker. Its runs that have not started go back to the front of the
  // queue; the others end `lost` (or with `override` for one of them).
  #kill(slot: Slot, error: ErrorShape, override?: { run: Run; outcome: Outcome }): void {
    if (slot.dead) return;
    slot.dead = true;
    const runs = [...slot.running.values()];
    const back: Run[] = [];
    const lost: Run[] = [];
    for (const run of runs) {
      if (run !== override?.run && !this.#closed && this.#reclaim(run)) back.push(run);
      else lost.push(run);
    }
    slot.worker.terminate();
    this.#slots.delete(slot);
    slot.running.clear();
    this.#queue.unshift(...back);
    for (const run of lost) {
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

  // A run started (one with a hard time limit or an onStart): its clock starts now.
  #started(slot: Slot, seq: number): void {
    const run = slot.running.get(seq);
    if (!run) return;
    run.options.onStart?.();
    const hardLimit = run.options.hardLimit;
    if (!hardLimit) return;
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

  #finish(slot: Slot, seq: number, outcome: Outcome, heapUsed = 0): void {
    const run = slot.running.get(seq);
    if (!run || slot.dead) return;
    this.#unassign(run, slot);
    slot.done++;
    this.#settle(run, outcome);
    const max = this.#options.maxTasksPerChild ?? Infinity;
    if (slot.done >= max) slot.retiring = true;
    if (heapUsed > (this.#options.maxMemoryPerChild ?? Infinity) * 1024 && !slot.retiring) {
      this.#options.logger?.info(
        `Recycling a Web Worker: its heap (${
          Math.round(heapUsed / 1024)
        } KiB) exceeds maxMemoryPerChild`,
      );
      slot.retiring = true;
    }
  }

  // After a batch of results: a retiring slot hands back what has not started and goes once
  // idle; free places take waiting runs, and an idle slot takes runs waiting behind busy ones.
  #afterFinish(slot: Slot): void {
    if (slot.dead) return;
    if (slot.retiring) {
      this.#handBack(slot);
      if (slot.running.size === 0) {
        this.#kill(slot, toErrorShape(new WorkerLostError("recycled")));
        return;
      }
    }
    this.#drain();
    if (slot.running.size === 0 && !slot.retiring) this.#steal(slot);
  }

  // Puts the runs of a slot that have not started back at the front of the queue.
  #handBack(slot: Slot): void {
    const back: Run[] = [];
    for (const run of [...slot.running.values()].reverse()) {
      if (!this.#reclaim(run)) break;
      back.unshift(run);
    }
    this.#queue.unshift(...back);
  }

  // An idle slot takes the newest runs waiting behind a busy slot's running ones.
  #steal(thief: Slot): void {
    for (const victim of this.#slots) {
      if (victim === thief || victim.dead) continue;
      const waiting = victim.running.size - this.#childConcurrency;
      if (waiting <= 0) continue;
      const runs = [...victim.running.values()].slice(-Math.ceil(waiting / 2)).reverse();
      const moved: Run[] = [];
      for (const run of runs) {
        if (!this.#reclaim(run)) break;
        moved.unshift(run);
      }
      for (const run of moved) {
        if (this.#room(thief)) this.#dispatch(run, thief);
        else this.#queue.unshift(run);
      }
      this.#drain();
      return;
    }
  }

  #room(s: Slot): boolean {
    const max = this.#options.maxTasksPerChild ?? Infinity;
    return s.started && !s.dead && !s.retiring && s.given < max &&
      s.running.size < this.#childConcurrency + this.#lookahead;
  }

  // The least busy Web Worker with room, or undefined. Synchronous on purpose.
  #pick(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (!this.#room(s)) continue;
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

  // Records the run on the slot and claims a cell for it, then queues it for the slot's next
  // message; nothing is awaited in between.
  #dispatch(run: Run, slot: Slot): void {
    run.slot = slot;
    run.cell = slot.freeCells.pop()!;
    run.token = (run.seq % 0x7ffffffe) + 1;
    Atomics.store(slot.claims, run.cell, run.token);
    slot.running.set(run.seq, run);
    slot.given++;
    const { softLimit, hardLimit } = run.options;
    // One message per slot per turn of the event loop: the runs admitted meanwhile travel
    // together.
    if (slot.outbox.length === 0) setImmediate(() => this.#post(slot));
    slot.outbox.push({
      seq: run.seq,
      cell: run.cell,
      token: run.token,
      request: run.request,
      softLimit: softLimit || null,
      notify: !!hardLimit || !!run.options.onStart,
    });
  }

  #post(slot: Slot): void {
    const runs = slot.outbox;
    slot.outbox = [];
    if (slot.dead) return;
    // Runs taken back before the post need not travel (the Web Worker would skip them).
    const live = runs.filter((r) => slot.running.get(r.seq)?.token === r.token);
    if (live.length) slot.worker.postMessage({ type: "run", runs: live } satisfies ToWorker);
  }

  // Stops one run: a waiting or not yet started one is taken back, a running one loses its Web
  // Worker.
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
    if (this.#reclaim(run)) {
      this.#settle(run, { kind: "lost", error });
      this.#drain();
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
      cell: -1,
      token: 0,
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

  /** Ends the runs not started yet (waiting here or sent ahead) with outcome `unstarted`. */
  handBack(): void {
    const back: Run[] = [...this.#queue.splice(0)];
    for (const slot of this.#slots) {
      for (const run of [...slot.running.values()]) if (this.#reclaim(run)) back.push(run);
    }
    for (const run of back) this.#settle(run, { kind: "unstarted" });
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
      this.#handBack(slot);
      if (slot.running.size === 0) this.#kill(slot, toErrorShape(new WorkerLostError("shrunk")));
    }
    this.#drain();
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
