/**
 * The one consume loop every broker runs (in the spirit of kombu's virtual transport): QoS
 * and prefetch accounting, validation, lease renewal scheduling, settle-once deliveries,
 * dead-letter routing and abort handling live here once; a broker only fills in small hooks
 * ({@linkcode ConsumerHooks}: claim, wait for work, ack, reject, release, renew).
 *
 * The loop:
 * 1. claims up to the free prefetch room (`hooks.claim`), or waits for work (`hooks.wait`,
 *    which may claim too) when nothing is there, or for a settle when the window is full;
 * 2. dead-letters by itself what it must never hand out (undecodable messages, or messages
 *    delivered more than `maxDeliveries` times), and reports each through `onDeadLetter`;
 * 3. yields the rest one by one as {@linkcode Delivery} objects that settle exactly once;
 * 4. renews the leases of everything held (claimed or handed out, not settled) every
 *    `hooks.renewInterval`, for as long as the loop runs or something is held;
 * 5. on abort (or `return()`), gives back what it claimed but never handed out
 *    (`hooks.release`, not counted as a delivery) and closes the session (`hooks.close`).
 *    Deliveries already handed out stay valid: the consumer still settles them.
 *
 * @module
 */

import { Notifier } from "../_signal.ts";
import type {
  ConsumeOptions,
  DeadLetterEvent,
  Delivery,
  DeliveryRejectOptions,
} from "../brokers/broker.ts";
import type { Message } from "../protocol/message.ts";

/** One claimed message as a broker's hooks see it. */
export interface RawDelivery {
  /** The decoded message, or `null` when it could not be decoded (it is dead-lettered). */
  readonly message: Message | null;
  /** The queue it came from. */
  readonly queue: string;
  /** How many times it has been delivered, this time included. */
  readonly deliveryCount: number;
  /** Whether it was delivered before. */
  readonly redelivered: boolean;
  /**
   * A lower `maxDeliveries` for this delivery (RabbitMQ's `x-delivery-limit` on a quorum
   * queue), when the broker knows one.
   */
  readonly maxDeliveries?: number;
  /** Why `message` is `null`. */
  readonly error?: string;
  /** The start of the stored text, for the dead-letter event of an undecodable message. */
  readonly raw?: string;
}

/** What `hooks.reject` did, when the broker knows. */
export type RejectResult = "requeued" | "dead" | "gone" | void;

/** The options `hooks.reject` gets: the decision is made. */
export interface RejectHookOptions {
  /** Back on the queue (`true`) or to the dead letters (`false`). */
  requeue: boolean;
  /** Why it is dead-lettered (set when `requeue` is `false`). */
  reason: string;
}

/** What the loop passes to a broker when a consumer starts. */
export interface ConsumerContext {
  /** The queues, validated (non-empty names, at least one). */
  readonly queues: readonly string[];
  /** The prefetch, validated (integer >= 0, 0 = unlimited). */
  readonly prefetch: number;
  /** Aborts when the consumer stops or the broker closes. */
  readonly signal: AbortSignal;
  /**
   * Reports a message the broker dead-lettered by itself (e.g. in a claim script or a lease
   * sweep); the loop forwards it to `onDeadLetter`.
   */
  deadLetter(event: DeadLetterEvent): void;
}

/**
 * The hooks of one consumer session. Every method but `claim`/`wait` may be called after the
 * loop ended (deliveries handed out are settled later).
 */
export interface ConsumerHooks<R extends RawDelivery> {
  /**
   * Most messages one claim takes when prefetch is unlimited.
   * @default {100}
   */
  readonly batch?: number;
  /** Claims up to `max` waiting messages (at least one is wanted); `[]` when none waits. */
  claim(max: number, signal: AbortSignal): Promise<readonly R[]>;
  /**
   * Waits until work may be there (a wake-up, a poll interval, a due ETA) or `signal`. A broker
   * that can claim in the same round trip as the wake-up returns what it claimed (up to `max`),
   * as `claim` would.
   */
  wait(signal: AbortSignal, max: number): Promise<void | readonly R[]>;
  /** Removes a settled message. */
  ack(delivery: R): Promise<void>;
  /** Requeues or dead-letters a message (with its reason). */
  reject(delivery: R, options: RejectHookOptions): Promise<RejectResult>;
  /** Gives back claimed messages that were never handed out, without counting a delivery. */
  release(deliveries: readonly R[]): Promise<void>;
  /** Extends the leases of held messages. Unset: the broker has no leases. */
  renew?(held: readonly R[]): Promise<void>;
  /** How often `renew` runs, in ms. */
  readonly renewInterval?: number;
  /**
   * Called when `claim` or `wait` throws while the consumer runs: repair (reconnect) and
   * resolve to go on, or throw to end the stream. Unset: the error ends the stream.
   */
  recover?(error: unknown, signal: AbortSignal): Promise<void>;
  /** Ends the session (stops watchers, unregisters the consumer). */
  close(): Promise<void>;
}

