/**
 * The worker's remote control node ("pidbox", `kombu/pidbox.py:Node` and
 * `celery/worker/control.py`): it listens on the `celery.pidbox` fanout exchange, runs the
 * inspect and control commands Celery's tools send, and replies through the
 * `reply.celery.pidbox` direct exchange. It also owns the worker's event dispatcher
 * (heartbeats, task events), mingle at start-up, and the optional revoke state file.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { BroadcastMessage, Broker, ScheduledMessage } from "../brokers/broker.ts";
import { clockOf, type LamportClock } from "../_clock.ts";
import { decodeTask, pyRepr, requestReprs, toIso } from "../protocol/message.ts";
import { redact } from "../connect.ts";
import { schemeInfo } from "../transport/registry.ts";
import type { Pool } from "./pool.ts";
import type { RevokedSet } from "./revoked.ts";
import { readRevokeHeaders } from "./revoked_stamps.ts";
import { EventDispatcher, SOFTWARE, systemName } from "./events.ts";
import { Control, CONTROL_QUEUE_EXPIRES, CONTROL_QUEUE_TTL } from "../control.ts";
import { truthy } from "../protocol/truthy.ts";

/** The exchange commands arrive on. */
export const PIDBOX_EXCHANGE = "celery.pidbox";
/** The exchange replies go to. */
export const REPLY_EXCHANGE = "reply.celery.pidbox";

/** A task this worker holds. */
export interface HeldRequest {
  /** Task id. */
  id: string;
  /** Task name. */
  name: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** Running, waiting for a slot, or waiting for its ETA. */
  state: "active" | "reserved" | "scheduled";
  /** The queue it came from. */
  queue: string;
  /** When it started running, ms since the epoch. */
  timeStart: number | null;
  /** Whether its message is acked. */
  acknowledged: boolean;
  /** Its ETA. */
  eta: Date | null;
  /** Its priority. */
  priority: number | null;
  /** Whether the broker delivered it before. */
  redelivered: boolean;
}

/** What the control node needs from the worker; {@linkcode Consumer} provides it. */
export interface ControlledWorker {
  /** The app. */
  readonly app: App;
  /** The node name. */
  readonly hostname: string;
  /** Queues consumed now. */
  readonly queues: string[];
  /** Tasks finished. */
  readonly processed: number;
  /** Tasks running. */
  readonly active: number;
  /** Revoked ids. */
  readonly revokedSet: RevokedSet;
  /** The pool, once started. */
  readonly pool: Pool | undefined;
  /** `workers` or `inline`. */
  readonly poolKind: string;
  /** Messages reserved at most. */
  readonly prefetchCount: number;
  /** Tasks held now. */
  requests(): HeldRequest[];
  /** Revokes ids; with `terminate`, stops the running ones; returns the ids terminated. */
  revoke(ids: string[], options?: { terminate?: boolean; signal?: string }): string[];
  /**
   * Revokes by stamp (name → values); with `terminate`, stops the running ones; returns the
   * stamps of those terminated (name → values).
   */
  revokeStamps(
    stamps: Record<string, unknown[]>,
    options?: { terminate?: boolean; signal?: string },
  ): Record<string, unknown[]>;
  /** Starts consuming a queue too. */
  addQueue?(queue: string): void;
  /** Stops consuming a queue. */
  cancelQueue?(queue: string): void;
  /**
   * Changes the autoscaler's bounds (`null` keeps one); `undefined` when the worker runs
   * without `--autoscale`.
   */
  updateAutoscale?(
    max: number | null,
    min: number | null,
  ): Promise<{ max: number; min: number }> | undefined;
  /** Sets a task's rate limit (when the worker enforces rate limits). */
  setRateLimit?(taskName: string, rate: string | null): void;
  /** Starts a warm shutdown. */
  close(): Promise<void>;
}

/** Options of {@linkcode ControlNode}. */
export interface ControlNodeOptions {
  /**
   * Send task events (`-E`).
   * @default {false}
   */
  taskEvents?: boolean;
  /**
   * Seconds between `worker-heartbeat` events; `0` sends none (`--without-heartbeat`).
   * @default {2}
   */
  heartbeatInterval?: number;
  /**
   * At start-up, ask the other workers (`hello`) for their revoked ids and wait this many ms
   * for replies; `0` skips it (`--without-mingle`).
   * @default {0}
   */
  mingleTimeout?: number;
  /** A JSON file that keeps revoked ids across restarts (`--statedb`). */
  statedb?: string;
}

