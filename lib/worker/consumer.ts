/**
 * The Consumer: the worker's main loop. Deliveries come in as an async iterator, within the
 * prefetch window; each becomes a {@linkcode Request} (request.ts), which owns that
 * delivery's whole life and its one settle. The loop itself only starts and stops things:
 * the pool, the remote control node, autoscale, and the drain at shutdown.
 *
 * @module
 */

import { type App, machineName } from "../app.ts";
import { expandNodeName } from "./node_name.ts";
import type { Backend } from "../backends/backend.ts";
import type { Broker, DeadLetterEvent } from "../brokers/broker.ts";
import { AppEvent, type AppEventDetails, type AppEventType } from "../signals.ts";
import type { RateLimit } from "../task_options.ts";
import { aborted, delay, Notifier } from "../_signal.ts";
import { Autoscaler } from "./autoscale.ts";
import { ControlNode, type HeldRequest } from "./control.ts";
import { FollowUps } from "./follow_ups.ts";
import { InlinePool } from "./inline_pool.ts";
import type { Pool } from "./pool.ts";
import { RateGate } from "./rate_gate.ts";
import type { RateLimiter } from "./rate_limit.ts";
import { Request, type RequestHost } from "./request.ts";
import { RevokedSet } from "./revoked.ts";
import { matchStamps, RevokedStamps } from "./revoked_stamps.ts";
import { readStamps } from "../protocol/stamps.ts";
import { pyRepr } from "../protocol/message.ts";
import { WorkersPool } from "./worker_pool.ts";