/** Settings of {@linkcode consumeLoop} that come from the broker. */
export interface ConsumeLoopSettings {
  /** Aborts when the broker closes. */
  closed: AbortSignal;
  /** Deliveries after which a message is dead-lettered instead of requeued or handed out. */
  maxDeliveries: number;
  /**
   * Holds a promise while the loop runs (claiming, waiting, cleaning up), not while it waits
   * at a `yield`: a broker's `close()` awaits them before it closes its connections, so a
   * consumer stopping under a close still gives back what it claimed.
   */
  active?: Set<Promise<void>>;
}

/**
 * Checks a queue name.
 *
 * @param queue The name.
 * @returns The name.
 * @throws {TypeError} For anything but a non-empty string.
 * @example
 * ```ts
 * import { checkQueue } from "./consume.ts";
 * checkQueue("celery");
 * ```
 */
export function checkQueue(queue: string): string {
  if (typeof queue !== "string" || queue === "") {
    throw new TypeError(`Cannot use queue ${JSON.stringify(queue)}: it must be a non-empty string`);
  }
  return queue;
}

/**
 * Checks a prefetch count.
 *
 * @param prefetch The count, or `undefined` for the default.
 * @returns The count (default 4).
 * @throws {RangeError} For anything but an integer >= 0.
 * @example
 * ```ts
 * import { checkPrefetch } from "./consume.ts";
 * console.assert(checkPrefetch(undefined) === 4 && checkPrefetch(0) === 0);
 * ```
 */
export function checkPrefetch(prefetch: number | undefined): number {
  const n = prefetch ?? 4;
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(
      `Cannot consume: prefetch must be an integer >= 0 (0 = unlimited), got ${prefetch}`,
    );
  }
  return n;
}

/**
 * Checks a `maxDeliveries` option.
 *
 * @param value The option, or `undefined` for the default.
 * @returns The value (default 10).
 * @throws {RangeError} For anything but an integer >= 1.
 * @example
 * ```ts
 * import { checkMaxDeliveries } from "./consume.ts";
 * console.assert(checkMaxDeliveries(undefined) === 10);
 * ```
 */
export function checkMaxDeliveries(value: number | undefined): number {
  const n = value ?? 10;
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`Cannot set maxDeliveries: it must be an integer >= 1, got ${value}`);
  }
  return n;
}

const REJECTED = "rejected without requeue";

// The accounting of one consumer: what it holds (claimed or handed out, not settled), its
// lease timer and its settle notifications.
class Session<R extends RawDelivery> {
  readonly hooks: ConsumerHooks<R>;
  readonly held = new Set<R>();
  readonly settled = new Notifier();
  readonly deadLetter: (event: DeadLetterEvent) => void;
  readonly #maxDeliveries: number;
  readonly #closed: AbortSignal;
  readonly #onClosed = () => this.#stopTimer();
  #running = true;
  #timer: ReturnType<typeof setInterval> | undefined;
  #renewing: Promise<void> | undefined;

