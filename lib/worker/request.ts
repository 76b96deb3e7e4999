/**
 * One delivery's life: admit (decode, unknown task, too many deliveries, revoked, expired,
 * not yet due, rate limit) → run on the pool → store the outcome and send follow-ups →
 * settle. Whatever throws on the way, {@linkcode Request.process} ends in exactly one settle,
 * decided by the table in `settle.ts`.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { Backend, ResultMeta } from "../backends/backend.ts";
import type { Broker, Delivery } from "../brokers/broker.ts";
import { NotRegistered, TaskRevokedError, TimeLimitExceeded, WorkerLostError } from "../errors.ts";
import { errorToInfo, type ExceptionInfo, shapeToInfo } from "../protocol/exceptions.ts";
import { pythonTraceback } from "../protocol/traceback.ts";
import {
  decodeTask,
  decodeTaskHeaders,
  type Message,
  pyRepr,
  type TaskRequest,
  toIso,
} from "../protocol/message.ts";
import {
  canDecompress,
  compressionName,
  isCompressed,
  SUPPORTED_COMPRESSION,
} from "../protocol/compression.ts";
import { makeMeta } from "../protocol/result_meta.ts";
import type { State } from "../protocol/states.ts";
import type { AppEventDetails, AppEventType } from "../signals.ts";
import { delay } from "../_signal.ts";
import type { HeldRequest } from "./control.ts";
import type { RevokingStamp } from "./revoked_stamps.ts";
import type { FollowUps } from "./follow_ups.ts";
import type { ErrorShape, Outcome, RunRequest } from "./outcome.ts";
import type { Pool } from "./pool.ts";
import { type AckOptions, decideSettle, type Ending } from "./settle.ts";
import { type RunSpan, startPublishSpan, startRunSpan } from "../observe/tracing.ts";

/** What a request needs from its consumer. */
export interface RequestHost {
  /** The app (tasks, configuration, logger, signals). */
  readonly app: App;
  /** The broker the delivery came from. */
  readonly broker: Broker;
  /** Where results go. */
  readonly backend: Backend;
  /** Where tasks run. */
  readonly pool: Pool;
  /** Callbacks, chains, chords, errbacks. */
  readonly followUps: FollowUps;
  /** This worker's node name. */
  readonly hostname: string;
  /** Aborts on warm shutdown: tasks not started yet go back to the queue. */
  readonly stopping: AbortSignal;
  /** Aborts on cold shutdown. */
  readonly cold: AbortSignal;
  /** ETAs further than this go back to the broker instead of waiting here, in ms. */
  readonly etaHoldMs: number;
  /** The worker's hard and soft time limits, in seconds. */
  readonly timeLimits: { hard: number | null; soft: number | null };
  /** Whether the id was revoked. */
  isRevoked(id: string): boolean;
  /** The stamp of these headers that was revoked (`revoke_by_stamped_headers`), or `null`. */
  revokedStamp(headers: Readonly<Record<string, unknown>>): RevokingStamp | null;
  /** Waits for the task's rate limits: `go`, a later `eta` to reschedule to, or `stopped`. */
  rateLimit(req: TaskRequest): Promise<{ go: true } | { go: false; eta: Date | null }>;
  /** Waits for a free task slot; false when the worker stops first. */
  acquire(): Promise<boolean>;
  /** Gives a slot back. */
  release(): void;
  /** Dispatches a signal with the worker's host name. */
  event<K extends AppEventType>(type: K, detail: Omit<AppEventDetails[K], "hostname">): void;
  /** Counts results that could not be stored (logged each time). */
  storeFailed(): void;
}

interface Finish {
  ending: Ending;
  reason?: string;
  state?: State;
}

// Celery's defaults where the task is unknown (or the message unreadable).
const DEFAULT_ACKS: AckOptions = {
  acksLate: false,
  acksOnFailureOrTimeout: true,
  rejectOnWorkerLost: false,
  cold: false,
  exhausted: false,
};

/** One delivery, from admission to its settle. */
export class Request {
  /** The delivery. */
  readonly delivery: Delivery;
  /** The decoded task message, once decoded. */
  task: TaskRequest | null = null;
  /** What remote control (`inspect active/reserved/scheduled`) shows of it. */
  held: HeldRequest | null = null;
  #host: RequestHost;
  #acks: Omit<AckOptions, "cold" | "exhausted"> = DEFAULT_ACKS;
  #acked = false;
  #settled = false;
  #unstored = false;
  #terminate = new AbortController();
  #holdsSlot = false;
  // The early ack sent when a run sent ahead started (see #run).
  #startAck: Promise<void> | undefined;

