/**
 * The Consumer: the worker's main loop. Deliveries come in as an async iterator; each one is
 * decoded, checked (unknown, revoked, expired, not yet due), run on the pool, its result
 * stored, its message acked, and its follow-ups (callbacks, chain, chord) sent.
 *
 * @module
 */

import { type App, machineName, makeMeta, shapeToInfo } from "../app.ts";
import type { Backend, ChordPart } from "../backends/backend.ts";
import type { Broker, Delivery } from "../brokers/broker.ts";
import { applySignature, isSignatureLike, leafTasks } from "../canvas.ts";
import {
  ChordError,
  NotRegistered,
  TaskRevokedError,
  TimeLimitExceeded,
  WorkerLostError,
} from "../errors.ts";
import { errorToInfo } from "../protocol/exceptions.ts";
import {
  decodeTask,
  type Message,
  type SignatureDict,
  type TaskRequest,
  toIso,
} from "../protocol/message.ts";
import type { State } from "../protocol/states.ts";
import { AppEvent, type AppEventDetails, type AppEventType } from "../signals.ts";
import type { RateLimit } from "../task.ts";
import { aborted, delay, Notifier } from "../_signal.ts";
import { InlinePool } from "./inline_pool.ts";
import type { Outcome, RunRequest } from "./outcome.ts";
import type { Pool } from "./pool.ts";
import { createRateLimiter, MemoryRateLimiter, parseRate, type RateLimiter } from "./rate_limit.ts";
import { WorkersPool } from "./worker_pool.ts";
import { ControlNode, type HeldRequest } from "./control.ts";
import { RevokedSet } from "./revoked.ts";

/** Options of {@linkcode Consumer}. */
export interface ConsumerOptions {
  /** Queues to consume. @default {[app.conf.defaultQueue]} */
  queues?: string[];
  /** `workers` (Web Workers) or `inline` (main isolate). @default {"workers"} */
  pool?: "workers" | "inline";
  /**
   * Web Workers (`workers`) or tasks at once (`inline`).
   * @default {navigator.hardwareConcurrency for workers, 100 for inline}
   */
  concurrency?: number;
  /** Tasks one Web Worker runs at once. @default {1} */
  childConcurrency?: number;
  /**
   * Messages reserved per task slot; `0` means unlimited (as Celery).
   * @default {4}
   */
  prefetchMultiplier?: number;
  /** The module exporting the app; required by the `workers` pool. */
  appModule?: string | URL;
  /** This worker's node name. @default {`celeriac@${hostname}`} */
  hostname?: string;
  /** Hard time limit for every task, in seconds. */
  timeLimit?: number;
  /** Soft time limit for every task, in seconds. */
  softTimeLimit?: number;
  /** Recycle a Web Worker after this many tasks. */
  maxTasksPerChild?: number;
  /**
   * Recycle a Web Worker after a task once its isolate's memory (JavaScript heap plus
   * ArrayBuffers) exceeds this many KiB (Celery `--max-memory-per-child`, which measures the
   * child's RSS; Web Workers share the process's RSS, so celeriac measures the isolate).
   */
  maxMemoryPerChild?: number;
  /**
   * Grow the pool up to `max` while tasks wait for a slot, and shrink it back towards `min`
   * after `autoscaleKeepaliveMs` without that load (Celery `--autoscale max,min`). Sizes count
   * Web Workers (`workers`) or tasks (`inline`); the pool starts at `min`.
   */
  autoscale?: { max: number; min: number };
  /**
   * How long the pool stays grown after the load is gone.
   * @default {30_000}
   */
  autoscaleKeepaliveMs?: number;
  /**
   * The limiter of tasks' `globalRateLimit`.
   * @default {the broker's: Redis or Deno KV, shared by the process on memory://}
   */
  rateLimiter?: RateLimiter;
  /**
   * A rate-limited task waits in the worker at most this long; a later slot sends it back to
   * the broker (`schedule`) until then, so it does not hold a prefetch slot.
   * @default {2000}
   */
  rateLimitHoldMs?: number;
  /**
   * ETAs further than this many ms away go back to the broker (`schedule`) instead of waiting
   * in memory.
   * @default {1000}
   */
  etaHoldMs?: number;
  /** Warm shutdown: stop taking messages, finish running tasks, requeue the rest. */
  signal?: AbortSignal;
  /**
   * Send task events (`-E`); worker events (online, heartbeat, offline) are always sent.
   * @default {false}
   */
  taskEvents?: boolean;
  /**
   * Seconds between `worker-heartbeat` events; `0` turns them off (`--without-heartbeat`).
   * @default {2}
   */
  heartbeatInterval?: number;
  /**
   * At start-up, wait this many ms for other workers' revoked ids (mingle); `0` skips it.
   * The CLI uses 1000 (as Celery) unless `--without-mingle`.
   * @default {0}
   */
  mingleTimeout?: number;
  /** A JSON file that keeps revoked ids across restarts (`--statedb`). */
  statedb?: string;
}