  constructor(
    hooks: ConsumerHooks<R>,
    maxDeliveries: number,
    deadLetter: (event: DeadLetterEvent) => void,
    closed: AbortSignal,
  ) {
    this.hooks = hooks;
    this.#maxDeliveries = maxDeliveries;
    this.deadLetter = deadLetter;
    this.#closed = closed;
    // The broker closing stops renewals, even of deliveries never settled.
    closed.addEventListener("abort", this.#onClosed, { once: true });
    if (!closed.aborted) this.#schedule();
  }

  get outstanding(): number {
    return this.held.size;
  }

  hold(raw: R): void {
    this.held.add(raw);
  }

  ended(): void {
    this.#running = false;
    this.#schedule();
  }

  // Lease renewals run while the loop runs (a broker may renew its consumer's liveness key
  // there too) or while anything is held.
  #schedule(): void {
    const hooks = this.hooks;
    const needed = this.#running || this.held.size > 0;
    if (!hooks.renew || !hooks.renewInterval) {
      if (!needed) this.#stopTimer();
      return;
    }
    if (needed && this.#timer === undefined && !this.#closed.aborted) {
      this.#timer = setInterval(() => {
        if (this.#renewing) return;
        this.#renewing = hooks.renew!([...this.held])
          .catch(() => {
            // Retried at the next tick; a lease is only lost if it expires meanwhile.
          })
          .finally(() => this.#renewing = undefined);
      }, hooks.renewInterval);
    } else if (!needed) {
      this.#stopTimer();
    }
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (!this.#running && this.held.size === 0) {
      this.#closed.removeEventListener("abort", this.#onClosed);
    }
  }

  #drop(raw: R): void {
    this.held.delete(raw);
    this.settled.notify();
    if (this.held.size === 0 && !this.#running) this.#stopTimer();
  }

  ack(raw: R): Promise<void> {
    this.#drop(raw);
    return this.hooks.ack(raw);
  }

  async reject(raw: R, options: DeliveryRejectOptions): Promise<void> {
    this.#drop(raw);
    let requeue = options.requeue ?? false;
    let reason = options.reason ?? REJECTED;
    let byBroker = false;
    const max = Math.min(raw.maxDeliveries ?? this.#maxDeliveries, this.#maxDeliveries);
    if (requeue && raw.deliveryCount >= max) {
      requeue = false;
      byBroker = true;
      reason = `delivered ${raw.deliveryCount} times (maxDeliveries ${max})`;
    }
    const result = await this.hooks.reject(raw, { requeue, reason });
    if (requeue && result === "dead") {
      byBroker = true;
      reason = `delivered too many times (maxDeliveries ${max})`;
    }
    if (byBroker) this.deadLetter({ queue: raw.queue, reason, message: raw.message });
  }

  // Dead-letters a claimed message that must not be handed out.
  async refuse(raw: R, reason: string): Promise<void> {
    this.#drop(raw);
    const event: DeadLetterEvent = { queue: raw.queue, reason, message: raw.message };
    if (raw.raw !== undefined) event.raw = raw.raw;
    try {
      await this.hooks.reject(raw, { requeue: false, reason });
    } finally {
      this.deadLetter(event);
    }
  }

  release(raws: readonly R[]): Promise<void> {
    for (const raw of raws) this.#drop(raw);
    return raws.length === 0 ? Promise.resolve() : this.hooks.release(raws);
  }
}

// A delivery handed to the consumer: it settles once; later calls return the first promise.
class TransportDelivery<R extends RawDelivery> implements Delivery {
  readonly message: Message;
  readonly queue: string;
  readonly redelivered: boolean;
  readonly deliveryCount: number;
  readonly #raw: R;
  readonly #session: Session<R>;
  #settle: Promise<void> | undefined;

  constructor(raw: R, message: Message, session: Session<R>) {
    this.#raw = raw;
    this.#session = session;
    this.message = message;
    this.queue = raw.queue;
    this.redelivered = raw.redelivered;
    this.deliveryCount = raw.deliveryCount;
  }

  ack(): Promise<void> {
    return this.#settle ??= this.#session.ack(this.#raw);
  }