  /**
   * Creates the request; {@linkcode Request.process} runs it.
   *
   * @param delivery The delivery.
   * @param host The consumer.
   */
  constructor(delivery: Delivery, host: RequestHost) {
    this.delivery = delivery;
    this.#host = host;
  }

  /** Whether the task is running now. */
  get running(): boolean {
    return this.held?.state === "active";
  }

  /** Stops the running task (`revoke(terminate=True)`); it ends REVOKED. */
  terminate(): void {
    this.#terminate.abort();
  }

  /**
   * Runs the whole lifecycle. Never rejects: what goes wrong inside is logged, and the
   * delivery is settled exactly once.
   *
   * @returns When the delivery is settled.
   */
  async process(): Promise<void> {
    let finish: Finish;
    try {
      finish = await this.#admit();
    } catch (error) {
      const what = this.task ? `${this.task.name}[${this.task.id}]` : "a message";
      this.#host.app.logger.error(`Internal error handling ${what}: ${error}`, { error });
      finish = { ending: "internal", reason: `internal error: ${error}` };
    } finally {
      this.#release();
    }
    if (finish.ending !== "internal" && this.#unstored && !this.#acked) {
      finish = { ending: "unstored", reason: "its result could not be stored" };
    }
    await this.#settle(finish);
    if (finish.state) {
      const req = this.task!;
      this.#event("taskPostrun", { id: req.id, name: req.name, state: finish.state });
    }
  }

