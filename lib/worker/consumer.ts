/**
 * The Consumer: the worker's main loop. Deliveries come in as an async iterator; each one is
 * decoded, checked (unknown, revoked, expired, not yet due), run on the pool, its result
 * stored, its message acked, and its follow-ups (callbacks, chain, chord) sent.
 *
 * @module
 */

import { type App, machineName, makeMeta, shapeToInfo } from "../app.ts";
import type { Backend } from "../backends/backend.ts";
import type { Broker, Delivery } from "../brokers/broker.ts";
import { applySignature } from "../canvas.ts";
import {
  ChordError,
  NotRegistered,
  TaskRevokedError,
  TimeLimitExceeded,
  WorkerLostError,
} from "../errors.ts";
import { errorToInfo } from "../protocol/exceptions.ts";
import { decodeTask, type Message, type TaskRequest, toIso } from "../protocol/message.ts";
import { Notifier } from "../_signal.ts";
import { InlinePool } from "./inline_pool.ts";
import type { Outcome, RunRequest } from "./outcome.ts";
import type { Pool } from "./pool.ts";
import { WorkersPool } from "./worker_pool.ts";

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
   * ETAs further than this many ms away go back to the broker (`schedule`) instead of waiting
   * in memory.
   * @default {1000}
   */
  etaHoldMs?: number;
  /** Warm shutdown: stop taking messages, finish running tasks, requeue the rest. */
  signal?: AbortSignal;
}