/**
 * Runs a worker over an app's broker.
 *
 * @example
 * ```ts
 * import { App, Consumer } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://doc-consumer", backend: "memory://doc-consumer" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const stop = new AbortController();
 * const worker = new Consumer(app, { pool: "inline", signal: stop.signal });
 * const running = worker.run();
 * console.assert((await (await add.delay(2, 2)).get({ timeout: 5000 })) === 4);
 * stop.abort();
 * await running;
 * await app.close();
 * ```
 */
export class Consumer {
  /** The app. */
  readonly app: App;
  /** This worker's node name. */
  readonly hostname: string;
  /** Queues consumed. */
  readonly queues: string[];
  #options: ConsumerOptions;
  #pool: Pool | undefined;
  #broker!: Broker;
  #backend!: Backend;
  #stop = new AbortController();
  #cold = new AbortController();
  #reserved = 0;
  #active = 0;
  #slotFreed = new Notifier();
  #inflight = new Set<Promise<void>>();
  /** Revoked task ids (kept 3 hours, at most 50,000). */
  readonly revokedSet: RevokedSet = new RevokedSet();
  #held = new Map<Delivery, HeldRequest>();
  #control: ControlNode | undefined;
  #round: AbortController | undefined;
  #terminated = new Set<string>();
  #running = new Map<string, TaskRequest>();
  #processed = 0;
  #ran: Promise<void> | undefined;
  #localLimiter = new MemoryRateLimiter();
  #globalLimiter: Promise<RateLimiter> | undefined;
  #rates = new Map<string, number>();
  #poolSize = 0;
  #childConcurrency = 1;
  #growing = false;
  #lastBusy = 0;