  reject(options: DeliveryRejectOptions = {}): Promise<void> {
    return this.#settle ??= this.#session.reject(this.#raw, options);
  }
}

/**
 * Runs one consumer: validates its arguments, opens the broker's session and streams
 * deliveries until the signal aborts or the broker closes.
 *
 * @param queues The queues.
 * @param options Prefetch, signal, `onDeadLetter`.
 * @param settings The broker's closed signal and `maxDeliveries`.
 * @param open Opens the broker's session for this consumer.
 * @returns The deliveries.
 * @throws {TypeError} For no queues or a bad queue name.
 * @throws {RangeError} For a bad prefetch.
 * @example
 * ```ts ignore
 * return consumeLoop(queues, options, { closed, maxDeliveries: 10 }, (ctx) => this.#open(ctx));
 * ```
 */
export async function* consumeLoop<R extends RawDelivery>(
  queues: readonly string[],
  options: ConsumeOptions,
  settings: ConsumeLoopSettings,
  open: (context: ConsumerContext) => Promise<ConsumerHooks<R>>,
): AsyncGenerator<Delivery> {
  if (!Array.isArray(queues) || queues.length === 0) {
    throw new TypeError("Cannot consume: no queues given");
  }
  for (const q of queues) checkQueue(q);
  const prefetch = checkPrefetch(options.prefetch);
  const signal = options.signal
    ? AbortSignal.any([settings.closed, options.signal])
    : settings.closed;
  if (signal.aborted) return;
  const onDeadLetter = options.onDeadLetter;
  const deadLetter = (event: DeadLetterEvent) => {
    try {
      onDeadLetter?.(event);
    } catch {
      // A listener cannot break the stream.
    }
  };
  let running: PromiseWithResolvers<void> | undefined;
  const run = () => {
    if (!settings.active) return;
    running = Promise.withResolvers<void>();
    settings.active.add(running.promise);
  };
  const pause = () => {
    if (!running) return;
    running.resolve();
    settings.active!.delete(running.promise);
    running = undefined;
  };
  run();
  let hooks: ConsumerHooks<R>;
  try {
    hooks = await open({ queues: [...queues], prefetch, signal, deadLetter });
  } catch (error) {
    pause();
    throw error;
  }
  const session = new Session(hooks, settings.maxDeliveries, deadLetter, settings.closed);
  const batch = Math.max(1, hooks.batch ?? 100);
  // Claimed and counted in `session.held`, not yet handed out.
  const buffer: R[] = [];
  let head = 0;
  // The last wait claimed less than it could: the queues were empty then.
  let drained = false;
  try {
    while (!signal.aborted) {
      if (head < buffer.length) {
        const raw = buffer[head]!;
        buffer[head++] = undefined as unknown as R;
        if (head === buffer.length) buffer.length = head = 0;
        pause();
        yield new TransportDelivery(raw, raw.message!, session);
        run();
        continue;
      }
      if (prefetch > 0 && session.outstanding >= prefetch) {
        await session.settled.wait(signal);
        drained = false;
        continue;
      }
      let got: readonly R[];
      try {
        const room = prefetch > 0 ? prefetch - session.outstanding : batch;
        got = drained ? [] : await hooks.claim(room, signal);
        drained = false;
        if (got.length === 0) {
          if (signal.aborted) break;
          got = await hooks.wait(signal, room) ?? [];
          if (got.length === 0) continue;
          // The claim of that wake-up found the queues empty: the next step is to wait again,
          // without a claim that would find nothing (it would also hold up this turn's acks).
          drained = got.length < room;
        }
      } catch (error) {
        if (signal.aborted) break;
        if (!hooks.recover) throw error;
        await hooks.recover(error, signal);
        continue;
      }
      for (const raw of got) {
        session.hold(raw);
        if (raw.message === null) {
          void session.refuse(raw, raw.error ?? "the message could not be decoded").catch(() => {});
        } else if (
          raw.deliveryCount > Math.min(raw.maxDeliveries ?? Infinity, settings.maxDeliveries)
        ) {
          const max = Math.min(raw.maxDeliveries ?? Infinity, settings.maxDeliveries);
          void session.refuse(
            raw,
            `delivered ${raw.deliveryCount} times (maxDeliveries ${max})`,
          ).catch(() => {});
        } else {
          buffer.push(raw);
        }
      }
    }
  } finally {
    const rest = buffer.slice(head).filter((r) => r !== undefined);
    buffer.length = head = 0;
    // Also when the consumer called return() at a yield: close() waits for this cleanup.
    if (!running) run();
    try {
      await session.release(rest);
    } finally {
      session.ended();
      try {
        await hooks.close();
      } finally {
        pause();
      }
    }
  }
}
