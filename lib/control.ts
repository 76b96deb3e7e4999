/**
 * The remote control client (`celery/app/control.py`): broadcast commands to workers over
 * the `celery.pidbox` exchange and collect their replies from `reply.celery.pidbox`. Works
 * with celeriac and Python Celery workers alike.
 *
 * @module
 */

import type { AppContext } from "./app_context.ts";
import type { Broker } from "./brokers/broker.ts";
import type { Message } from "./protocol/message.ts";
import { clockOf } from "./_clock.ts";

/** The exchange commands go to. */
const PIDBOX_EXCHANGE = "celery.pidbox";
/** The exchange replies come back on. */
const REPLY_EXCHANGE = "reply.celery.pidbox";
/** Celery's `control_queue_ttl` (300 s) in milliseconds: TTL of node and reply queues. */
export const CONTROL_QUEUE_TTL = 300_000;
/** Celery's `control_queue_expires` (10 s) in milliseconds: expiry of node and reply queues. */
export const CONTROL_QUEUE_EXPIRES = 10_000;

/** One worker's reply. */
export interface NodeReply {
  /** The worker's node name. */
  hostname: string;
  /** What it replied (`{ok: ...}`, `{error: ...}`, or command data). */
  reply: unknown;
}

/** Options of {@linkcode Control.broadcast}. */
export interface BroadcastOptions {
  /** Only these nodes run the command. @default {every node} */
  destination?: string[] | null;
  /** Node name pattern, with `matcher`. */
  pattern?: string | null;
  /** `glob` or `pcre`, for `pattern`. */
  matcher?: "glob" | "pcre" | null;
  /**
   * Wait for replies.
   * @default {false}
   */
  reply?: boolean;
  /**
   * Milliseconds to wait for replies.
   * @default {1000}
   */
  timeout?: number;
  /** Stop after this many replies. @default {destination.length, else unlimited} */
  limit?: number;
  /** Stops waiting early. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Control.inspect}. */
export type InspectOptions = Pick<
  BroadcastOptions,
  "destination" | "pattern" | "matcher" | "timeout" | "limit" | "signal"
>;

/**
 * Replies as they arrive: iterate with `for await`, or `collect()` them as Celery's
 * `{hostname: reply}` dict, or `toArray()`. Single use.
 */
export class ReplyStream implements AsyncIterable<NodeReply> {
  #source: () => AsyncGenerator<NodeReply>;
  #used = false;

  /**
   * Wraps a reply generator.
   *
   * @param source Makes the generator (called once).
   */
  constructor(source: () => AsyncGenerator<NodeReply>) {
    this.#source = source;
  }

  /** Iterates the replies. */
  [Symbol.asyncIterator](): AsyncGenerator<NodeReply> {
    if (this.#used) throw new TypeError("Cannot iterate a ReplyStream twice");
    this.#used = true;
    return this.#source();
  }

  /**
   * Waits for every reply.
   *
   * @returns The replies in arrival order.
   */
  async toArray(): Promise<NodeReply[]> {
    const out: NodeReply[] = [];
    for await (const r of this) out.push(r);
    return out;
  }

  /**
   * Waits for every reply.
   *
   * @returns `{hostname: reply}`, as Python's `inspect().ping()` returns.
   */
  async collect(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for await (const r of this) out[r.hostname] = r.reply;
    return out;
  }
}

/** The inspect commands, bound to a destination and timeout. */
export class Inspect {
  #control: Control;
  #options: InspectOptions;

  /**
   * Use `app.control.inspect(options)`.
   *
   * @param control The control client.
   * @param options Destination and timeout.
   */
  constructor(control: Control, options: InspectOptions = {}) {
    this.#control = control;
    this.#options = options;
  }

  /**
   * Sends an inspect command by name.
   *
   * @param command The command.
   * @param args Its arguments.
   * @returns The replies.
   */
  call(command: string, args: Record<string, unknown> = {}): ReplyStream {
    return this.#control.replies(command, args, this.#options);
  }