  // Admission: every way a message can end before it runs.
  async #admit(): Promise<Finish> {
    const host = this.#host;
    const { app } = host;
    const delivery = this.delivery;
    let req: TaskRequest;
    try {
      req = decodeTask(delivery.message);
    } catch (error) {
      const reason = `malformed message: ${(error as Error).message}`;
      await this.#unreadableBody();
      return { ending: "malformed", reason };
    }
    this.task = req;
    const task = app.tasks.get(req.name);
    if (!task) {
      app.logger.error(`Received unregistered task of type '${req.name}' (id ${req.id})`);
      this.#event("taskUnknown", { id: req.id, name: req.name, queue: delivery.queue });
      const exc = errorToInfo(new NotRegistered(req.name));
      await this.#store(makeMeta(req.id, "FAILURE", exc, this.#lineage()));
      await host.followUps.chordPart(req, "FAILURE", exc);
      return { ending: "unregistered", reason: `unregistered task '${req.name}'` };
    }
    const o = task.options;
    this.#acks = {
      acksLate: o.acksLate ?? app.conf.acksLate,
      acksOnFailureOrTimeout: o.acksOnFailureOrTimeout ?? true,
      rejectOnWorkerLost: o.rejectOnWorkerLost ?? false,
    };
    if (delivery.deliveryCount > app.conf.maxDeliveries) {
      const reason =
        `delivered ${delivery.deliveryCount} times (maxDeliveries ${app.conf.maxDeliveries})`;
      const exc = errorToInfo(
        new WorkerLostError(`Task ${req.name}[${req.id}] dead-lettered: ${reason}`),
      );
      await this.#store(makeMeta(req.id, "FAILURE", exc, this.#lineage()));
      return { ending: "poison", reason };
    }
    const held: HeldRequest = this.held = {
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
    const revoked = this.#checkRevoked(req);
    if (revoked) return await revoked;
    if (req.expires && req.expires.getTime() <= Date.now()) return await this.#revoked("expired");
    // Far ETAs go back to the broker until due: no worker holds them, nothing runs twice, and
    // `task-received` is sent once, when the message comes back due (as Celery, revoked and
    // expired tasks send none).
    const wait = req.eta ? req.eta.getTime() - Date.now() : 0;
    if (wait > host.etaHoldMs) return await this.#reschedule(req.eta!);
    this.#event("taskReceived", {
      id: req.id,
      name: req.name,
      args: req.args,
      kwargs: req.kwargs,
      headers: req.headers,
      rootId: req.rootId,
      parentId: req.parentId,
      retries: req.retries,
      eta: req.eta,
      expires: req.expires,
    });
    if (req.eta) {
      held.state = "scheduled";
      if (wait > 0 && !(await this.#sleep(wait))) return { ending: "shutdown" };
      held.state = "reserved";
    }
    const limit = await host.rateLimit(req);
    if (!limit.go) return limit.eta ? await this.#reschedule(limit.eta) : { ending: "shutdown" };
    if (!(await host.acquire())) return { ending: "shutdown" };
    this.#holdsSlot = true;
    const revokedNow = this.#checkRevoked(req);
    if (revokedNow) return await revokedNow;
    return await this.#run(req);
  }

  async #run(req: TaskRequest): Promise<Finish> {
    const host = this.#host;
    const { app } = host;
    const delivery = this.delivery;
    const task = app.tasks.get(req.name)!;
    const o = task.options;
    const ignoreResult = req.ignoreResult || (o.ignoreResult ?? false);
    const storeErrors = !ignoreResult || (o.storeErrorsEvenIfIgnored ?? false);
    const held = this.held!;
    held.state = "active";
    held.timeStart = Date.now();
    // Early ack: before the run starts. A pool that sends runs ahead (`lookahead`) starts them
    // later, in a Web Worker: those are acked when their Web Worker takes them, as Celery's
    // prefork pool acks when its child accepts a job, so a run that never started is never
    // acked and comes back if the worker dies.
    const ackOnStart = !this.#acks.acksLate && (host.pool.lookahead ?? 0) > 0;
    if (!this.#acks.acksLate && !ackOnStart) await this.#earlyAck(req);
    if (o.trackStarted && !ignoreResult) {
      await this.#store(makeMeta(req.id, "STARTED", { pid: Deno.pid, hostname: host.hostname }));
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
        hostname: host.hostname,
        isEager: false,
        replyTo: req.replyTo,
        embed: req.embed,
      },
    };
    // The CONSUMER span (null when tracing is off) is active through the run and the
    // follow-ups, and reaches the pool (a Web Worker too) as the run's traceparent.
    const span = startRunSpan({
      name: req.name,
      id: req.id,
      queue: delivery.queue,
      brokerUrl: app.conf.brokerUrl,
      retries: req.retries,
      headers: req.headers,
      hostname: host.hostname,
    });
    const flags = { ignoreResult, storeErrors, ackOnStart };
    if (!span) return this.#execute(req, run, flags, null);
    run.context.headers = span.carrier(req.headers);
    let state: State | undefined;
    try {
      const finish = await span.within(() => this.#execute(req, run, flags, span));
      state = finish.state;
      return finish;
    } finally {
      span.end(state);
    }
  }

  async #execute(
    req: TaskRequest,
    run: RunRequest,
    flags: { ignoreResult: boolean; storeErrors: boolean; ackOnStart: boolean },
    span: RunSpan | null,
  ): Promise<Finish> {
    const { ackOnStart } = flags;
    const host = this.#host;
    const o = host.app.tasks.get(req.name)!.options;
    this.#event("taskPrerun", { id: req.id, name: req.name, args: req.args, kwargs: req.kwargs });
    const [hard, soft] = req.timeLimit;
    const outcome = await host.pool.run(run, {
      hardLimit: hard ?? o.timeLimit ?? host.timeLimits.hard,
      softLimit: soft ?? o.softTimeLimit ?? host.timeLimits.soft,
      onState: (state, meta) =>
        host.backend.store(req.id, makeMeta(req.id, state, meta), { replyTo: req.replyTo }),
      signal: this.#terminate.signal,
      onStart: ackOnStart ? () => void (this.#startAck = this.#earlyAck(req)) : undefined,
    });
    if (this.#startAck) await this.#startAck;
    // The slot frees as soon as the pool returns: the next task starts while this one's
    // result is stored and its message settled (broker round trips, not pool work).
    this.#release();
    if (span) {
      if (outcome.kind === "failure" || outcome.kind === "lost") span.fail(outcome.error);
      else if (outcome.kind === "timeout") {
        span.fail({
          name: "TimeLimitExceeded",
          message: `Hard time limit (${outcome.seconds}s) exceeded`,
        });
      }
    }
    if (this.#terminate.signal.aborted) {
      this.#event("taskRevoked", { id: req.id, name: req.name, terminated: true, expired: false });
      const exc = errorToInfo(new TaskRevokedError("terminated"));
      await this.#store(makeMeta(req.id, "REVOKED", exc, this.#lineage()));
      return { ending: "terminated", state: "REVOKED" };
    }
    return await this.#outcome(req, outcome, flags);
  }

  // What the run produced: store it, send its follow-ups, and say how the message ends.
  async #outcome(
    req: TaskRequest,
    outcome: Outcome,
    { ignoreResult, storeErrors }: { ignoreResult: boolean; storeErrors: boolean },
  ): Promise<Finish> {
    const host = this.#host;
    const { app } = host;
    switch (outcome.kind) {
      case "success": {
        // Follow-ups go out before the result is stored, as Celery's tracer does, so that the
        // stored `children` lists them.
        const children = await host.followUps.succeeded(req, outcome.value);
        if (!ignoreResult) {
          const meta = makeMeta(req.id, "SUCCESS", outcome.value, this.#lineage());
          meta.children = [...(outcome.children ?? []), ...children];
          const unencodable = await this.#store(meta, { encodeErrors: true });
          if (unencodable) {
            const text =
              `Task ${req.name}[${req.id}] returned a value that cannot be stored: ${unencodable.message}`;
            app.logger.error(text);
            await this.#fail(req, encodeErrorInfo(unencodable), null, true);
            return { ending: "failure", state: "FAILURE" };
          }
        }
        await host.followUps.chordPart(req, "SUCCESS", outcome.value);
        this.#event("taskSuccess", {
          id: req.id,
          name: req.name,
          result: outcome.value,
          runtime: outcome.runtime,
        });
        return { ending: "success", state: "SUCCESS" };
      }
      case "retry": {
        const eta = outcome.eta
          ? new Date(outcome.eta)
          : new Date(Date.now() + (outcome.countdown ?? 0) * 1000);
        const message = retryMessage(this.delivery.message, req, eta);
        const priority = { priority: req.priority ?? 0 };
        const span = startPublishSpan({
          name: req.name,
          id: req.id,
          queue: this.delivery.queue,
          brokerUrl: app.conf.brokerUrl,
          retries: req.retries + 1,
        }, message);
        try {
          if (eta.getTime() > Date.now()) {
            await host.broker.schedule(this.delivery.queue, message, eta, priority);
          } else {
            await host.broker.publish(this.delivery.queue, message, priority);
          }
        } catch (error) {
          span?.fail(error);
          throw error;
        } finally {
          span?.end();
        }
        const exc = outcome.error
          ? shapeToInfo(outcome.error)
          : errorToInfo(new Error("Retry in the future"));
        const traceback = outcome.error ? tracebackOf(outcome.error, exc) : null;
        if (!ignoreResult) {
          await this.#store(makeMeta(req.id, "RETRY", exc, { ...this.#lineage(), traceback }));
        }
        app.logger.info(`Task ${req.name}[${req.id}] retry in ${eta.getTime() - Date.now()} ms`);
        this.#event("taskRetry", {
          id: req.id,
          name: req.name,
          eta,
          retries: req.retries,
          reason: outcome.error ? exc : null,
          traceback,
        });
        return { ending: "retry", state: "RETRY" };
      }
      case "reject":
        return {
          ending: outcome.requeue ? "reject-requeue" : "reject",
          reason: `the task raised Reject: ${outcome.error.message}`,
          state: "REJECTED",
        };
      case "ignore":
        return { ending: "ignore", state: "IGNORED" };
      case "unstarted":
        // Handed back by a warm shutdown before it started: the message goes back to the queue.
        return { ending: "shutdown" };
      case "lost": {
        const settle = decideSettle("lost", this.#acked, this.#ackOptions());
        if (settle === "requeue") {
          return { ending: "lost", reason: outcome.error.message, state: "REJECTED" };
        }
        // A message that keeps killing its worker is dead-lettered instead of looping.
        const count = this.delivery.deliveryCount;
        const reason = settle === "dead-letter" && this.#acks.rejectOnWorkerLost
          ? `Task ${req.name}[${req.id}] dead-lettered: its worker was lost on each of ${count} deliveries (maxDeliveries ${app.conf.maxDeliveries})`
          : outcome.error.message;
        const exc = errorToInfo(new WorkerLostError(reason));
        await this.#fail(req, exc, tracebackOf(outcome.error, exc), storeErrors);
        return { ending: "lost", reason, state: "FAILURE" };
      }
      case "timeout": {
        app.logger.error(
          `Hard time limit (${outcome.seconds}s) exceeded for ${req.name}[${req.id}]`,
        );
        const exc = errorToInfo(new TimeLimitExceeded(outcome.seconds));
        await this.#fail(req, exc, null, storeErrors);
        return { ending: "timeout", state: "FAILURE" };
      }
      case "failure": {
        const text =
          `Task ${req.name}[${req.id}] raised ${outcome.error.name}: ${outcome.error.message}`;
        const exc = shapeToInfo(outcome.error);
        const traceback = tracebackOf(outcome.error, exc);
        const fields = { task_id: req.id, task_name: req.name };
        if (outcome.error.expected) app.logger.info(text, fields);
        else app.logger.error(text, { ...fields, traceback });
        await this.#fail(req, exc, traceback, storeErrors, outcome.children);
        return { ending: "failure", state: "FAILURE" };
      }
    }
  }

  async #fail(
    req: TaskRequest,
    exc: ExceptionInfo,
    traceback: string | null,
    store: boolean,
    children: unknown[] = [],
  ) {
    if (store) {
      const meta = makeMeta(req.id, "FAILURE", exc, { ...this.#lineage(), traceback });
      meta.children = children;
      await this.#store(meta);
    }
    this.#event("taskFailure", { id: req.id, name: req.name, exception: exc, traceback });
    await this.#host.followUps.chordPart(req, "FAILURE", exc);
    await this.#host.followUps.failed(req, exc, traceback);
  }

  // A body compressed with a method celeriac cannot inflate (bzip2, lzma, zstd): v2 headers
  // are not compressed, so the task is known; its FAILURE is stored (and `task-failed`
  // sent) so the client gets an error instead of waiting, then the message is dead-lettered
  // as any malformed one. Its chord, links and chain are in the unread body: not followed.
  async #unreadableBody(): Promise<void> {
    const message = this.delivery.message;
    const headers = message?.headers;
    if (!isCompressed(headers) || canDecompress(headers!.compression)) return;
    let req: TaskRequest;
    try {
      req = decodeTaskHeaders(message);
    } catch {
      return;
    }
    this.task = req;
    const method = compressionName(headers!.compression);
    const exc: ExceptionInfo = {
      exc_type: "DecodeError",
      exc_message: [
        `Task ${req.name}[${req.id}] has a body compressed with ${method}, which celeriac ` +
        `workers cannot decompress (supported: ${SUPPORTED_COMPRESSION}); send it uncompressed ` +
        `or with compression='gzip'`,
      ],
      exc_module: "kombu.exceptions",
    };
    if (!req.ignoreResult) await this.#store(makeMeta(req.id, "FAILURE", exc, this.#lineage()));
    this.#event("taskFailure", { id: req.id, name: req.name, exception: exc, traceback: null });
  }

  // Revoked by id or by a stamp, as Celery's `Request.revoked()`: the discard, or `null`.
  #checkRevoked(req: TaskRequest): Promise<Finish> | null {
    if (this.#host.isRevoked(req.id)) return this.#revoked("revoked");
    const stamp = this.#host.revokedStamp(req.headers);
    return stamp ? this.#revoked("revoked", stamp) : null;
  }

  async #revoked(why: "revoked" | "expired", stamp?: RevokingStamp): Promise<Finish> {
    const req = this.task!;
    const by = stamp ? ` (revoked by header: ${pyRepr({ [stamp.name]: stamp.value })})` : "";
    this.#host.app.logger.info(`Discarding ${why} task ${req.name}[${req.id}]${by}`);
    this.#event("taskRevoked", {
      id: req.id,
      name: req.name,
      expired: why === "expired",
      terminated: false,
    });
    const exc = errorToInfo(new TaskRevokedError(why));
    if (!req.ignoreResult) await this.#store(makeMeta(req.id, "REVOKED", exc));
    await this.#host.followUps.chordPart(req, "REVOKED", exc);
    return { ending: "revoked" };
  }

  // Hands the message back to the broker until `eta`; this delivery is then done.
  async #reschedule(eta: Date): Promise<Finish> {
    const req = this.task!;
    await this.#host.broker.schedule(this.delivery.queue, this.delivery.message, eta, {
      priority: req.priority ?? 0,
    });
    return { ending: "rescheduled" };
  }

  // Carries out the one settle. A failure here is logged: the broker redelivers the message
  // once its lease runs out, so nothing is lost.
  async #settle(finish: Finish): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    const host = this.#host;
    const delivery = this.delivery;
    const settle = decideSettle(finish.ending, this.#acked, this.#ackOptions());
    try {
      switch (settle) {
        case "ack":
          await delivery.ack();
          break;
        case "requeue":
          if (this.#acked) await host.broker.publish(delivery.queue, delivery.message);
          else await delivery.reject({ requeue: true });
          break;
        case "dead-letter": {
          const req = this.task;
          const what = req ? `Task ${req.name}[${req.id}]` : `A message from ${delivery.queue}`;
          const reason = finish.reason ?? finish.ending;
          host.app.logger.error(`${what} dead-lettered: ${reason}`);
          this.#event("taskRejected", {
            id: req?.id ?? null,
            name: req?.name ?? null,
            queue: delivery.queue,
            requeue: false,
            reason,
            ...(req ? {} : { message: delivery.message }),
          });
          await delivery.reject({ requeue: false, reason });
          break;
        }
        case "none":
          break;
      }
    } catch (error) {
      host.app.logger.error(
        `Cannot ${settle} the message of ${this.task?.id ?? "a malformed task"}: ${error}`,
      );
    }
    if (settle === "requeue" && finish.ending === "reject-requeue") {
      const req = this.task!;
      this.#event("taskRejected", {
        id: req.id,
        name: req.name,
        queue: delivery.queue,
        requeue: true,
        reason: finish.reason ?? "Reject",
      });
    }
  }

  #ackOptions(): AckOptions {
    return {
      ...this.#acks,
      cold: this.#host.cold.aborted,
      exhausted: this.delivery.deliveryCount >= this.#host.app.conf.maxDeliveries,
    };
  }

  // Stores a meta. A failed store is logged and counted (and, with late ack, keeps the
  // message from being acked). With `encodeErrors`, a value that cannot be encoded is
  // returned instead, so the caller can store a FAILURE in its place.
  async #store(
    meta: ResultMeta,
    { encodeErrors = false }: { encodeErrors?: boolean } = {},
  ): Promise<Error | null> {
    const req = this.task!;
    try {
      await this.#host.backend.store(req.id, meta, { replyTo: req.replyTo });
      return null;
    } catch (error) {
      if (encodeErrors && isEncodeError(error)) return error as Error;
      this.#unstored = true;
      this.#host.storeFailed();
      this.#host.app.logger.error(
        `Cannot store the ${meta.status} result of ${req.name}[${req.id}]: ${error}`,
      );
      return null;
    }
  }

  #lineage(): { parentId: string | null; groupId: string | null } {
    return { parentId: this.task?.parentId ?? null, groupId: this.task?.group ?? null };
  }

  // The early ack. A failed one is logged and the task runs anyway: the ack may or may not
  // have reached the broker, and an accepted task runs at least once (it may run again if the
  // message comes back).
  async #earlyAck(req: TaskRequest): Promise<void> {
    this.#acked = true;
    if (this.held) this.held.acknowledged = true;
    try {
      await this.delivery.ack();
    } catch (error) {
      this.#host.app.logger.warn(
        `Early ack of ${req.name}[${req.id}] failed, running it anyway: ${error}`,
      );
    }
  }

  #release(): void {
    if (!this.#holdsSlot) return;
    this.#holdsSlot = false;
    this.#host.release();
  }

  async #sleep(ms: number): Promise<boolean> {
    try {
      await delay(ms, this.#host.stopping);
      return true;
    } catch {
      return false;
    }
  }

  #event<K extends AppEventType>(type: K, detail: Omit<AppEventDetails[K], "hostname">): void {
    this.#host.event(type, detail);
  }
}

// A value JSON (or kombu's codec) cannot hold: a cycle, a function, a bigint on an old path.
function isEncodeError(error: unknown): boolean {
  return error instanceof Error && (error.name === "EncodeError" || error instanceof TypeError);
}

function encodeErrorInfo(error: Error): ExceptionInfo {
  return { exc_type: "EncodeError", exc_message: [error.message], exc_module: "kombu.exceptions" };
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

/** The stored traceback: Python's layout with the JS frames, ending in the stored type. */
function tracebackOf(error: ErrorShape, exc: ExceptionInfo): string {
  const message = exc.exc_message.length === 1 && typeof exc.exc_message[0] === "string"
    ? exc.exc_message[0]
    : error.message;
  return pythonTraceback({
    name: exc.exc_type,
    message,
    stack: error.stack,
    module: exc.exc_module,
  });
}
