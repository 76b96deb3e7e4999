/**
 * The event dispatcher: Celery's monitoring events on the `celeryev` exchange, so
 * `celery events`, Flower and `app.events()` see celeriac workers. Worker events
 * (`worker-online/heartbeat/offline`) go out one at a time; task events are batched and sent
 * as one `task.multi` message whose body is a JSON list, as Celery's worker does
 * (`celery/events/dispatcher.py`).
 *
 * @module
 */

import type { Broker } from "../brokers/broker.ts";
import type { LamportClock } from "../_clock.ts";

/** The exchange events are published to. */
export const EVENT_EXCHANGE = "celeryev";

/** What `sw_ident`/`sw_ver` say in worker events. */
export const SOFTWARE = { sw_ident: "celeriac", sw_ver: "0.1.0" } as const;

/** One event: a JSON object with at least `type`; Celery adds the common fields below. */
export interface CeleryEvent {
  /** `worker-heartbeat`, `task-succeeded`, ... */
  type: string;
  /** The sending node. */
  hostname?: string;
  /** Seconds since the epoch (float). */
  timestamp?: number;
  /** Lamport clock. */
  clock?: number;
  /** Offset of the sender's local time from UTC, in hours. */
  utcoffset?: number;
  /** Sender process id. */
  pid?: number;
  /** Task id (task events). */
  uuid?: string;
  /** Other fields. */
  [field: string]: unknown;
}

/** Options of {@linkcode EventDispatcher}. */
export interface EventDispatcherOptions {
  /** The sending node name. */
  hostname: string;
  /** The clock stamped on every event. */
  clock: LamportClock;
  /**
   * Send task events (`-E`). Worker events are always sent.
   * @default {false}
   */
  taskEvents?: boolean;
  /**
   * Task events buffered before a flush (Celery's `buffer_limit`).
   * @default {24}
   */
  bufferLimit?: number;
  /**
   * Most milliseconds a task event waits in the buffer.
   * @default {10}
   */
  flushDelay?: number;
  /** Receives publishing errors (events are fire-and-forget). */
  onError?: (error: unknown) => void;
}

/** Python's `platform.system()` for this OS. */
export function systemName(): string {
  const os = Deno.build.os;
  return os === "linux"
    ? "Linux"
    : os === "darwin"
    ? "Darwin"
    : os === "windows"
    ? "Windows"
    : os.charAt(0).toUpperCase() + os.slice(1);
}

function utcOffsetHours(): number {
  // Celery's utcoffset(): hours to ADD to local time to get UTC, as an integer.
  return Math.floor(new Date().getTimezoneOffset() / 60);
}

/**
 * Sends events for one node.
 *
 * @example
 * ```ts
 * import { EventDispatcher } from "./events.ts";
 * import { LamportClock } from "../_clock.ts";
 * import { MemoryBroker } from "../brokers/memory.ts";
 * await using broker = new MemoryBroker("memory://doc-events");
 * const events = new EventDispatcher(broker, { hostname: "w1@doc", clock: new LamportClock() });
 * await events.send("worker-online", { freq: 2 });
 * await events.close();
 * ```
 */
export class EventDispatcher {
  /** The sending node name. */
  readonly hostname: string;
  /** Whether task events are sent (`enable_events`/`disable_events` switch it). */
  taskEvents: boolean;
  #broker: Broker;
  #clock: LamportClock;
  #buffer: CeleryEvent[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #limit: number;
  #delay: number;
  #onError: (error: unknown) => void;
  #pending = new Set<Promise<void>>();
  #closed = false;

  /**
   * Creates the dispatcher.
   *
   * @param broker Where events go (it must support `broadcast`; otherwise nothing is sent).
   * @param options Node name, clock and switches.
   */
  constructor(broker: Broker, options: EventDispatcherOptions) {
    this.#broker = broker;
    this.hostname = options.hostname;
    this.#clock = options.clock;
    this.taskEvents = options.taskEvents ?? false;
    this.#limit = options.bufferLimit ?? 24;
    this.#delay = options.flushDelay ?? 10;
    this.#onError = options.onError ?? (() => {});
  }

  /** Whether the broker can carry events at all. */
  get supported(): boolean {
    return typeof this.#broker.broadcast === "function";
  }

  /**
   * Builds an event with Celery's common fields.
   *
   * @param type The event type.
   * @param fields Its own fields.
   * @returns The event.
   */
  event(type: string, fields: Record<string, unknown> = {}): CeleryEvent {
    return {
      hostname: this.hostname,
      utcoffset: utcOffsetHours(),
      pid: Deno.pid,
      clock: this.#clock.forward(),
      ...fields,
      timestamp: Date.now() / 1000,
      type,
    };
  }

  /**
   * Sends an event: task events are buffered (and dropped unless task events are on), other
   * events go out now.
   *
   * @param type The event type, e.g. `task-succeeded`.
   * @param fields Its fields.
   * @returns When a non-task event is published (errors go to `onError`).
   */
  send(type: string, fields: Record<string, unknown> = {}): Promise<void> {
    if (this.#closed || !this.supported) return Promise.resolve();
    if (type.startsWith("task-")) {
      if (!this.taskEvents) return Promise.resolve();
      this.#buffer.push(this.event(type, fields));
      if (this.#buffer.length >= this.#limit) this.flush();
      else this.#timer ??= setTimeout(() => this.flush(), this.#delay);
      return Promise.resolve();
    }
    return this.#track(this.#publish(type.replaceAll("-", "."), this.event(type, fields)));
  }

  /**
   * Publishes the buffered task events now, as one `task.multi` message.
   *
   * @returns When published.
   */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#buffer.length === 0) return Promise.resolve();
    const events = this.#buffer;
    this.#buffer = [];
    return this.#track(this.#publish("task.multi", events));
  }

  #track(p: Promise<void>): Promise<void> {
    const tracked = p.catch((error) => this.#onError(error)).finally(() =>
      this.#pending.delete(tracked)
    );
    this.#pending.add(tracked);
    return tracked;
  }

  async #publish(routingKey: string, body: CeleryEvent | CeleryEvent[]): Promise<void> {
    await this.#broker.broadcast!({
      exchange: EVENT_EXCHANGE,
      routingKey,
      message: {
        headers: { hostname: this.hostname },
        properties: { delivery_mode: 1 },
        contentType: "application/json",
        contentEncoding: "utf-8",
        body: JSON.stringify(body),
      },
    });
  }

  /**
   * Flushes the buffer and waits for every publish; later sends are ignored. Idempotent.
   *
   * @returns When done.
   */
  async close(): Promise<void> {
    if (!this.#closed) await this.flush();
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#pending.size) await Promise.allSettled([...this.#pending]);
  }

  /** Same as {@linkcode EventDispatcher.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