  /**
   * Creates the worker; `run()` starts it.
   *
   * @param app The app whose tasks it runs.
   * @param options Options.
   */
  constructor(app: App, options: ConsumerOptions = {}) {
    this.app = app;
    this.#options = options;
    this.hostname = options.hostname ?? `celeriac@${machineName()}`;
    this.queues = options.queues?.length ? [...options.queues] : [app.conf.defaultQueue];
    if ((options.pool ?? "workers") === "workers" && !options.appModule) {
      throw new TypeError("Cannot start the workers pool: appModule is required");
    }
    if (options.signal) {
      const signal = options.signal;
      if (signal.aborted) this.#stop.abort(signal.reason);
      else signal.addEventListener("abort", () => this.#stop.abort(signal.reason), { once: true });
    }
  }

  /** Tasks finished since start. */
  get processed(): number {
    return this.#processed;
  }

  /** Tasks running now. */
  get active(): number {
    return this.#active;
  }

  /** Ids revoked on this worker. */
  get revoked(): string[] {
    return this.revokedSet.ids();
  }

  /** The pool, once started. */
  get pool(): Pool | undefined {
    return this.#pool;
  }

  /** `workers` or `inline`. */
  get poolKind(): string {
    return this.#options.pool ?? "workers";
  }

  /** Messages reserved at most (`0`: unlimited). */
  get prefetchCount(): number {
    const multiplier = this.#options.prefetchMultiplier ?? 4;
    return multiplier === 0 ? 0 : (this.#pool?.capacity ?? 0) * multiplier;
  }

  /** The remote control node, while running. */
  get control(): ControlNode | undefined {
    return this.#control;
  }

  /**
   * Starts consuming a queue too (remote control `add_consumer`).
   *
   * @param queue The queue.
   */
  addQueue(queue: string): void {
    if (typeof queue !== "string" || queue === "") {
      throw new TypeError(
        `Cannot add queue ${JSON.stringify(queue)}: it must be a non-empty string`,
      );
    }
    if (this.queues.includes(queue)) return;
    this.queues.push(queue);
    this.#round?.abort();
  }

  /**
   * Stops consuming a queue (remote control `cancel_consumer`); messages already taken still
   * run.
   *
   * @param queue The queue.
   */
  cancelQueue(queue: string): void {
    const i = this.queues.indexOf(queue);
    if (i < 0) return;
    this.queues.splice(i, 1);
    this.#round?.abort();
  }

  /**
   * The tasks this worker holds: running, waiting for a slot, or waiting for their ETA.
   *
   * @returns A snapshot.
   */
  requests(): HeldRequest[] {
    return [...this.#held.values()].map((r) => ({ ...r }));
  }

  /**
   * Revokes tasks here: they will not start; with `terminate`, running ones are stopped
   * (their state becomes REVOKED).
   *
   * @param ids Task ids.
   * @param options Terminate or not.
   * @returns The ids that were running and are being terminated.
   */
  revoke(ids: string[], options: { terminate?: boolean; signal?: string } = {}): string[] {
    const terminated: string[] = [];
    for (const id of ids) {
      this.revokedSet.add(id);
      if (options.terminate && this.#running.has(id)) {
        this.#terminated.add(id);
        this.#pool?.terminate(id);
        terminated.push(id);
      }
    }
    if (ids.length) this.app.logger.info(`Tasks flagged as revoked: ${ids.join(", ")}`);
    return terminated;
  }

  /** Results that could not be stored (the backend gave up); each is logged as an ERROR. */
  storeFailures = 0;

  /** Web Workers (`workers`) or task slots (`inline`) in the pool now. */
  get poolSize(): number {
    return this.#poolSize;
  }

  /**
   * Changes the per-worker rate limit of a task type at run time (Celery's `rate_limit`
   * control command); `0`, `""` or `null` removes it, `undefined` restores the task's own.
   *
   * @param name The task name.
   * @param rate `"10/s"`, `"100/m"`, `"1/h"`, or tasks per second.
   * @throws {TypeError} When the rate cannot be read.
   */
  setRateLimit(name: string, rate: RateLimit | null | undefined): void {
    if (rate === undefined) this.#rates.delete(name);
    else this.#rates.set(name, parseRate(rate));
  }

  /**
   * Runs until warm shutdown (the `signal`) and the drain finish.
   *
   * @returns When stopped.
   */
  run(): Promise<void> {
    return this.#ran ??= this.#run();
  }

  async #run(): Promise<void> {
    const app = this.app;
    // Connecting retries as the App's brokerConnection* options say; a stop signal (SIGTERM)
    // while connecting ends the run at once.
    try {
      this.#broker = await app.getBroker({ signal: this.#stop.signal });
      this.#backend = await app.getBackend({ signal: this.#stop.signal });
    } catch (error) {
      if (this.#stop.signal.aborted) {
        app.logger.info(`${this.hostname} stopped while connecting`);
        return;
      }
      throw error;
    }
    const o = this.#options;
    const kind = o.pool ?? "workers";
    const concurrency = o.autoscale?.min ??
      o.concurrency ?? (kind === "workers" ? navigator.hardwareConcurrency : 100);
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `Cannot set concurrency: it must be a positive integer, got ${concurrency}`,
      );
    }
    if (
      o.autoscale &&
      (!Number.isInteger(o.autoscale.max) || o.autoscale.max < o.autoscale.min)
    ) {
      throw new RangeError(
        `Cannot autoscale: max must be an integer >= min, got ${o.autoscale.max},${o.autoscale.min}`,
      );
    }
    this.#poolSize = concurrency;
    this.#childConcurrency = kind === "workers" ? o.childConcurrency ?? 1 : 1;
    this.#pool = kind === "workers"
      ? new WorkersPool({
        appModule: o.appModule!,
        size: concurrency,
        childConcurrency: o.childConcurrency ?? 1,
        maxTasksPerChild: o.maxTasksPerChild ?? Infinity,
        maxMemoryPerChild: o.maxMemoryPerChild ?? Infinity,
        broker: this.#broker,
        backend: this.#backend,
        logger: app.logger,
      })
      : new InlinePool(app, concurrency);
    try {
      await this.#pool.start();
    } catch (error) {
      await this.#pool.close();
      throw error;
    }
    const controlOptions: ConstructorParameters<typeof ControlNode>[2] = {
      taskEvents: o.taskEvents ?? false,
      heartbeatInterval: o.heartbeatInterval ?? 2,
      mingleTimeout: o.mingleTimeout ?? 0,
    };
    if (o.statedb) controlOptions.statedb = o.statedb;
    const control = this.#control = new ControlNode(this, this.#broker, controlOptions);
    try {
      await control.start();
    } catch (error) {
      await control.close().catch(() => {});
      await this.#pool.close();
      throw error;
    }
    const multiplier = o.prefetchMultiplier ?? 4;
    if (multiplier === 0) {
      app.logger.warn("prefetchMultiplier 0 means unlimited prefetch: this worker may hoard tasks");
    }
    // Everything is declared before `ready`: a refusal is the run's error, not a later exit.
    try {
      await this.#broker.declare?.([...this.queues]);
    } catch (error) {
      await control.close().catch(() => {});
      await this.#pool.close();
      throw error;
    }
    app.logger.info(`${this.hostname} ready`, {
      queues: this.queues,
      pool: kind,
      concurrency: this.#pool.capacity,
    });
    app.dispatchEvent(new AppEvent("workerReady", { hostname: this.hostname }));
    const scaler = o.autoscale ? this.#autoscaler(o.autoscale.min) : undefined;
    try {
      const prefetch = () => multiplier === 0 ? 0 : this.#pool!.capacity * multiplier;
      // add_consumer/cancel_consumer end a round; the next one consumes the new queue list.
      while (!this.#stop.signal.aborted) {
        const round = this.#round = new AbortController();
        if (this.queues.length === 0) {
          const idle = aborted(AbortSignal.any([this.#stop.signal, round.signal]));
          await idle.promise;
          idle.dispose();
          continue;
        }
        const signal = AbortSignal.any([this.#stop.signal, round.signal]);
        for await (
          const delivery of this.#broker.consume([...this.queues], {
            prefetch: prefetch(),
            signal,
          })
        ) {
          this.#reserved++;
          const p = this.#handle(delivery).catch((error) => {
            app.logger.error(`Internal error handling a message: ${error}`, { error });
          }).finally(() => {
            this.#reserved--;
            this.#held.delete(delivery);
            this.#inflight.delete(p);
            this.#slotFreed.notify();
          });
          this.#inflight.add(p);
          while (prefetch() > 0 && this.#reserved >= prefetch() && !this.#stop.signal.aborted) {
            await this.#slotFreed.wait(this.#stop.signal);
          }
        }
      }
    } finally {
      app.dispatchEvent(new AppEvent("workerShuttingDown", { hostname: this.hostname }));
      this.#stop.abort();
      while (this.#inflight.size) await Promise.allSettled([...this.#inflight]);
      await this.#pool.close();
      await control.close();
      await scaler;
      const limiter = await this.#globalLimiter?.catch(() => undefined);
      if (limiter && !o.rateLimiter) await limiter.close().catch(() => {});
      app.logger.info(`${this.hostname} stopped`, { processed: this.#processed });
    }
  }

  /**
   * Cold shutdown: stop running tasks now (Web Workers are terminated), requeue late-ack
   * messages, and return when everything is released.
   *
   * @returns When stopped.
   */
  async terminate(): Promise<void> {
    this.#cold.abort();
    this.#stop.abort();
    await this.#pool?.close();
    await this.#ran?.catch(() => {});
  }

  /**
   * Warm shutdown without a signal: same as aborting `signal`.
   *
   * @returns When stopped.
   */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.#ran?.catch(() => {});
  }

  /** Same as {@linkcode Consumer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // Returns whether the result was stored: a failed store (the backend's window passed) is
  // logged and counted, and a late-ack success is then requeued instead of acked.
  async #store(req: TaskRequest, meta: ReturnType<typeof makeMeta>): Promise<boolean> {
    try {
      await this.#backend.store(req.id, meta, { replyTo: req.replyTo });
      return true;
    } catch (error) {
      this.storeFailures++;
      this.app.logger.error(`Cannot store the result of ${req.name}[${req.id}]: ${error}`);
      return false;
    }
  }

  #event<K extends AppEventType>(
    type: K,
    detail: Omit<AppEventDetails[K], "hostname">,
  ): void {
    this.app.dispatchEvent(
      new AppEvent(type, { hostname: this.hostname, ...detail } as AppEventDetails[K]),
    );
  }

  // Shrinks the pool back towards `min` once it has not been busy for the keepalive.
  async #autoscaler(min: number): Promise<void> {
    const keepalive = this.#options.autoscaleKeepaliveMs ?? 30_000;
    const tick = Math.min(1000, keepalive / 4);
    while (!this.#stop.signal.aborted) {
      try {
        await delay(tick, this.#stop.signal);
      } catch {
        return;
      }
      const wanted = Math.max(min, Math.ceil(this.#reserved / this.#childConcurrency));
      if (wanted >= this.#poolSize) this.#lastBusy = Date.now();
      else if (Date.now() - this.#lastBusy >= keepalive && !this.#growing) {
        const n = this.#poolSize - wanted;
        this.#poolSize = wanted;
        await this.#pool!.shrink(n);
        this.app.logger.info(`${this.hostname} autoscale: shrunk to ${wanted}`);
      }
    }
  }

  // The broker's key prefix, so that the shared limiter's keys sit with the broker's.
  #limiterOptions(): { prefix?: string } {
    const t = this.app.conf.transportOptions;
    const prefix = t.global_keyprefix ?? t.keyPrefix;
    return typeof prefix === "string" ? { prefix } : {};
  }

  // Grows the pool by one while tasks wait for a slot (autoscale).
  #maybeGrow(): void {
    const max = this.#options.autoscale?.max;
    if (max === undefined || this.#growing || this.#poolSize >= max) return;
    this.#growing = true;
    this.#poolSize++;
    this.#lastBusy = Date.now();
    this.#pool!.grow(1).then(
      () => this.app.logger.info(`${this.hostname} autoscale: grew to ${this.#poolSize}`),
      (error) => {
        this.#poolSize--;
        this.app.logger.error(`Cannot grow the pool: ${error}`);
      },
    ).finally(() => {
      this.#growing = false;
      this.#slotFreed.notify();
    });
  }

  // Waits for the task's rate limits. Returns false when the message went back to the broker
  // (its slot is further away than rateLimitHoldMs) or the worker is stopping.
  async #rateLimit(delivery: Delivery, req: TaskRequest): Promise<boolean> {
    const task = this.app.tasks.get(req.name)!;
    const hold = this.#options.rateLimitHoldMs ?? 2000;
    const local = this.#rates.get(req.name) ?? parseRate(task.options.rateLimit);
    const global = parseRate(task.options.globalRateLimit);
    const limits: [() => Promise<RateLimiter>, number][] = [];
    if (local > 0) limits.push([() => Promise.resolve(this.#localLimiter), local]);
    if (global > 0) {
      limits.push([
        () =>
          this.#globalLimiter ??= this.#options.rateLimiter
            ? Promise.resolve(this.#options.rateLimiter)
            : createRateLimiter(this.app.conf.brokerUrl, this.#limiterOptions()),
        global,
      ]);
    }
    for (const [limiter, rate] of limits) {
      const { reserved, waitMs } = await (await limiter()).reserve(req.name, rate, hold);
      if (!reserved) {
        const eta = new Date(Date.now() + waitMs);
        await this.#broker.schedule(delivery.queue, delivery.message, eta, {
          priority: req.priority ?? 0,
        });
        await delivery.ack();
        return false;
      }
      if (waitMs > 0) {
        try {
          await delay(waitMs, this.#stop.signal);
        } catch {
          await delivery.reject({ requeue: true });
          return false;
        }
      }
    }
    return true;
  }

  #isRevoked(id: string): boolean {
    return this.revokedSet.has(id);
  }

  async #handle(delivery: Delivery): Promise<void> {
    const app = this.app;
    let req: TaskRequest;
    try {
      req = decodeTask(delivery.message);
    } catch (error) {
      app.logger.error(
        `Rejected a malformed message from ${delivery.queue}: ${(error as Error).message}`,
      );
      this.#event("taskRejected", {
        id: null,
        name: null,
        queue: delivery.queue,
        requeue: false,
        reason: (error as Error).message,
        message: delivery.message,
      });
      await delivery.reject({ requeue: false });
      return;
    }
    const task = app.tasks.get(req.name);
    if (!task) {
      app.logger.error(`Received unregistered task of type '${req.name}' (id ${req.id})`);
      this.#event("taskUnknown", { id: req.id, name: req.name, queue: delivery.queue });
      await this.#store(req, makeMeta(req.id, "FAILURE", errorToInfo(new NotRegistered(req.name))));
      await delivery.reject({ requeue: false });
      return;
    }
    if (delivery.deliveryCount > app.conf.maxDeliveries) {
      return this.#deadLetter(delivery, req, `delivered ${delivery.deliveryCount} times`);
    }
    this.#event("taskReceived", {
      id: req.id,
      name: req.name,
      args: req.args,
      kwargs: req.kwargs,
      rootId: req.rootId,
      parentId: req.parentId,
      retries: req.retries,
      eta: req.eta,
      expires: req.expires,
    });
    const held: HeldRequest = {
      id: req.id,
      name: req.name,
      args: req.args,
      kwargs: req.kwargs,
      state: "reserved",
      queue: delivery.queue,
      timeStart: null,
      acknowledged: false,
      eta: req.eta,
      priority: req.priority,
      redelivered: delivery.redelivered,
    };
    this.#held.set(delivery, held);
    if (this.#isRevoked(req.id)) return this.#revoke(delivery, req, "revoked");
    if (req.expires && req.expires.getTime() <= Date.now()) {
      return this.#revoke(delivery, req, "expired");
    }
    if (req.eta) {
      const wait = req.eta.getTime() - Date.now();
      if (wait > (this.#options.etaHoldMs ?? 1000)) {
        // Back to the broker until it is due: no worker holds it, nothing runs twice.
        await this.#broker.schedule(delivery.queue, delivery.message, req.eta, {
          priority: req.priority ?? 0,
        });
        await delivery.ack();
        return;
      }
      held.state = "scheduled";
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      held.state = "reserved";
    }
    if (!(await this.#rateLimit(delivery, req))) return;
    // Wait for a free task slot; a warm shutdown meanwhile gives the message back.
    while (this.#active >= this.#pool!.capacity && !this.#stop.signal.aborted) {
      this.#maybeGrow();
      await this.#slotFreed.wait(this.#stop.signal);
    }
    if (this.#stop.signal.aborted) {
      await delivery.reject({ requeue: true });
      return;
    }
    if (this.#isRevoked(req.id)) return this.#revoke(delivery, req, "revoked");
    this.#active++;
    this.#running.set(req.id, req);
    held.state = "active";
    held.timeStart = Date.now();
    // The slot frees when the pool returns, so the next task starts while this one's result
    // is stored and its message settled (those are broker/backend round trips, not pool work).
    let holding = true;
    const release = () => {
      if (!holding) return;
      holding = false;
      this.#active--;
      this.#running.delete(req.id);
      this.#slotFreed.notify();
    };
    try {
      await this.#execute(delivery, req, release);
    } finally {
      release();
      this.#processed++;
    }
  }

  // A message delivered too often (its worker keeps dying): dead-letter it and fail the task,
  // so that a poison message neither loops nor leaves its caller waiting.
  async #deadLetter(delivery: Delivery, req: TaskRequest, why: string): Promise<void> {
    const message =
      `Task ${req.name}[${req.id}] dead-lettered: ${why} (maxDeliveries ${this.app.conf.maxDeliveries})`;
    this.app.logger.error(message);
    this.#event("taskRejected", {
      id: req.id,
      name: req.name,
      queue: delivery.queue,
      requeue: false,
      reason: message,
    });
    await this.#store(
      req,
      makeMeta(req.id, "FAILURE", errorToInfo(new WorkerLostError(message)), {
        parentId: req.parentId,
        groupId: req.group,
      }),
    );
    await delivery.reject({ requeue: false });
  }

  async #revoke(delivery: Delivery, req: TaskRequest, why: "revoked" | "expired" | "terminated") {
    this.app.logger.info(`Discarding ${why} task ${req.name}[${req.id}]`);
    this.#event("taskRevoked", {
      id: req.id,
      name: req.name,
      expired: why === "expired",
      terminated: why === "terminated",
    });
    const exc = errorToInfo(new TaskRevokedError(why));
    if (!req.ignoreResult) await this.#store(req, makeMeta(req.id, "REVOKED", exc));
    await this.#chordPart(req, "REVOKED", exc);
    await delivery.ack();
  }

  async #execute(delivery: Delivery, req: TaskRequest, release: () => void): Promise<void> {
    const app = this.app;
    const task = app.tasks.get(req.name)!;
    const acksLate = task.options.acksLate ?? app.conf.acksLate;
    const ignoreResult = req.ignoreResult || (task.options.ignoreResult ?? false);
    if (!acksLate) {
      try {
        await delivery.ack();
      } catch (error) {
        // The ack may or may not have reached the broker: run the task anyway, so that an
        // accepted task runs at least once (it may run again if the message comes back).
        app.logger.warn(`Early ack of ${req.name}[${req.id}] failed, running it anyway: ${error}`);
      }
      const held = this.#held.get(delivery);
      if (held) held.acknowledged = true;
    }
    if (task.options.trackStarted && !ignoreResult) {
      await this.#store(
        req,
        makeMeta(req.id, "STARTED", { pid: Deno.pid, hostname: this.hostname }),
      );
    }
    const run: RunRequest = {
      id: req.id,
      name: req.name,
      args: req.args,
      kwargs: req.kwargs,
      context: {
        id: req.id,
        name: req.name,
        retries: req.retries,
        rootId: req.rootId,
        parentId: req.parentId,
        group: req.group,
        groupIndex: req.groupIndex,
        eta: req.eta?.toISOString() ?? null,
        expires: req.expires?.toISOString() ?? null,
        headers: req.headers,
        deliveryInfo: {
          queue: delivery.queue,
          redelivered: delivery.redelivered,
          deliveryCount: delivery.deliveryCount,
          priority: req.priority,
        },
        hostname: this.hostname,
        isEager: false,
        replyTo: req.replyTo,
      },
    };
    this.#event("taskPrerun", { id: req.id, name: req.name, args: req.args, kwargs: req.kwargs });
    const storeErrors = !ignoreResult || (task.options.storeErrorsEvenIfIgnored ?? false);
    const [hard, soft] = req.timeLimit;
    const outcome = await this.#pool!.run(run, {
      hardLimit: hard ?? task.options.timeLimit ?? this.#options.timeLimit ?? null,
      softLimit: soft ?? task.options.softTimeLimit ?? this.#options.softTimeLimit ?? null,
      onState: (state, meta) =>
        this.#backend.store(req.id, makeMeta(req.id, state, meta), { replyTo: req.replyTo }),
    });
    release();
    const state = await this.#settle(delivery, req, outcome, {
      acksLate,
      ignoreResult,
      storeErrors,
    });
    this.#event("taskPostrun", { id: req.id, name: req.name, state });
  }

  async #settle(
    delivery: Delivery,
    req: TaskRequest,
    outcome: Outcome,
    { acksLate, ignoreResult, storeErrors }: {
      acksLate: boolean;
      ignoreResult: boolean;
      storeErrors: boolean;
    },
  ): Promise<State> {
    const app = this.app;
    const task = app.tasks.get(req.name)!;
    const ids = { parentId: req.parentId, groupId: req.group };
    if (this.#terminated.delete(req.id)) {
      this.#event("taskRevoked", { id: req.id, name: req.name, terminated: true, expired: false });
      await this.#store(
        req,
        makeMeta(req.id, "REVOKED", errorToInfo(new TaskRevokedError("terminated")), ids),
      );
      if (acksLate) await delivery.ack();
      return "REVOKED";
    }
    let stored = true;
    switch (outcome.kind) {
      case "success": {
        // Follow-ups go out before the result is stored, as Celery's tracer does, so that
        // the stored `children` lists them.
        const children = await this.#followUps(req, outcome.value);
        if (!ignoreResult) {
          const meta = makeMeta(req.id, "SUCCESS", outcome.value, ids);
          meta.children = children;
          stored = await this.#store(req, meta);
        }
        await this.#chordPart(req, "SUCCESS", outcome.value);
        if (acksLate && !stored) await delivery.reject({ requeue: true });
        else if (acksLate) await delivery.ack();
        this.#event("taskSuccess", {
          id: req.id,
          name: req.name,
          result: outcome.value,
          runtime: outcome.runtime,
        });
        return "SUCCESS";
      }
      case "retry": {
        const eta = outcome.eta
          ? new Date(outcome.eta)
          : new Date(Date.now() + (outcome.countdown ?? 0) * 1000);
        const message = retryMessage(delivery.message, req, eta);
        if (eta.getTime() > Date.now()) {
          await this.#broker.schedule(delivery.queue, message, eta, {
            priority: req.priority ?? 0,
          });
        } else {
          await this.#broker.publish(delivery.queue, message, { priority: req.priority ?? 0 });
        }
        const exc = outcome.error
          ? shapeToInfo(outcome.error)
          : errorToInfo(new Error("Retry in the future"));
        if (!ignoreResult) {
          await this.#store(
            req,
            makeMeta(req.id, "RETRY", exc, { ...ids, traceback: outcome.error?.stack ?? null }),
          );
        }
        if (acksLate) await delivery.ack();
        app.logger.info(`Task ${req.name}[${req.id}] retry in ${eta.getTime() - Date.now()} ms`);
        this.#event("taskRetry", {
          id: req.id,
          name: req.name,
          eta,
          retries: req.retries,
          reason: outcome.error ? exc : null,
          traceback: outcome.error?.stack ?? null,
        });
        return "RETRY";
      }
      case "reject":
        this.#event("taskRejected", {
          id: req.id,
          name: req.name,
          queue: delivery.queue,
          requeue: outcome.requeue,
          reason: outcome.error.message,
        });
        if (acksLate) await delivery.reject({ requeue: outcome.requeue });
        else if (outcome.requeue) await this.#broker.publish(delivery.queue, delivery.message);
        return "REJECTED";
      case "ignore":
        if (acksLate) await delivery.ack();
        return "IGNORED";
      case "lost": {
        const cold = this.#cold.signal.aborted;
        if (acksLate && (cold || task.options.rejectOnWorkerLost)) {
          // Bounded by the broker's redelivery counter: a message that keeps killing its
          // worker is dead-lettered instead of looping.
          if (!cold && delivery.deliveryCount >= app.conf.maxDeliveries) {
            await this.#deadLetter(
              delivery,
              req,
              `its worker was lost on each of ${delivery.deliveryCount} deliveries`,
            );
            return "FAILURE";
          }
          await delivery.reject({ requeue: true });
          return "REJECTED";
        }
        const error = new WorkerLostError(outcome.error.message);
        await this.#fail(req, errorToInfo(error), outcome.error.stack, storeErrors);
        if (acksLate) await this.#ackFailure(delivery, task.options.acksOnFailureOrTimeout);
        return "FAILURE";
      }
      case "timeout": {
        app.logger.error(
          `Hard time limit (${outcome.seconds}s) exceeded for ${req.name}[${req.id}]`,
        );
        const exc = errorToInfo(new TimeLimitExceeded(outcome.seconds));
        await this.#fail(req, exc, null, storeErrors);
        if (acksLate) await this.#ackFailure(delivery, task.options.acksOnFailureOrTimeout);
        return "FAILURE";
      }
      case "failure": {
        const text =
          `Task ${req.name}[${req.id}] raised ${outcome.error.name}: ${outcome.error.message}`;
        if (outcome.error.expected) app.logger.info(text);
        else app.logger.warn(text, { traceback: outcome.error.stack });
        await this.#fail(req, shapeToInfo(outcome.error), outcome.error.stack, storeErrors);
        if (acksLate) await this.#ackFailure(delivery, task.options.acksOnFailureOrTimeout);
        return "FAILURE";
      }
    }
  }

  async #ackFailure(delivery: Delivery, acksOnFailure: boolean | undefined): Promise<void> {
    if (acksOnFailure ?? true) await delivery.ack();
    else await delivery.reject({ requeue: false });
  }

  async #fail(
    req: TaskRequest,
    exc: ReturnType<typeof errorToInfo>,
    traceback: string | null,
    store = true,
  ) {
    if (store) {
      await this.#store(
        req,
        makeMeta(req.id, "FAILURE", exc, { traceback, parentId: req.parentId, groupId: req.group }),
      );
    }
    this.#event("taskFailure", { id: req.id, name: req.name, exception: exc, traceback });
    await this.#chordPart(req, "FAILURE", exc);
    // The rest of the chain will never run: fail it too, so nobody waits forever on its
    // results or on a chord it belongs to (Celery's `mark_as_failure`).
    for (const sig of req.embed.chain ?? []) await this.#failSignature(req, sig, exc, traceback);
    await this.#errbacks(req, req.embed.errbacks ?? [], req.id);
  }

  // Errbacks in message form: each gets the failed task's id prepended; each runs once.
  async #errbacks(req: TaskRequest, errbacks: readonly SignatureDict[], failedId: string) {
    const seen = new Set<string>();
    for (const sig of errbacks) {
      const key = JSON.stringify(sig);
      if (seen.has(key)) continue;
      seen.add(key);
      await this.#send(req, () =>
        applySignature(this.app, sig, {
          prepend: [failedId],
          send: { parentId: failedId, rootId: req.rootId },
        }));
    }
  }

  // Marks every task a signature would have run as failed, completing any chord they were
  // header members of.
  async #failSignature(
    req: TaskRequest,
    sig: SignatureDict,
    exc: ReturnType<typeof errorToInfo>,
    traceback: string | null,
  ) {
    let leaves: SignatureDict[];
    try {
      leaves = leafTasks(sig);
    } catch {
      return;
    }
    for (const leaf of leaves) {
      const id = leaf.options.task_id as string;
      const o = leaf.options;
      const groupId = typeof o.group_id === "string" ? o.group_id : null;
      try {
        await this.#backend.store(id, makeMeta(id, "FAILURE", exc, { traceback, groupId }));
      } catch (error) {
        this.app.logger.error(`Cannot store the failure of ${id}: ${error}`);
      }
      if (isSignatureLike(o.chord) && groupId) {
        await this.#chordPart(
          {
            ...req,
            id,
            group: groupId,
            groupIndex: typeof o.group_index === "number" ? o.group_index : null,
            embed: { ...req.embed, chord: o.chord as SignatureDict },
          },
          "FAILURE",
          exc,
        );
      }
    }
  }

  async #followUps(req: TaskRequest, value: unknown): Promise<unknown[]> {
    const lineage = { parentId: req.id, rootId: req.rootId };
    const send = req.priority === null ? lineage : { ...lineage, priority: req.priority };
    const children: unknown[] = [];
    for (const sig of req.embed.callbacks ?? []) {
      await this.#send(req, async () => {
        const r = await applySignature(this.app, sig, { prepend: [value], send });
        children.push(r.asTuple());
      });
    }
    const chain = req.embed.chain;
    if (chain?.length) {
      const rest = chain.slice(0, -1);
      const next = chain[chain.length - 1]!;
      await this.#send(req, async () => {
        const r = await applySignature(this.app, next, {
          prepend: [value],
          send: { ...send, chain: rest },
        });
        children.push(r.asTuple());
      });
    }
    return children;
  }

  async #chordPart(req: TaskRequest, status: State, result: unknown) {
    const body = req.embed.chord;
    if (!body || !req.group) return;
    let parts: ChordPart[] | null;
    try {
      parts = await this.#backend.chordPartReturn(req.group, req.groupIndex ?? 0, {
        taskId: req.id,
        status,
        result,
      });
    } catch (error) {
      this.app.logger.error(`Cannot record chord part ${req.id} of ${req.group}: ${error}`);
      return;
    }
    if (!parts) return;
    const failed = parts.find((p) => p.status !== "SUCCESS");
    if (failed) {
      const error = new ChordError(`Dependency ${failed.taskId} raised ${describe(failed.result)}`);
      const exc = errorToInfo(error);
      await this.#failSignature(req, body, exc, null);
      const bodyId = leafTasks(body).at(-1)?.options.task_id;
      const errbacks = leafTasks(body).flatMap((leaf) => {
        const e = leaf.options.link_error;
        return (Array.isArray(e) ? e : e ? [e] : []) as SignatureDict[];
      });
      const own = body.options?.link_error;
      const all = [...(Array.isArray(own) ? own : own ? [own] : []), ...errbacks];
      await this.#errbacks(req, all as SignatureDict[], String(bodyId ?? req.group));
      return;
    }
    await this.#send(req, () =>
      applySignature(this.app, body, {
        prepend: [parts.map((p) => p.result)],
        send: { parentId: req.id, rootId: req.rootId },
      }));
  }

  async #send(req: TaskRequest, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      this.app.logger.error(`Cannot send a follow-up of ${req.name}[${req.id}]: ${error}`);
    }
  }
}

// Celery's `repr` of a header task's error in a ChordError: `ValueError('boom')`.
function describe(result: unknown): string {
  if (result && typeof result === "object" && "exc_type" in result) {
    const r = result as { exc_type: unknown; exc_message?: unknown };
    const args = Array.isArray(r.exc_message) ? r.exc_message : [r.exc_message];
    return `${r.exc_type}(${
      args.map((a) => typeof a === "string" ? `'${a}'` : JSON.stringify(a)).join(", ")
    })`;
  }
  return JSON.stringify(result);
}

/**
 * The message a retry sends: the same id and body, `retries + 1`, the new ETA, and the
 * task's own id as `parent_id` (as Celery does).
 *
 * @param message The original message.
 * @param req The decoded request.
 * @param eta When to retry.
 * @returns The new message.
 */
export function retryMessage(message: Message, req: TaskRequest, eta: Date): Message {
  return {
    ...message,
    headers: {
      ...message.headers,
      retries: req.retries + 1,
      eta: toIso(eta),
      parent_id: req.id,
    },
    properties: { ...message.properties },
  };
}