/** A command handler: gets the arguments, returns the reply. */
export type ControlHandler = (
  node: ControlNode,
  args: Record<string, unknown>,
) => unknown | Promise<unknown>;

const ok = (value: unknown) => ({ ok: value });
const nok = (value: unknown) => ({ error: value });

function list(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function toNumber(value: unknown): number | null {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/** Request info in the shape of Celery's `Request.info()`. */
function info(worker: ControlledWorker, r: HeldRequest): Record<string, unknown> {
  return {
    id: r.id,
    name: r.name,
    args: r.args,
    kwargs: r.kwargs,
    type: r.name,
    hostname: worker.hostname,
    time_start: r.timeStart === null ? null : r.timeStart / 1000,
    acknowledged: r.acknowledged,
    delivery_info: {
      exchange: "",
      routing_key: r.queue,
      priority: r.priority,
      redelivered: r.redelivered,
    },
    // As Celery's `Request.worker_pid`: set once a pool slot accepts the task.
    worker_pid: r.timeStart === null ? null : Deno.pid,
  };
}

/**
 * The `priority` of each `inspect scheduled` entry: Celery reports its timer entry's, which its
 * strategy always sets to 6 for ETA tasks, whatever the message's own priority.
 */
const ETA_TIMER_PRIORITY = 6;

/** A broker-held ETA message as a request of this node (for `inspect scheduled`). */
function brokerHeld(queue: string, item: ScheduledMessage): HeldRequest | null {
  try {
    const t = decodeTask(item.message);
    return {
      id: t.id,
      name: t.name,
      args: t.args,
      kwargs: t.kwargs,
      state: "scheduled",
      queue,
      timeStart: null,
      acknowledged: false,
      eta: new Date(item.eta),
      priority: t.priority,
      redelivered: false,
    };
  } catch {
    return null;
  }
}

const RATE = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*([smh]))?\s*$/;

/** The commands, by name (`celery/worker/control.py`). */
export const CONTROL_COMMANDS: Map<string, ControlHandler> = new Map<string, ControlHandler>([
  ["ping", () => ok("pong")],
  ["clock", (n) => ({ clock: n.clock.value })],
  ["report", (n) => ok(n.report())],
  ["stats", (n) => n.stats()],
  ["conf", (n) => n.conf()],
  ["active", (n) => n.requestInfos("active")],
  ["reserved", (n) => n.requestInfos("reserved")],
  [
    "scheduled",
    async (n) => {
      const held = n.worker.requests().filter((r) => r.state === "scheduled").map((r) => ({
        eta: r.eta ? toIso(r.eta) : null,
        priority: ETA_TIMER_PRIORITY,
        request: info(n.worker, r),
      }));
      // ETA tasks the broker holds for this node's queues (a Python worker would hold them).
      const seen = new Set(held.map((h) => h.request.id));
      const broker = n.broker;
      for (const queue of broker.browseScheduled ? n.worker.queues : []) {
        let items: ScheduledMessage[] = [];
        try {
          items = await broker.browseScheduled!(queue, { limit: 1000 });
        } catch (error) {
          n.worker.app.logger.warn(`inspect scheduled: cannot browse ${queue}: ${error}`);
          continue;
        }
        for (const item of items) {
          const r = brokerHeld(queue, item);
          if (!r || seen.has(r.id)) continue;
          seen.add(r.id);
          held.push({
            eta: toIso(new Date(item.eta)),
            priority: ETA_TIMER_PRIORITY,
            request: info(n.worker, r),
          });
        }
      }
      return held;
    },
  ],
  ["revoked", (n) => n.worker.revokedSet.ids()],
  [
    "registered",
    (n, args) => {
      const items = list(args.taskinfoitems).map(String);
      const wanted = items.length ? items : ["rate_limit"];
      const names = [...n.worker.app.tasks.keys()]
        .filter((name) => args.builtins || !name.startsWith("celery.")).sort();
      return names.map((name) => {
        const options = n.worker.app.tasks.get(name)!.options as Record<string, unknown>;
        const fields = wanted.map((f) => [f, options[camel(f)]] as const)
          .filter(([, v]) => v !== undefined && v !== null)
          .map(([f, v]) => `${f}=${v}`);
        return fields.length ? `${name} [${fields.join(" ")}]` : name;
      });
    },
  ],
  [
    "active_queues",
    (n) =>
      n.worker.queues.map((q) => ({
        name: q,
        exchange: { name: q, type: "direct", arguments: null, durable: true, passive: false },
        routing_key: q,
        queue_arguments: null,
        binding_arguments: null,
        consumer_arguments: null,
        durable: true,
        exclusive: false,
        auto_delete: false,
        no_ack: false,
        alias: null,
        bindings: [],
        no_declare: null,
        expires: null,
        message_ttl: null,
        max_length: null,
        max_length_bytes: null,
        max_priority: null,
      })),
  ],
  [
    "query_task",
    (n, args) => {
      const ids = new Set(list(args.ids ?? args.task_id).map(String));
      const out: Record<string, unknown> = {};
      for (const r of n.worker.requests()) {
        if (ids.has(r.id)) out[r.id] = [r.state, info(n.worker, r)];
      }
      return out;
    },
  ],
  [
    "hello",
    (n, args) => {
      if (args.from_node === n.worker.hostname) return null;
      n.worker.revokedSet.merge(args.revoked);
      return { revoked: n.worker.revokedSet.toWire(), clock: n.clock.forward() };
    },
  ],
  [
    "revoke",
    (n, args) => {
      const ids = list(args.task_id).map(String);
      const signal = typeof args.signal === "string" ? args.signal : undefined;
      const terminate = truthy(args.terminate);
      const done = n.worker.revoke(ids, signal ? { terminate, signal } : { terminate });
      n.saveState();
      if (terminate) {
        return ok(done.length ? `terminate: ${done.join(", ")}` : "terminate: tasks unknown");
      }
      return ok(`tasks ${ids.join(", ")} flagged as revoked`);
    },
  ],
  [
    // Celery 5.3+ (`celery/worker/control.py:revoke_by_stamped_headers`); the replies' texts
    // are Celery's. The stamps stay in memory (not in --statedb, not in mingle), as Celery.
    "revoke_by_stamped_headers",
    (n, args) => {
      const stamps = readRevokeHeaders(args.headers);
      const signal = typeof args.signal === "string" ? args.signal : undefined;
      const terminate = truthy(args.terminate);
      const done = n.worker.revokeStamps(stamps, signal ? { terminate, signal } : { terminate });
      // Celery prints the headers as a dict, a CLI list of `name=value` turned into one.
      const given = pyRepr(
        Array.isArray(args.headers)
          ? Object.fromEntries(Object.entries(stamps).map(([name, [value]]) => [name, value]))
          : args.headers ?? {},
      );
      if (!terminate) return ok(`headers ${given} flagged as revoked, but not terminated`);
      if (Object.keys(done).length === 0) return ok(`headers ${given} were not terminated`);
      return ok(`headers ${pyRepr(done)} revoked`);
    },
  ],
  [
    "terminate",
    (n, args) => CONTROL_COMMANDS.get("revoke")!(n, { ...args, terminate: true }),
  ],
  [
    "rate_limit",
    (n, args) => {
      const name = String(args.task_name);
      const rate = args.rate_limit === null || args.rate_limit === undefined ||
          args.rate_limit === "" || args.rate_limit === 0 || args.rate_limit === "0"
        ? null
        : String(args.rate_limit);
      if (rate !== null && !RATE.test(rate)) {
        return nok(`Invalid rate limit string: ValueError('${rate}')`);
      }
      const task = n.worker.app.tasks.get(name);
      if (!task) return nok("unknown task");
      setOption(task, "rateLimit", rate ?? undefined);
      n.worker.setRateLimit?.(name, rate);
      return ok(rate ? "new rate limit set successfully" : "rate limit disabled successfully");
    },
  ],
  [
    "time_limit",
    (n, args) => {
      const task = n.worker.app.tasks.get(String(args.task_name));
      if (!task) return nok("unknown task");
      setOption(task, "softTimeLimit", toNumber(args.soft) ?? undefined);
      setOption(task, "timeLimit", toNumber(args.hard) ?? undefined);
      return ok("time limits set successfully");
    },
  ],
  [
    "enable_events",
    (n) => {
      if (n.events.taskEvents) return ok("task events already enabled");
      n.events.taskEvents = true;
      return ok("task events enabled");
    },
  ],
  [
    "disable_events",
    (n) => {
      if (!n.events.taskEvents) return ok("task events already disabled");
      n.events.taskEvents = false;
      return ok("task events disabled");
    },
  ],
  [
    "heartbeat",
    (n) => {
      n.events.send("worker-heartbeat", { ...n.workerFields(), freq: 5 });
      return null;
    },
  ],
  [
    "add_consumer",
    (n, args) => {
      const queue = String(args.queue ?? "");
      if (!queue) return nok("add_consumer needs a queue");
      if (!n.worker.addQueue) return nok("add_consumer is not supported by this worker");
      n.worker.addQueue(queue);
      return ok(`add consumer ${queue}`);
    },
  ],
  [
    "cancel_consumer",
    (n, args) => {
      const queue = String(args.queue ?? "");
      if (!n.worker.cancelQueue) return nok("cancel_consumer is not supported by this worker");
      n.worker.cancelQueue(queue);
      return ok(`no longer consuming from ${queue}`);
    },
  ],
  [
    "pool_grow",
    async (n, args) => {
      const by = Math.max(1, Math.trunc(toNumber(args.n) ?? 1));
      if (!n.worker.pool) return nok("the pool is not running");
      await n.worker.pool.grow(by);
      return ok("pool will grow");
    },
  ],
  [
    "pool_shrink",
    async (n, args) => {
      const by = Math.max(1, Math.trunc(toNumber(args.n) ?? 1));
      if (!n.worker.pool) return nok("the pool is not running");
      await n.worker.pool.shrink(by);
      return ok("pool will shrink");
    },
  ],
  [
    "autoscale",
    async (n, args) => {
      // As Celery's: update a running autoscaler's bounds, or refuse on a fixed-size pool
      // (Celery raises `ValueError`, which its pidbox replies as `{"error": repr(exc)}`).
      const toBound = (v: unknown) => {
        const x = toNumber(v);
        return x === null ? null : Math.trunc(x);
      };
      const max = toBound(args.max);
      const min = toBound(args.min);
      if ((max !== null && max < 1) || (min !== null && min < 1)) {
        return nok("autoscale needs max >= 1 and min >= 1");
      }
      const bounds = n.worker.updateAutoscale?.(max, min);
      if (!bounds) return nok("ValueError('Autoscale not enabled')");
      const now = await bounds;
      return ok(`autoscale now max=${now.max} min=${now.min}`);
    },
  ],
  [
    "shutdown",
    (n) => {
      n.worker.app.logger.warn("Got shutdown from remote");
      // After the reply is out.
      setTimeout(() => void n.worker.close(), 0);
      return ok("shutting down");
    },
  ],
  ["election", () => null],
]);
for (
  const [alias, name] of [
    ["dump_active", "active"],
    ["dump_reserved", "reserved"],
    ["dump_schedule", "scheduled"],
    ["dump_revoked", "revoked"],
    ["dump_tasks", "registered"],
    ["dump_conf", "conf"],
  ]
) CONTROL_COMMANDS.set(alias!, CONTROL_COMMANDS.get(name!)!);

function camel(snake: string): string {
  return snake.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

// Celery's time_limit/rate_limit commands change the task object; so does this.
function setOption(task: { options: object }, key: string, value: unknown): void {
  const options: Record<string, unknown> = { ...task.options };
  if (value === undefined) delete options[key];
  else options[key] = value;
  (task as { options: object }).options = options;
}

/** Glob to RegExp for `pattern`/`matcher: "glob"`. */
function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/**
 * Whether a command addressed with `destination`, or `pattern` and `matcher`, is for a node
 * (`kombu/pidbox.py:Node.handle_message`).
 *
 * @param hostname The node name.
 * @param body The command body.
 * @returns True when the node should run it.
 * @example
 * ```ts
 * import { isForNode } from "./control.ts";
 * console.assert(isForNode("w1@h", { destination: ["w1@h"] }));
 * console.assert(!isForNode("w2@h", { pattern: "w1@*", matcher: "glob" }));
 * ```
 */
export function isForNode(hostname: string, body: Record<string, unknown>): boolean {
  const destination = body.destination;
  if (Array.isArray(destination) && destination.length) return destination.includes(hostname);
  const pattern = body.pattern;
  const matcher = body.matcher;
  if (typeof pattern === "string" && pattern && typeof matcher === "string" && matcher) {
    try {
      const re = matcher === "pcre" ? new RegExp(pattern) : globToRegExp(pattern);
      return re.test(hostname);
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * A worker's pidbox node: command handling, replies, events, mingle and the state file.
 * The {@linkcode Consumer} starts one; `close()` sends `worker-offline` and stops it.
 */
export class ControlNode {
  /** The worker controlled. */
  readonly worker: ControlledWorker;
  /** The event dispatcher. */
  readonly events: EventDispatcher;
  /** The app's Lamport clock. */
  readonly clock: LamportClock;
  /** Commands by name; add entries for custom commands. */
  readonly handlers: Map<string, ControlHandler> = new Map(CONTROL_COMMANDS);
  #broker: Broker;
  #options: ControlNodeOptions;
  #stop = new AbortController();
  #listening: Promise<void> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #startedAt = Date.now();
  #totals = new Map<string, number>();
  #onAppEvent: EventListener;
  #closing: Promise<void> | undefined;
  #inflight = new Set<Promise<void>>();

  /**
   * Creates the node; `start()` starts it.
   *
   * @param worker The worker.
   * @param broker The broker commands and events go through.
   * @param options Events, heartbeat, mingle and state file.
   */
  constructor(worker: ControlledWorker, broker: Broker, options: ControlNodeOptions = {}) {
    this.worker = worker;
    this.#broker = broker;
    this.#options = options;
    this.clock = clockOf(worker.app);
    this.events = new EventDispatcher(broker, {
      hostname: worker.hostname,
      clock: this.clock,
      taskEvents: options.taskEvents ?? false,
      onError: (e) => worker.app.logger.debug(`Cannot send an event: ${e}`),
    });
    this.#onAppEvent = (e) => this.#taskEvent(e as unknown as CustomEvent);
  }

  /** The broker commands and events go through. */
  get broker(): Broker {
    return this.#broker;
  }

  /**
   * Loads the state file, mingles, starts listening for commands, and sends `worker-online`.
   *
   * @returns When ready.
   */
  async start(): Promise<void> {
    await this.#loadState();
    for (const type of TASK_EVENTS.keys()) {
      this.worker.app.addEventListener(type, this.#onAppEvent);
    }
    if (this.#broker.subscribe) {
      const ready = Promise.withResolvers<void>();
      this.#listening = this.#listen(ready.resolve);
      await ready.promise;
    }
    const mingle = this.#options.mingleTimeout ?? 0;
    if (mingle > 0) await this.#mingle(mingle);
    await this.events.send("worker-online", this.workerFields());
    const every = this.#options.heartbeatInterval ?? 2;
    if (every > 0) {
      this.#heartbeat = setInterval(
        () => void this.events.send("worker-heartbeat", this.workerFields()),
        every * 1000,
      );
    }
  }

  /**
   * The fields of `worker-online/heartbeat/offline`.
   *
   * @returns `freq, active, processed, loadavg, sw_ident, sw_ver, sw_sys`.
   */
  workerFields(): Record<string, unknown> {
    let loadavg = [0, 0, 0];
    try {
      loadavg = Deno.loadavg().map((x) => Math.round(x * 100) / 100);
    } catch {
      // Not available on this platform.
    }
    return {
      freq: this.#options.heartbeatInterval || 2,
      active: this.worker.active,
      processed: this.worker.processed,
      loadavg,
      ...SOFTWARE,
      sw_sys: systemName(),
    };
  }

  /**
   * The `stats` reply, in the shape of Celery's `WorkController.stats()`.
   *
   * @returns The stats.
   */
  stats(): Record<string, unknown> {
    const w = this.worker;
    // URLs `new URL()` cannot read (sentinel://a;sentinel://b, redis+cluster://h1,h2) still
    // name their transport.
    let broker: Record<string, unknown> = {
      transport: schemeInfo(w.app.conf.brokerUrl)?.transport ?? "memory",
    };
    try {
      const u = new URL(w.app.conf.brokerUrl);
      broker = {
        hostname: u.hostname || null,
        userid: u.username || null,
        virtual_host: u.pathname.replace(/^\//, "") || "/",
        port: u.port ? Number(u.port) : null,
        insist: false,
        ssl: schemeInfo(w.app.conf.brokerUrl)?.secure ?? false,
        transport: u.protocol.replace(/:$/, ""),
        connect_timeout: 4,
        transport_options: w.app.conf.transportOptions,
        login_method: null,
        uri_prefix: null,
        heartbeat: 120.0,
        failover_strategy: "round-robin",
        alternates: [],
      };
    } catch {
      // A broker instance without a URL.
    }
    let rss = 0;
    try {
      rss = Deno.memoryUsage().rss;
    } catch {
      // Not available.
    }
    const capacity = w.pool?.capacity ?? 0;
    return {
      broker,
      clock: String(this.clock.value),
      uptime: Math.round((Date.now() - this.#startedAt) / 1000),
      pid: Deno.pid,
      pool: {
        implementation: `celeriac:${w.poolKind}`,
        "max-concurrency": capacity,
        processes: [Deno.pid],
        "max-tasks-per-child": "N/A",
        "put-guarded-by-semaphore": false,
        timeouts: [0, 0],
        writes: { total: w.processed },
      },
      prefetch_count: w.prefetchCount,
      rusage: { maxrss: Math.round(rss / 1024) },
      total: Object.fromEntries(this.#totals),
    };
  }

  /**
   * The `conf` reply: the app's configuration, URLs without passwords.
   *
   * @returns The settings.
   */
  conf(): Record<string, unknown> {
    const c = this.worker.app.conf;
    return {
      broker_url: redact(c.brokerUrl),
      result_backend: redact(c.backendUrl),
      task_default_queue: c.defaultQueue,
      result_expires: c.resultExpires / 1000,
      task_always_eager: c.taskAlwaysEager,
      task_acks_late: c.acksLate,
      include: [],
      worker_send_task_events: this.events.taskEvents,
    };
  }

  /**
   * The `report` text, like `celery report`.
   *
   * @returns The text.
   */
  report(): string {
    const c = this.worker.app.conf;
    return [
      `software -> celeriac:${SOFTWARE.sw_ver} deno:${Deno.version.deno} ` +
      `v8:${Deno.version.v8} typescript:${Deno.version.typescript}`,
      `platform -> system:${systemName()} arch:${Deno.build.arch}`,
      `broker_url: ${redact(c.brokerUrl)}`,
      `result_backend: ${redact(c.backendUrl)}`,
      `queues: ${this.worker.queues.join(", ")}`,
    ].join("\n");
  }

  /**
   * Celery's `Request.info()` for each held request in a state.
   *
   * @param state `active` or `reserved`.
   * @returns The infos.
   */
  requestInfos(state: HeldRequest["state"]): Record<string, unknown>[] {
    return this.worker.requests().filter((r) => r.state === state).map((r) => info(this.worker, r));
  }

  /**
   * Runs one command as if it came from the pidbox.
   *
   * @param method The command.
   * @param args Its arguments.
   * @returns The reply (`{error}` for an unknown command or a failure).
   */
  async dispatch(method: string, args: Record<string, unknown> = {}): Promise<unknown> {
    const handler = this.handlers.get(method);
    if (!handler) return nok(`No such command: ${method}`);
    try {
      return await handler(this, args);
    } catch (error) {
      this.worker.app.logger.error(`pidbox command error: ${error}`);
      return nok(String(error));
    }
  }

  async #listen(ready: () => void): Promise<void> {
    const signal = this.#stop.signal;
    try {
      // Celery's node queue name (`kombu/pidbox.py` `Mailbox.get_queue`), where one exists.
      const stream = this.#broker.subscribe!(PIDBOX_EXCHANGE, {
        signal,
        onReady: ready,
        queue: `${this.worker.hostname}.${PIDBOX_EXCHANGE}`,
        messageTtl: CONTROL_QUEUE_TTL,
        expires: CONTROL_QUEUE_EXPIRES,
      });
      for await (const m of stream) {
        // Commands run concurrently: a slow one (pool_grow) does not hold up a ping.
        const p = this.#handle(m).catch((e) =>
          this.worker.app.logger.error(`pidbox command error: ${e}`)
        ).finally(() => this.#inflight.delete(p));
        this.#inflight.add(p);
      }
    } catch (error) {
      if (!signal.aborted) this.worker.app.logger.error(`Remote control stopped: ${error}`);
    } finally {
      ready();
    }
  }

  async #handle(m: BroadcastMessage): Promise<void> {
    let body: Record<string, unknown>;
    try {
      const parsed = JSON.parse(m.message.body);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return;
      body = parsed;
    } catch {
      this.worker.app.logger.warn("Ignored a pidbox message that is not JSON");
      return;
    }
    this.clock.adjust(m.message.headers.clock);
    if (typeof body.method !== "string" || !isForNode(this.worker.hostname, body)) return;
    const args = body.arguments !== null && typeof body.arguments === "object"
      ? body.arguments as Record<string, unknown>
      : {};
    const reply = await this.dispatch(body.method, args);
    const replyTo = body.reply_to as { exchange?: unknown; routing_key?: unknown } | undefined;
    if (!replyTo || typeof replyTo.routing_key !== "string" || !this.#broker.publishDirect) {
      return;
    }
    await this.#broker.publishDirect(
      typeof replyTo.exchange === "string" ? replyTo.exchange : REPLY_EXCHANGE,
      replyTo.routing_key,
      {
        headers: { ticket: body.ticket ?? null, clock: this.clock.forward() },
        properties: { delivery_mode: 1 },
        contentType: "application/json",
        contentEncoding: "utf-8",
        body: JSON.stringify({ [this.worker.hostname]: reply }),
      },
    );
  }

  async #mingle(timeout: number): Promise<void> {
    if (!this.#broker.consumeDirect) {
      this.worker.app.logger.debug(
        `mingle skipped: ${redact(this.#broker.url)} has no reply queues`,
      );
      return;
    }
    const control = new Control(this.worker.app, { broker: this.#broker });
    let nodes = 0;
    try {
      const replies = control.inspect({ timeout }).hello(
        this.worker.hostname,
        this.worker.revokedSet.toWire(),
      );
      for await (const { hostname, reply } of replies) {
        if (hostname === this.worker.hostname || !reply || typeof reply !== "object") continue;
        const r = reply as { revoked?: unknown; clock?: unknown };
        this.worker.revokedSet.merge(r.revoked);
        if (r.clock !== undefined) this.clock.adjust(r.clock);
        nodes++;
      }
    } catch (error) {
      this.worker.app.logger.warn(`mingle failed: ${error}`);
    }
    this.worker.app.logger.info(nodes ? `mingle: synced with ${nodes} nodes` : "mingle: alone");
  }

  async #loadState(): Promise<void> {
    const path = this.#options.statedb;
    if (!path) return;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw new Error(`Cannot read the state file ${path}: ${error}`, { cause: error });
    }
    try {
      const data = JSON.parse(text);
      this.worker.revokedSet.merge(data?.revoked);
      if (typeof data?.clock === "number") this.clock.adjust(data.clock);
    } catch (error) {
      this.worker.app.logger.warn(`Ignored a malformed state file ${path}: ${error}`);
    }
  }

  /** Writes the state file now (after each revoke and at shutdown), if there is one. */
  saveState(): void {
    const path = this.#options.statedb;
    if (!path) return;
    try {
      const tmp = `${path}.tmp`;
      Deno.writeTextFileSync(
        tmp,
        JSON.stringify({ revoked: this.worker.revokedSet.toJSON(), clock: this.clock.value }),
      );
      Deno.renameSync(tmp, path);
    } catch (error) {
      this.worker.app.logger.error(`Cannot write the state file ${path}: ${error}`);
    }
  }

  #taskEvent(e: CustomEvent): void {
    const d = e.detail as Record<string, unknown> | null;
    if (!d || d.hostname !== this.worker.hostname) return;
    const map = TASK_EVENTS.get(e.type);
    if (!map) return;
    if (e.type === "taskPostrun" && typeof d.name === "string") {
      this.#totals.set(d.name, (this.#totals.get(d.name) ?? 0) + 1);
      return;
    }
    // Task events off (no -E): build nothing (the fields hold reprs of arguments and results).
    if (!this.events.taskEvents) return;
    const [type, fields] = map;
    this.events.send(type, fields(d));
  }

  /**
   * Stops listening, sends `worker-offline`, saves the state file. Idempotent.
   *
   * @returns When closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      clearInterval(this.#heartbeat);
      for (const type of TASK_EVENTS.keys()) {
        this.worker.app.removeEventListener(type, this.#onAppEvent);
      }
      this.#stop.abort();
      await this.#listening;
      while (this.#inflight.size) await Promise.allSettled([...this.#inflight]);
      await this.events.flush();
      await this.events.send("worker-offline", this.workerFields());
      await this.events.close();
      this.saveState();
    })();
  }

  /** Same as {@linkcode ControlNode.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function exceptionRepr(exc: unknown): string {
  if (exc && typeof exc === "object" && "exc_type" in exc) {
    const e = exc as { exc_type: unknown; exc_message: unknown };
    const args = Array.isArray(e.exc_message) ? e.exc_message : [e.exc_message];
    return `${e.exc_type}(${args.map((a) => pyRepr(a)).join(", ")})`;
  }
  if (exc instanceof Error) return `${exc.name}(${pyRepr(exc.message)})`;
  if (exc && typeof exc === "object" && "name" in exc && "message" in exc) {
    const e = exc as { name: unknown; message: unknown };
    return `${e.name}(${pyRepr(e.message)})`;
  }
  return pyRepr(exc ?? null);
}

// As Celery's `req.eta.isoformat()`: `+00:00` and microseconds, not `Date.toISOString()`'s `Z`.
const iso = (v: unknown) => v instanceof Date ? toIso(v) : v ?? null;

// App events the Consumer dispatches -> Celery task events.
const TASK_EVENTS = new Map<
  string,
  [string, (d: Record<string, unknown>) => Record<string, unknown>]
>([
  ["taskReceived", ["task-received", (d) => ({
    uuid: d.id,
    name: d.name,
    ...requestReprs({
      args: (d.args ?? []) as unknown[],
      kwargs: (d.kwargs ?? {}) as Record<string, unknown>,
      headers: (d.headers ?? {}) as Record<string, unknown>,
    }),
    root_id: d.rootId ?? null,
    parent_id: d.parentId ?? null,
    retries: d.retries ?? 0,
    eta: iso(d.eta),
    expires: iso(d.expires),
  })]],
  ["taskPrerun", ["task-started", (d) => ({ uuid: d.id, pid: Deno.pid })]],
  ["taskSuccess", ["task-succeeded", (d) => ({
    uuid: d.id,
    result: pyRepr(d.result),
    runtime: typeof d.runtime === "number" ? d.runtime : 0,
  })]],
  ["taskFailure", ["task-failed", (d) => ({
    uuid: d.id,
    exception: exceptionRepr(d.exception),
    traceback: d.traceback ?? null,
  })]],
  ["taskRetry", ["task-retried", (d) => ({
    uuid: d.id,
    exception: exceptionRepr(d.reason),
    traceback: d.traceback ?? null,
  })]],
  ["taskRevoked", ["task-revoked", (d) => ({
    uuid: d.id,
    terminated: d.terminated ?? false,
    signum: d.terminated ? 15 : null,
    expired: d.expired ?? false,
  })]],
  ["taskRejected", ["task-rejected", (d) => ({ uuid: d.id ?? null, requeue: d.requeue ?? false })]],
  // As Celery's `on_unknown_task`: Flower lists an unregistered task as failed.
  ["taskUnknown", ["task-failed", (d) => ({
    uuid: d.id,
    exception: `NotRegistered(${pyRepr(d.name)})`,
    traceback: null,
  })]],
  ["taskPostrun", ["", () => ({})]],
]);