  /**
   * Asks for: `{ok: "pong"}` from every worker.
   *
   * @returns The replies.
   */
  ping(): ReplyStream {
    return this.call("ping");
  }
  /**
   * Asks for: Worker statistics.
   *
   * @returns The replies.
   */
  stats(): ReplyStream {
    return this.call("stats");
  }
  /**
   * Asks for: Running tasks.
   *
   * @returns The replies.
   */
  active(): ReplyStream {
    return this.call("active");
  }
  /**
   * Asks for: Tasks received and waiting to run.
   *
   * @returns The replies.
   */
  reserved(): ReplyStream {
    return this.call("reserved");
  }
  /**
   * Asks for: Tasks waiting for their ETA.
   *
   * @returns The replies.
   */
  scheduled(): ReplyStream {
    return this.call("scheduled");
  }
  /**
   * Asks for: Revoked task ids.
   *
   * @returns The replies.
   */
  revoked(): ReplyStream {
    return this.call("revoked");
  }
  /**
   * Asks for the registered task names.
   *
   * @param taskinfoitems Task attributes to show (`rate_limit`, ...).
   * @returns The replies.
   */
  registered(...taskinfoitems: string[]): ReplyStream {
    return this.call("registered", { taskinfoitems });
  }
  /**
   * Asks for: The queues each worker consumes.
   *
   * @returns The replies.
   */
  activeQueues(): ReplyStream {
    return this.call("active_queues");
  }
  /**
   * Asks about tasks by id: `{id: [state, info]}` for the ones a worker holds.
   *
   * @param ids Task ids.
   * @returns The replies.
   */
  queryTask(...ids: string[]): ReplyStream {
    return this.call("query_task", { ids });
  }
  /**
   * Asks for: Each worker's configuration.
   *
   * @returns The replies.
   */
  conf(): ReplyStream {
    return this.call("conf", { with_defaults: false });
  }
  /**
   * Asks for: A bug-report text.
   *
   * @returns The replies.
   */
  report(): ReplyStream {
    return this.call("report");
  }
  /**
   * Asks for: Each worker's Lamport clock.
   *
   * @returns The replies.
   */
  clock(): ReplyStream {
    return this.call("clock");
  }
  /**
   * The mingle handshake.
   *
   * @param fromNode The asking node.
   * @param revoked Its revoked ids (`{id: seconds}`).
   * @returns Each worker's revoked ids and clock.
   */
  hello(fromNode: string, revoked: Record<string, number> = {}): ReplyStream {
    return this.call("hello", { from_node: fromNode, revoked });
  }
}

/** Options of {@linkcode Control}. */
export interface ControlOptions {
  /** The broker to use instead of the app's. */
  broker?: Broker;
}

/** Options of {@linkcode Control.revoke}. */
export interface ControlRevokeOptions extends Omit<BroadcastOptions, "signal"> {
  /** Also stop the task if it is running. @default {false} */
  terminate?: boolean;
  /** The signal name sent with terminate. @default {"SIGTERM"} */
  signal?: string;
}

/**
 * Remote control of workers: `app.control`.
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * await using app = new App({ broker: "memory://doc-control" });
 * const replies = await app.control.inspect({ timeout: 100 }).ping().collect();
 * console.assert(Object.keys(replies).length === 0); // no worker runs here
 * ```
 */
export class Control {
  /** The app. */
  readonly app: AppContext;
  #broker: Broker | undefined;

  /**
   * Creates the client; the app's broker connects on first use.
   *
   * @param app The app.
   * @param options Another broker.
   */
  constructor(app: AppContext, options: ControlOptions = {}) {
    this.app = app;
    this.#broker = options.broker;
  }

  async #getBroker(): Promise<Broker> {
    const broker = this.#broker ?? await this.app.getBroker();
    if (!broker.broadcast) {
      throw new TypeError(
        `Cannot use remote control: broker ${broker.url} has no broadcast (no fan-out, as on SQS: use Redis or RabbitMQ for inspect/control)`,
      );
    }
    return broker;
  }

  /**
   * The inspect commands.
   *
   * @param options Destination and timeout (ms, default 1000).
   * @returns The inspector.
   */
  inspect(options: InspectOptions = {}): Inspect {
    return new Inspect(this, options);
  }

  #message(
    command: string,
    args: Record<string, unknown>,
    options: BroadcastOptions,
    reply?: { ticket: string; oid: string },
  ): Message {
    const destination = options.destination ?? null;
    if (destination !== null && !Array.isArray(destination)) {
      throw new TypeError("Cannot broadcast: destination must be a list of node names");
    }
    const timeout = options.timeout ?? 1000;
    const body: Record<string, unknown> = {
      method: command,
      arguments: args,
      destination,
      pattern: options.pattern ?? null,
      matcher: options.matcher ?? null,
    };
    if (reply) {
      body.ticket = reply.ticket;
      body.reply_to = { exchange: REPLY_EXCHANGE, routing_key: reply.oid };
    }
    return {
      headers: {
        clock: clockOf(this.app).forward(),
        expires: reply ? Date.now() / 1000 + timeout / 1000 : 0,
      },
      properties: { delivery_mode: 1 },
      contentType: "application/json",
      contentEncoding: "utf-8",
      body: JSON.stringify(body),
    };
  }