const REVOKE_KEEP_MS = 3 * 3600 * 1000;
const REVOKE_MAX = 50_000;

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
  #revoked = new Map<string, number>();
  #terminated = new Set<string>();
  #running = new Map<string, TaskRequest>();
  #processed = 0;
  #ran: Promise<void> | undefined;

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
    this.queues = options.queues?.length ? options.queues : [app.conf.defaultQueue];
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
    return [...this.#revoked.keys()];
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
    this.#broker = await app.getBroker();
    this.#backend = await app.getBackend();
    const o = this.#options;
    const kind = o.pool ?? "workers";
    const concurrency = o.concurrency ?? (kind === "workers" ? navigator.hardwareConcurrency : 100);
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `Cannot set concurrency: it must be a positive integer, got ${concurrency}`,
      );
    }
    this.#pool = kind === "workers"
      ? new WorkersPool({
        appModule: o.appModule!,
        size: concurrency,
        childConcurrency: o.childConcurrency ?? 1,
        maxTasksPerChild: o.maxTasksPerChild ?? Infinity,
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
    const control = this.#listenControl();
    const multiplier = o.prefetchMultiplier ?? 4;
    if (multiplier === 0) {
      app.logger.warn("prefetchMultiplier 0 means unlimited prefetch: this worker may hoard tasks");
    }
    app.logger.info(`${this.hostname} ready`, {
      queues: this.queues,
      pool: kind,
      concurrency: this.#pool.capacity,
    });
    app.dispatchEvent(new CustomEvent("workerReady", { detail: { hostname: this.hostname } }));
    try {
      const prefetch = () => multiplier === 0 ? 0 : this.#pool!.capacity * multiplier;
      for await (
        const delivery of this.#broker.consume(this.queues, {
          prefetch: prefetch(),
          signal: this.#stop.signal,
        })
      ) {
        this.#reserved++;
        const p = this.#handle(delivery).catch((error) => {
          app.logger.error(`Internal error handling a message: ${error}`, { error });
        }).finally(() => {
          this.#reserved--;
          this.#inflight.delete(p);
          this.#slotFreed.notify();
        });
        this.#inflight.add(p);
        while (prefetch() > 0 && this.#reserved >= prefetch() && !this.#stop.signal.aborted) {
          await this.#slotFreed.wait(this.#stop.signal);
        }
      }
    } finally {
      app.dispatchEvent(
        new CustomEvent("workerShuttingDown", { detail: { hostname: this.hostname } }),
      );
      this.#stop.abort();
      while (this.#inflight.size) await Promise.allSettled([...this.#inflight]);
      await this.#pool.close();
      await control;
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

  async #store(req: TaskRequest, meta: ReturnType<typeof makeMeta>): Promise<void> {
    try {
      await this.#backend.store(req.id, meta);
    } catch (error) {
      this.app.logger.error(`Cannot store the result of ${req.name}[${req.id}]: ${error}`);
    }
  }

  #event(type: string, detail: Record<string, unknown>): void {
    this.app.dispatchEvent(
      new CustomEvent(type, { detail: { hostname: this.hostname, ...detail } }),
    );
  }

  #isRevoked(id: string): boolean {
    const until = this.#revoked.get(id);
    if (until === undefined) return false;
    if (until < Date.now()) {
      this.#revoked.delete(id);
      return false;
    }
    return true;
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
      this.#event("taskRejected", { queue: delivery.queue, error, message: delivery.message });
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
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    // Wait for a free task slot; a warm shutdown meanwhile gives the message back.
    const capacity = this.#pool!.capacity;
    while (this.#active >= capacity && !this.#stop.signal.aborted) {
      await this.#slotFreed.wait(this.#stop.signal);
    }
    if (this.#stop.signal.aborted) {
      await delivery.reject({ requeue: true });
      return;
    }
    if (this.#isRevoked(req.id)) return this.#revoke(delivery, req, "revoked");
    this.#active++;
    this.#running.set(req.id, req);
    try {
      await this.#execute(delivery, req);
    } finally {
      this.#active--;
      this.#running.delete(req.id);
      this.#processed++;
      this.#slotFreed.notify();
    }
  }

  async #revoke(delivery: Delivery, req: TaskRequest, why: "revoked" | "expired" | "terminated") {
    this.app.logger.info(`Discarding ${why} task ${req.name}[${req.id}]`);
    this.#event("taskRevoked", {
      id: req.id,
      name: req.name,
      expired: why === "expired",
      terminated: why === "terminated",
    });
    if (!req.ignoreResult) {
      await this.#store(req, makeMeta(req.id, "REVOKED", errorToInfo(new TaskRevokedError(why))));
    }
    await delivery.ack();
  }

  async #execute(delivery: Delivery, req: TaskRequest): Promise<void> {
    const app = this.app;
    const task = app.tasks.get(req.name)!;
    const acksLate = task.options.acksLate ?? app.conf.acksLate;
    const ignoreResult = req.ignoreResult || (task.options.ignoreResult ?? false);
    if (!acksLate) await delivery.ack();
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
      },
    };
    this.#event("taskPrerun", { id: req.id, name: req.name, args: req.args, kwargs: req.kwargs });
    const [hard, soft] = req.timeLimit;
    const outcome = await this.#pool!.run(run, {
      hardLimit: hard ?? task.options.timeLimit ?? this.#options.timeLimit ?? null,
      softLimit: soft ?? task.options.softTimeLimit ?? this.#options.softTimeLimit ?? null,
      onState: (state, meta) => this.#backend.store(req.id, makeMeta(req.id, state, meta)),
    });
    await this.#settle(delivery, req, outcome, { acksLate, ignoreResult });
    this.#event("taskPostrun", { id: req.id, name: req.name, outcome: outcome.kind });
  }

  async #settle(
    delivery: Delivery,
    req: TaskRequest,
    outcome: Outcome,
    { acksLate, ignoreResult }: { acksLate: boolean; ignoreResult: boolean },
  ): Promise<void> {
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
      return;
    }
    switch (outcome.kind) {
      case "success": {
        // Follow-ups go out before the result is stored, as Celery's tracer does.
        await this.#followUps(req, outcome.value);
        if (!ignoreResult) await this.#store(req, makeMeta(req.id, "SUCCESS", outcome.value, ids));
        await this.#chordPart(req, "SUCCESS", outcome.value);
        if (acksLate) await delivery.ack();
        this.#event("taskSuccess", {
          id: req.id,
          name: req.name,
          result: outcome.value,
          runtime: outcome.runtime,
        });
        return;
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
        await this.#store(
          req,
          makeMeta(req.id, "RETRY", exc, { ...ids, traceback: outcome.error?.stack ?? null }),
        );
        if (acksLate) await delivery.ack();
        this.#event("taskRetry", { id: req.id, name: req.name, eta, error: outcome.error });
        return;
      }
      case "reject":
        this.#event("taskRejected", { id: req.id, name: req.name, requeue: outcome.requeue });
        if (acksLate) await delivery.reject({ requeue: outcome.requeue });
        else if (outcome.requeue) await this.#broker.publish(delivery.queue, delivery.message);
        return;
      case "ignore":
        if (acksLate) await delivery.ack();
        return;
      case "lost": {
        const cold = this.#cold.signal.aborted;
        if (acksLate && (cold || task.options.rejectOnWorkerLost)) {
          await delivery.reject({ requeue: true });
          return;
        }
        const error = new WorkerLostError(outcome.error.message);
        await this.#fail(req, errorToInfo(error), outcome.error.stack);
        if (acksLate) await this.#ackFailure(delivery, task.options.acksOnFailureOrTimeout);
        return;
      }
      case "timeout": {
        app.logger.error(
          `Hard time limit (${outcome.seconds}s) exceeded for ${req.name}[${req.id}]`,
        );
        await this.#fail(req, errorToInfo(new TimeLimitExceeded(outcome.seconds)), null);
        if (acksLate) await this.#ackFailure(delivery, task.options.acksOnFailureOrTimeout);
        return;
      }
      case "failure": {
        app.logger.warn(
          `Task ${req.name}[${req.id}] raised ${outcome.error.name}: ${outcome.error.message}`,
        );
        await this.#fail(req, shapeToInfo(outcome.error), outcome.error.stack);
        if (acksLate) await this.#ackFailure(delivery, task.options.acksOnFailureOrTimeout);
        return;
      }
    }
  }

  async #ackFailure(delivery: Delivery, acksOnFailure: boolean | undefined): Promise<void> {
    if (acksOnFailure ?? true) await delivery.ack();
    else await delivery.reject({ requeue: false });
  }

  async #fail(req: TaskRequest, exc: ReturnType<typeof errorToInfo>, traceback: string | null) {
    await this.#store(
      req,
      makeMeta(req.id, "FAILURE", exc, { traceback, parentId: req.parentId, groupId: req.group }),
    );
    this.#event("taskFailure", { id: req.id, name: req.name, exception: exc, traceback });
    for (const sig of req.embed.errbacks ?? []) {
      await this.#send(req, () => applySignature(this.app, sig, { prepend: [req.id] }));
    }
    await this.#chordPart(req, "FAILURE", exc);
  }

  async #followUps(req: TaskRequest, value: unknown): Promise<void> {
    const lineage = { parentId: req.id, rootId: req.rootId };
    for (const sig of req.embed.callbacks ?? []) {
      await this.#send(
        req,
        () => applySignature(this.app, sig, { prepend: [value], send: lineage }),
      );
    }
    const chain = req.embed.chain;
    if (chain?.length) {
      const rest = chain.slice(0, -1);
      const next = chain[chain.length - 1]!;
      const send = rest.length ? { ...lineage, chain: rest } : lineage;
      await this.#send(req, () => applySignature(this.app, next, { prepend: [value], send }));
    }
  }

  async #chordPart(req: TaskRequest, status: "SUCCESS" | "FAILURE", result: unknown) {
    const body = req.embed.chord;
    if (!body || !req.group) return;
    const parts = await this.#backend.chordPartReturn(req.group, req.groupIndex ?? 0, {
      taskId: req.id,
      status,
      result,
    });
    if (!parts) return;
    const failed = parts.find((p) => p.status !== "SUCCESS");
    const bodyId = typeof body.options?.task_id === "string" ? body.options.task_id : null;
    if (failed) {
      const error = new ChordError(
        `Dependency ${failed.taskId} raised ${JSON.stringify(failed.result)}`,
      );
      if (bodyId) {
        await this.#backend.store(bodyId, makeMeta(bodyId, "FAILURE", errorToInfo(error)));
      }
      const errbacks = body.options?.link_error;
      for (const sig of Array.isArray(errbacks) ? errbacks : errbacks ? [errbacks] : []) {
        await this.#send(
          req,
          () => applySignature(this.app, sig, { prepend: [bodyId ?? req.group] }),
        );
      }
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

  // Remote control, the part the core needs: revoke (and terminate).
  async #listenControl(): Promise<void> {
    const broker = this.#broker;
    if (!broker.subscribe) return;
    try {
      for await (const m of broker.subscribe("celery.pidbox", { signal: this.#stop.signal })) {
        let body: {
          method?: string;
          arguments?: Record<string, unknown>;
          destination?: string[] | null;
        };
        try {
          body = JSON.parse(m.message.body);
        } catch {
          continue;
        }
        if (body.destination && !body.destination.includes(this.hostname)) continue;
        if (body.method === "revoke") {
          const args = body.arguments ?? {};
          const ids = Array.isArray(args.task_id)
            ? args.task_id as string[]
            : [String(args.task_id)];
          for (const id of ids) {
            this.#revoked.set(id, Date.now() + REVOKE_KEEP_MS);
            if (this.#revoked.size > REVOKE_MAX) {
              this.#revoked.delete(this.#revoked.keys().next().value!);
            }
            if (args.terminate && this.#running.has(id)) {
              this.#terminated.add(id);
              this.#pool?.terminate(id);
            }
          }
        }
      }
    } catch (error) {
      if (!this.#stop.signal.aborted) this.app.logger.error(`Remote control stopped: ${error}`);
    }
  }
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