export { retryMessage } from "./request.ts";

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
   * Tasks sent ahead to one Web Worker beyond `childConcurrency` (they start there as soon as
   * a place frees; one not started yet is still taken back); `0` sends tasks only to free
   * places. A task sent ahead is shown as active; an early-ack one is acked when its Web Worker
   * starts it (as Celery's prefork pool acks when its child accepts a job), not before the run
   * as otherwise: a crash of the process in between runs it again. One not started is not
   * acked: it comes back after a crash, and a warm shutdown requeues it. Off by default for
   * that difference. See `WorkersPoolOptions.lookahead`.
   * @default {0}
   */
  lookahead?: number;
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
  /**
   * Warm shutdown waits this many seconds for running tasks, then stops them as a cold
   * shutdown does (late-ack messages go back to the queue); `0` waits for ever.
   * @default {0}
   */
  shutdownTimeout?: number;
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
  /** Revoked task ids (kept 3 hours, at most 50,000). */
  readonly revokedSet: RevokedSet = new RevokedSet();
  /** Revoked stamps (`revoke_by_stamped_headers`), in memory only, as Celery. */
  readonly revokedStamps: RevokedStamps = new RevokedStamps();
  #options: ConsumerOptions;
  #pool: Pool | undefined;
  #stop = new AbortController();
  #cold = new AbortController();
  #held = new Set<Request>();
  #active = 0;
  #slotFreed = new Notifier();
  #control: ControlNode | undefined;
  #round: AbortController | undefined;
  #processed = 0;
  #storeFailures = 0;
  #ran: Promise<void> | undefined;
  #rates: RateGate;
  #autoscaler: Autoscaler | undefined;
  #poolSize = 0;

  /**
   * Creates the worker; `run()` starts it.
   *
   * @param app The app whose tasks it runs.
   * @param options Options.
   */
  constructor(app: App, options: ConsumerOptions = {}) {
    this.app = app;
    this.#options = options;
    this.hostname = expandNodeName(options.hostname ?? "celeriac@%h", machineName());
    this.queues = options.queues?.length ? [...options.queues] : [app.conf.defaultQueue];
    if ((options.pool ?? "workers") === "workers" && !options.appModule) {
      throw new TypeError("Cannot start the workers pool: appModule is required");
    }
    if (options.signal) {
      const signal = options.signal;
      if (signal.aborted) this.#stop.abort(signal.reason);
      else signal.addEventListener("abort", () => this.#stop.abort(signal.reason), { once: true });
    }
    this.#rates = this.#rateGate();
  }

  /** Tasks finished since start. */
  get processed(): number {
    return this.#processed;
  }

  /** Tasks running now. */
  get active(): number {
    return this.#active;
  }

  /** Results that could not be stored since start (each one was logged). */
  get storeFailures(): number {
    return this.#storeFailures;
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

  /** Web Workers (`workers`) or task slots (`inline`) in the pool now. */
  get poolSize(): number {
    return this.#autoscaler?.size ?? this.#poolSize;
  }

  /**
   * Changes the autoscaler's bounds (remote control `autoscale`), as Celery's
   * `Autoscaler.update`.
   *
   * @param max Most slots, or `null` to keep it.
   * @param min Fewest slots, or `null` to keep it.
   * @returns The bounds now, or `undefined` when the worker runs without `autoscale`.
   */
  updateAutoscale(
    max: number | null,
    min: number | null,
  ): Promise<{ max: number; min: number }> | undefined {
    return this.#autoscaler?.update(max, min);
  }

  /**
   * Starts consuming a queue too (remote control `add_consumer`).
   *
   * @param queue The queue.
   * @throws {TypeError} When the name is not a non-empty string.
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
    return [...this.#held].flatMap((r) => r.held ? [{ ...r.held }] : []);
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
    const terminated = new Set<string>();
    for (const id of ids) this.revokedSet.add(id);
    if (options.terminate) {
      const wanted = new Set(ids);
      for (const request of this.#held) {
        const id = request.task?.id;
        if (id !== undefined && wanted.has(id) && request.running) {
          request.terminate();
          terminated.add(id);
        }
      }
    }
    if (ids.length) this.app.logger.info(`Tasks flagged as revoked: ${ids.join(", ")}`);
    return [...terminated];
  }

  /**
   * Revokes tasks by stamp (Celery's `revoke_by_stamped_headers`): tasks carrying one of the
   * values will not start; with `terminate`, running ones are stopped (their state becomes
   * REVOKED).
   *
   * @param stamps Stamp name → values.
   * @param options Terminate or not.
   * @returns Stamp name → the values of the running tasks being terminated.
   */
  revokeStamps(
    stamps: Record<string, unknown[]>,
    options: { terminate?: boolean; signal?: string } = {},
  ): Record<string, unknown[]> {
    this.revokedStamps.add(stamps);
    const terminated: Record<string, unknown[]> = {};
    if (options.terminate) {
      for (const request of this.#held) {
        const headers = request.task?.headers;
        if (!headers || !request.running) continue;
        const carried = readStamps(headers).stamps;
        let hit = false;
        for (const [name, values] of Object.entries(stamps)) {
          const match = matchStamps(carried, { [name]: values });
          if (!match) continue;
          hit = true;
          const seen = terminated[name] ??= [];
          if (!seen.includes(match.value)) seen.push(match.value);
        }
        if (hit) request.terminate();
      }
    }
    this.app.logger.info(`Tasks flagged as revoked by stamps: ${pyRepr(stamps)}`);
    return terminated;
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
    this.#rates.set(name, rate);
  }

  /**
   * Runs until warm shutdown (the `signal`) and the drain finish.
   *
   * @returns When stopped.
   */
  run(): Promise<void> {
    return this.#ran ??= this.#run();
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

  async #run(): Promise<void> {
    const app = this.app;
    const o = this.#options;
    // Connecting retries as the App's brokerConnection* options say; a stop signal (SIGTERM)
    // while connecting ends the run at once.
    let broker: Broker;
    let backend: Backend;
    try {
      broker = await app.getBroker({ signal: this.#stop.signal });
      backend = await app.getBackend({ signal: this.#stop.signal });
    } catch (error) {
      if (this.#stop.signal.aborted) {
        app.logger.info(`${this.hostname} stopped while connecting`);
        return;
      }
      throw error;
    }
    const pool = this.#pool = this.#makePool(broker, backend);
    try {
      await pool.start();
    } catch (error) {
      await pool.close();
      throw error;
    }
    const controlOptions: ConstructorParameters<typeof ControlNode>[2] = {
      taskEvents: o.taskEvents ?? false,
      heartbeatInterval: o.heartbeatInterval ?? 2,
      mingleTimeout: o.mingleTimeout ?? 0,
    };
    if (o.statedb) controlOptions.statedb = o.statedb;
    const control = this.#control = new ControlNode(this, broker, controlOptions);
    try {
      await control.start();
    } catch (error) {
      await control.close().catch(() => {});
      await pool.close();
      throw error;
    }
    if (o.autoscale) {
      this.#autoscaler = new Autoscaler({
        pool,
        min: o.autoscale.min,
        max: o.autoscale.max,
        keepaliveMs: o.autoscaleKeepaliveMs ?? 30_000,
        perSlot: this.poolKind === "workers" ? o.childConcurrency ?? 1 : 1,
        load: () => this.#held.size,
        log: (m) => app.logger.info(`${this.hostname} ${m}`),
        onGrown: () => this.#slotFreed.notify(),
        signal: this.#stop.signal,
      });
    }
    // Everything is declared before `ready`: a refusal is the run's error, not a later exit.
    try {
      await broker.declare?.([...this.queues]);
    } catch (error) {
      await control.close().catch(() => {});
      await pool.close();
      throw error;
    }
    const host = this.#requestHost(broker, backend, pool);
    // Warm shutdown: tasks taken but not started yet go back to the queue.
    const handBack = () => pool.handBack?.();
    this.#stop.signal.addEventListener("abort", handBack, { once: true });
    const multiplier = o.prefetchMultiplier ?? 4;
    if (multiplier === 0) {
      app.logger.warn("prefetchMultiplier 0 means unlimited prefetch: this worker may hoard tasks");
    }
    app.logger.info(`${this.hostname} ready`, {
      queues: this.queues,
      pool: this.poolKind,
      concurrency: pool.capacity,
    });
    this.#event("workerReady", {});
    const inflight = new Set<Promise<void>>();
    try {
      const prefetch = () => multiplier === 0 ? 0 : pool.capacity * multiplier;
      // add_consumer/cancel_consumer end a round; the next one consumes the new queue list.
      while (!this.#stop.signal.aborted) {
        const round = this.#round = new AbortController();
        const signal = AbortSignal.any([this.#stop.signal, round.signal]);
        if (this.queues.length === 0) {
          const idle = aborted(signal);
          await idle.promise;
          idle.dispose();
          continue;
        }
        const consumed = broker.consume([...this.queues], {
          prefetch: prefetch(),
          signal,
          onDeadLetter: (e) => this.#brokerDeadLetter(e),
        });
        try {
          for await (const delivery of consumed) {
            const request = new Request(delivery, host);
            this.#held.add(request);
            const p = request.process().finally(() => {
              this.#held.delete(request);
              inflight.delete(p);
              this.#slotFreed.notify();
            });
            inflight.add(p);
            while (
              prefetch() > 0 && this.#held.size >= prefetch() && !this.#stop.signal.aborted
            ) {
              await this.#slotFreed.wait(this.#stop.signal);
            }
          }
        } catch (error) {
          // Stopping with the broker gone: the stream's clean-up may fail; the shutdown goes on.
          if (!this.#stop.signal.aborted) throw error;
          app.logger.warn(`${this.hostname} consumer ended while stopping: ${error}`);
        }
      }
    } finally {
      this.#event("workerShuttingDown", {});
      this.#stop.abort();
      await this.#drain(inflight);
      this.#stop.signal.removeEventListener("abort", handBack);
      // Each step is tried: a broker that went away (worker-offline cannot be sent) must not
      // turn a finished warm shutdown into a failure.
      const steps: [string, () => Promise<void> | undefined][] = [
        ["pool", () => pool.close()],
        ["remote control", () => control.close()],
        ["autoscale", () => this.#autoscaler?.stopped()],
        ["rate limiter", () => this.#rates.close()],
      ];
      for (const [what, step] of steps) {
        try {
          await step();
        } catch (error) {
          app.logger.warn(`${this.hostname} stopping the ${what} failed: ${error}`);
        }
      }
      app.logger.info(`${this.hostname} stopped`, { processed: this.#processed });
    }
  }

  // Waits for the requests in flight; past `shutdownTimeout`, stops the running ones as a
  // cold shutdown does.
  async #drain(inflight: Set<Promise<void>>): Promise<void> {
    const timeout = this.#options.shutdownTimeout ?? 0;
    const all = () => Promise.allSettled([...inflight]);
    if (timeout > 0 && inflight.size) {
      const timer = new AbortController();
      const late = delay(timeout * 1000, timer.signal).then(() => true, () => false);
      const done = await Promise.race([all().then(() => false), late]);
      timer.abort();
      if (done) {
        this.app.logger.warn(
          `${this.hostname} warm shutdown timed out after ${timeout}s: stopping ${this.#active} running task(s)`,
        );
        this.#cold.abort();
        await this.#pool?.close();
      }
    }
    while (inflight.size) await all();
  }

  #makePool(broker: Broker, backend: Backend): Pool {
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
    return kind === "workers"
      ? new WorkersPool({
        appModule: o.appModule!,
        size: concurrency,
        childConcurrency: o.childConcurrency ?? 1,
        ...(o.lookahead === undefined ? {} : { lookahead: o.lookahead }),
        maxTasksPerChild: o.maxTasksPerChild ?? Infinity,
        maxMemoryPerChild: o.maxMemoryPerChild ?? Infinity,
        broker,
        backend,
        logger: this.app.logger,
      })
      : new InlinePool(this.app, concurrency);
  }

  #rateGate(): RateGate {
    const t = this.app.conf.transportOptions;
    // The broker's key prefix, so that the shared limiter's keys sit with the broker's.
    const prefix = t.global_keyprefix ?? t.keyPrefix;
    return new RateGate({
      brokerUrl: this.app.conf.brokerUrl,
      ...(typeof prefix === "string" ? { prefix } : {}),
      ...(this.#options.rateLimiter ? { limiter: this.#options.rateLimiter } : {}),
      holdMs: this.#options.rateLimitHoldMs ?? 2000,
      signal: this.#stop.signal,
    });
  }

  // What each Request sees of this consumer.
  #requestHost(broker: Broker, backend: Backend, pool: Pool): RequestHost {
    const o = this.#options;
    const app = this.app;
    return {
      app,
      broker,
      backend,
      pool,
      followUps: new FollowUps({ app, backend, logger: app.logger }),
      hostname: this.hostname,
      stopping: this.#stop.signal,
      cold: this.#cold.signal,
      etaHoldMs: o.etaHoldMs ?? 1000,
      timeLimits: { hard: o.timeLimit ?? null, soft: o.softTimeLimit ?? null },
      isRevoked: (id) => this.revokedSet.has(id),
      revokedStamp: (headers) => this.revokedStamps.match(headers),
      rateLimit: (req) => this.#rates.pass(req, app.tasks.get(req.name)!.options),
      acquire: async () => {
        // Tasks the pool sends ahead wait for a place too: that is load to grow for.
        if (this.#active >= pool.capacity) this.#autoscaler?.grow();
        while (
          this.#active >= pool.capacity + (pool.lookahead ?? 0) && !this.#stop.signal.aborted
        ) {
          this.#autoscaler?.grow();
          await this.#slotFreed.wait(this.#stop.signal);
        }
        if (this.#stop.signal.aborted) return false;
        this.#active++;
        return true;
      },
      release: () => {
        this.#active--;
        this.#processed++;
        this.#slotFreed.notify();
      },
      event: (type, detail) => this.#event(type, detail),
      storeFailed: () => this.#storeFailures++,
    };
  }

  // A message the broker dead-lettered by itself (unreadable, or delivered too often): one log
  // line and a `task-rejected` event, as for the ones the worker dead-letters.
  #brokerDeadLetter(e: DeadLetterEvent): void {
    const id = typeof e.message?.headers.id === "string" ? e.message.headers.id : null;
    const name = typeof e.message?.headers.task === "string" ? e.message.headers.task : null;
    const what = id ? `Task ${name}[${id}]` : `A message from ${e.queue}`;
    this.app.logger.error(`${what} dead-lettered by the broker: ${e.reason}`);
    this.#event("taskRejected", {
      id,
      name,
      queue: e.queue,
      requeue: false,
      reason: e.reason,
      ...(e.message ? { message: e.message } : {}),
    });
  }

  #event<K extends AppEventType>(type: K, detail: Omit<AppEventDetails[K], "hostname">): void {
    this.app.dispatchEvent(
      new AppEvent(type, { hostname: this.hostname, ...detail } as AppEventDetails[K]),
    );
  }
}