  /**
   * Sends a command and streams the replies until the timeout, the limit, or `signal`.
   *
   * @param command The command.
   * @param args Its arguments.
   * @param options Destination, timeout, limit.
   * @returns The replies.
   */
  replies(
    command: string,
    args: Record<string, unknown> = {},
    options: Omit<BroadcastOptions, "reply"> = {},
  ): ReplyStream {
    return new ReplyStream(() => this.#replies(command, args, options));
  }

  async *#replies(
    command: string,
    args: Record<string, unknown>,
    options: Omit<BroadcastOptions, "reply">,
  ): AsyncGenerator<NodeReply> {
    const broker = await this.#getBroker();
    if (!broker.consumeDirect || !broker.publishDirect) {
      throw new TypeError(`Cannot collect replies: broker ${broker.url} has no reply queues`);
    }
    const timeout = options.timeout ?? 1000;
    if (!(timeout >= 0)) {
      throw new RangeError(`Cannot wait for replies: timeout must be >= 0 ms, got ${timeout}`);
    }
    const limit = options.limit ?? (options.destination?.length || Infinity);
    const oid = crypto.randomUUID();
    const ticket = crypto.randomUUID();
    const message = this.#message(command, args, options, { ticket, oid });
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([stop.signal, options.signal]) : stop.signal;
    const ready = Promise.withResolvers<void>();
    const it = broker.consumeDirect(REPLY_EXCHANGE, oid, {
      queue: `${oid}.${REPLY_EXCHANGE}`,
      signal,
      onReady: ready.resolve,
      expires: CONTROL_QUEUE_EXPIRES,
      messageTtl: CONTROL_QUEUE_TTL,
    })[Symbol.asyncIterator]();
    let next = it.next();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const first = await Promise.race([ready.promise.then(() => null), next]);
      if (first?.done) return;
      await broker.broadcast!({ exchange: PIDBOX_EXCHANGE, routingKey: "", message });
      timer = setTimeout(() => stop.abort(), timeout);
      let count = 0;
      while (count < limit) {
        const r = await next;
        if (r.done) return;
        next = it.next();
        const m = r.value;
        if (m.headers.ticket !== undefined && m.headers.ticket !== ticket) continue;
        const expires = m.headers.expires;
        if (typeof expires === "number" && expires > 0 && Date.now() / 1000 > expires) continue;
        clockOf(this.app).adjust(m.headers.clock);
        let body: unknown;
        try {
          body = JSON.parse(m.body);
        } catch {
          continue;
        }
        if (body === null || typeof body !== "object" || Array.isArray(body)) continue;
        for (const [hostname, reply] of Object.entries(body)) {
          count++;
          yield { hostname, reply };
        }
      }
    } finally {
      clearTimeout(timer);
      stop.abort();
      await next.catch(() => undefined);
      await it.return?.(undefined);
    }
  }

  /**
   * Sends a command to workers. With `reply: true`, waits `timeout` ms and returns the
   * replies as a list of `{hostname: reply}` (Celery's shape); otherwise returns `[]` at once.
   *
   * @param command The command, e.g. `rate_limit`.
   * @param args Its arguments.
   * @param options Destination, reply, timeout.
   * @returns The replies.
   */
  async broadcast(
    command: string,
    args: Record<string, unknown> = {},
    options: BroadcastOptions = {},
  ): Promise<Record<string, unknown>[]> {
    if (options.reply) {
      const out: Record<string, unknown>[] = [];
      for await (const r of this.replies(command, args, options)) {
        out.push({ [r.hostname]: r.reply });
      }
      return out;
    }
    const broker = await this.#getBroker();
    await broker.broadcast!({
      exchange: PIDBOX_EXCHANGE,
      routingKey: "",
      message: this.#message(command, args, options),
    });
    return [];
  }

  /**
   * Pings workers.
   *
   * @param options Destination and timeout.
   * @returns `[{hostname: {ok: "pong"}}]`.
   */
  ping(options: InspectOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("ping", {}, { timeout: 1000, ...options, reply: true });
  }

  /**
   * Revokes tasks: workers will not run them, and with `terminate` stop them if running.
   *
   * @param taskId One id or several.
   * @param options Terminate, signal, destination, reply.
   * @returns The replies when `reply` is set.
   */
  revoke(
    taskId: string | string[],
    options: ControlRevokeOptions = {},
  ): Promise<Record<string, unknown>[]> {
    const { terminate = false, signal = "SIGTERM", ...rest } = options;
    return this.broadcast("revoke", { task_id: taskId, terminate, signal }, rest);
  }

  /**
   * Revokes tasks by stamp (Celery 5.3+'s `revoke_by_stamped_headers`): workers will not run a
   * task carrying one of the stamp values (any value of a list stamp), and with `terminate`
   * stop the running ones. Workers keep the revoked stamps in memory only, as Celery.
   *
   * @param headers Stamp name → value or list of values: `{ monitoring_id: ["m-1", "m-2"] }`.
   * @param options Terminate, signal, destination, reply.
   * @returns The replies when `reply` is set.
   * @example
   * ```ts ignore
   * await app.control.revokeByStampedHeaders({ monitoring_id: "m-1" }, { terminate: true });
   * ```
   */
  revokeByStampedHeaders(
    headers: Record<string, unknown>,
    options: ControlRevokeOptions = {},
  ): Promise<Record<string, unknown>[]> {
    const { terminate = false, signal = "SIGTERM", ...rest } = options;
    return this.broadcast("revoke_by_stamped_headers", { headers, terminate, signal }, rest);
  }

  /**
   * Stops running tasks (revoke with terminate).
   *
   * @param taskId One id or several.
   * @param options Signal, destination, reply.
   * @returns The replies when `reply` is set.
   */
  terminate(
    taskId: string | string[],
    options: Omit<ControlRevokeOptions, "terminate"> = {},
  ): Promise<Record<string, unknown>[]> {
    return this.revoke(taskId, { ...options, terminate: true });
  }

  /**
   * Sets a task's rate limit on workers (`"10/s"`, `"5/m"`; `null` removes it).
   *
   * @param taskName The task.
   * @param rate The rate.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  rateLimit(
    taskName: string,
    rate: string | number | null,
    options: BroadcastOptions = {},
  ): Promise<Record<string, unknown>[]> {
    return this.broadcast("rate_limit", { task_name: taskName, rate_limit: rate }, options);
  }

  /**
   * Sets a task's time limits on workers, in seconds.
   *
   * @param taskName The task.
   * @param limits Soft and hard limits.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  timeLimit(
    taskName: string,
    limits: { soft?: number | null; hard?: number | null },
    options: BroadcastOptions = {},
  ): Promise<Record<string, unknown>[]> {
    return this.broadcast(
      "time_limit",
      { task_name: taskName, soft: limits.soft ?? null, hard: limits.hard ?? null },
      options,
    );
  }

  /**
   * Turns task events on.
   *
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  enableEvents(options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("enable_events", {}, options);
  }

  /**
   * Turns task events off.
   *
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  disableEvents(options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("disable_events", {}, options);
  }

  /**
   * Tells workers to consume a queue too.
   *
   * @param queue The queue.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  addConsumer(queue: string, options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("add_consumer", { queue }, options);
  }

  /**
   * Tells workers to stop consuming a queue.
   *
   * @param queue The queue.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  cancelConsumer(
    queue: string,
    options: BroadcastOptions = {},
  ): Promise<Record<string, unknown>[]> {
    return this.broadcast("cancel_consumer", { queue }, options);
  }

  /**
   * Grows worker pools.
   *
   * @param n By how many.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  poolGrow(n = 1, options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("pool_grow", { n }, options);
  }

  /**
   * Shrinks worker pools.
   *
   * @param n By how many.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  poolShrink(n = 1, options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("pool_shrink", { n }, options);
  }

  /**
   * Sets worker pool bounds.
   *
   * @param max Most slots.
   * @param min Fewest slots.
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  autoscale(
    max: number,
    min: number,
    options: BroadcastOptions = {},
  ): Promise<Record<string, unknown>[]> {
    return this.broadcast("autoscale", { max, min }, options);
  }

  /**
   * Asks workers to send a heartbeat event now.
   *
   * @param options Destination.
   * @returns When sent.
   */
  heartbeat(options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("heartbeat", {}, options);
  }

  /**
   * Shuts workers down (warm). Use `destination` to pick them.
   *
   * @param options Destination, reply.
   * @returns The replies when `reply` is set.
   */
  shutdown(options: BroadcastOptions = {}): Promise<Record<string, unknown>[]> {
    return this.broadcast("shutdown", {}, options);
  }

  /**
   * Removes every waiting message from queues.
   *
   * @param queues The queues. @default {[app.conf.defaultQueue]}
   * @returns How many messages were removed.
   */
  async purge(queues: string[] = [this.app.conf.defaultQueue]): Promise<number> {
    const broker = this.#broker ?? await this.app.getBroker();
    let n = 0;
    for (const q of queues) n += await broker.purge(q);
    return n;
  }
}
