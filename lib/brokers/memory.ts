/**
 * `memory://[name]`: an in-process broker for tests and single-process demos. Brokers made
 * from the same URL in one process share their queues.
 *
 * @module
 */

import { Notifier } from "../_signal.ts";
import { PushChannel } from "../transport/channel.ts";
import type { Message } from "../protocol/message.ts";
import {
  checkMaxDeliveries,
  checkQueue,
  consumeLoop,
  type ConsumerContext,
  type ConsumerHooks,
  type RawDelivery,
} from "../transport/consume.ts";
import {
  type BroadcastMessage,
  type Broker,
  type ConsumeDirectOptions,
  type ConsumeOptions,
  DEAD_LETTER_REASON_HEADER,
  type Delivery,
  type PublishOptions,
  type SubscribeOptions,
} from "./broker.ts";
import type { BrowseOptions, DeadLetter, QueueCounts } from "./broker.ts";

interface Entry {
  message: Message;
  priority: number;
  deliveries: number;
  seq: number;
}

class Store {
  queues = new Map<string, Entry[]>();
  deadLetters = new Map<string, Message[]>();
  notifier = new Notifier();
  subscribers = new Set<(m: BroadcastMessage) => void>();
  // Direct exchange bindings: "exchange\0routingKey" -> listeners.
  direct = new Map<string, Set<(m: Message) => void>>();
  seq = 0;

  push(queue: string, entry: Entry): void {
    let list = this.queues.get(queue);
    if (!list) this.queues.set(queue, list = []);
    // Highest priority first, FIFO within a priority.
    let i = list.length;
    while (i > 0 && list[i - 1]!.priority < entry.priority) i--;
    list.splice(i, 0, entry);
    this.notifier.notify();
  }

  // Back at the head of its priority (a message claimed and never handed out).
  unshift(queue: string, entry: Entry): void {
    let list = this.queues.get(queue);
    if (!list) this.queues.set(queue, list = []);
    let i = 0;
    while (i < list.length && list[i]!.priority > entry.priority) i++;
    list.splice(i, 0, entry);
    this.notifier.notify();
  }
}

interface MemoryDelivery extends RawDelivery {
  readonly entry: Entry;
  readonly message: Message;
}

// The dead-lettered copy of a message carries why.
function withReason(message: Message, reason: string): Message {
  return { ...message, headers: { ...message.headers, [DEAD_LETTER_REASON_HEADER]: reason } };
}

const stores = new Map<string, Store>();

// The longest delay setTimeout takes.
const MAX_TIMER = 2 ** 31 - 1;

/** Options of {@linkcode MemoryBroker}. */
export interface MemoryBrokerOptions {
  /**
   * Deliveries after which a rejected-with-requeue message goes to the dead-letter list.
   * @default {10}
   */
  maxDeliveries?: number;
}

/**
 * An in-memory broker. Priority follows AMQP: 9 is served first.
 *
 * @example
 * ```ts
 * import { MemoryBroker } from "./memory.ts";
 * import { encodeTask } from "../protocol/message.ts";
 * await using broker = new MemoryBroker("memory://doc");
 * await broker.publish("celery", encodeTask({ id: "1", name: "t", args: [], kwargs: {} }));
 * console.assert(await broker.purge("celery") === 1);
 * ```
 */
export class MemoryBroker implements Broker {
  readonly url: string;
  #store: Store;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #maxDeliveries: number;
  #closed = new AbortController();

  /**
   * Creates the broker.
   *
   * @param url `memory://` or `memory://name`; the same name shares queues.
   * @param options Options.
   */
  constructor(url = "memory://", options: MemoryBrokerOptions = {}) {
    this.url = url;
    const key = url.replace(/^memory:\/\//, "");
    let store = stores.get(key);
    if (!store) stores.set(key, store = new Store());
    this.#store = store;
    this.#maxDeliveries = checkMaxDeliveries(options.maxDeliveries);
  }

  /** Messages dropped after too many deliveries, by queue. */
  deadLetters(queue: string): readonly Message[] {
    return this.#store.deadLetters.get(queue) ?? [];
  }

  /** Number of messages waiting on a queue. */
  size(queue: string): number {
    return this.#store.queues.get(queue)?.length ?? 0;
  }

  publish(queue: string, message: Message, options: PublishOptions = {}): Promise<void> {
    try {
      checkQueue(queue);
    } catch (error) {
      return Promise.reject(error);
    }
    const priority = options.priority ?? message.properties.priority ?? 0;
    this.#store.push(queue, { message, priority, deliveries: 0, seq: this.#store.seq++ });
    return Promise.resolve();
  }

  schedule(
    queue: string,
    message: Message,
    eta: Date,
    options: PublishOptions = {},
  ): Promise<void> {
    try {
      checkQueue(queue);
      if (!(eta instanceof Date) || Number.isNaN(eta.getTime())) {
        throw new TypeError(`Cannot schedule: invalid ETA ${eta}`);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    this.#later(eta.getTime(), () => void this.publish(queue, message, options));
    return Promise.resolve();
  }

  // setTimeout fires at once past 2^31 - 1 ms: wait in steps for ETAs further away.
  #later(at: number, fn: () => void): void {
    const wait = Math.max(0, at - Date.now());
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (wait > MAX_TIMER) this.#later(at, fn);
      else fn();
    }, Math.min(wait, MAX_TIMER));
    this.#timers.add(timer);
  }

  consume(queues: readonly string[], options: ConsumeOptions = {}): AsyncGenerator<Delivery> {
    return consumeLoop(
      queues,
      options,
      { closed: this.#closed.signal, maxDeliveries: this.#maxDeliveries },
      (ctx) => Promise.resolve(this.#session(ctx)),
    );
  }

  // The consume hooks: claims shift entries off the queues round-robin.
  #session(ctx: ConsumerContext): ConsumerHooks<MemoryDelivery> {
    const store = this.#store;
    const queues = ctx.queues;
    let next = 0;
    const give = (d: MemoryDelivery) => {
      store.push(d.queue, d.entry);
    };
    return {
      claim: (max) => {
        const out: MemoryDelivery[] = [];
        for (let tried = 0; tried < queues.length && out.length < max; tried++) {
          const queue = queues[next]!;
          next = (next + 1) % queues.length;
          const list = store.queues.get(queue);
          while (list && list.length > 0 && out.length < max) {
            const entry = list.shift()!;
            entry.deliveries++;
            out.push({
              entry,
              message: entry.message,
              queue,
              deliveryCount: entry.deliveries,
              redelivered: entry.deliveries > 1,
            });
            // One per queue per turn keeps the round-robin fair.
            if (queues.length > 1) break;
          }
        }
        return Promise.resolve(out);
      },
      batch: 1,
      wait: (signal) => store.notifier.wait(signal),
      ack: () => Promise.resolve(),
      reject: (d, { requeue, reason }) => {
        if (requeue) {
          give(d);
          return Promise.resolve("requeued");
        }
        let dead = store.deadLetters.get(d.queue);
        if (!dead) store.deadLetters.set(d.queue, dead = []);
        dead.push(withReason(d.entry.message, reason));
        return Promise.resolve("dead");
      },
      release: (ds) => {
        for (const d of [...ds].reverse()) {
          d.entry.deliveries--;
          store.unshift(d.queue, d.entry);
        }
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    };
  }

  purge(queue: string): Promise<number> {
    try {
      checkQueue(queue);
    } catch (error) {
      return Promise.reject(error);
    }
    const n = this.#store.queues.get(queue)?.length ?? 0;
    this.#store.queues.delete(queue);
    return Promise.resolve(n);
  }

  broadcast(message: BroadcastMessage): Promise<void> {
    for (const s of this.#store.subscribers) s(message);
    return Promise.resolve();
  }

  async *subscribe(
    exchange: string,
    options: SubscribeOptions = {},
  ): AsyncGenerator<BroadcastMessage> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    const channel = new PushChannel<BroadcastMessage>();
    const listener = (m: BroadcastMessage) => {
      if (m.exchange === exchange) channel.push(m);
    };
    this.#store.subscribers.add(listener);
    try {
      options.onReady?.();
      yield* channel.stream(signal);
    } finally {
      this.#store.subscribers.delete(listener);
    }
  }

  publishDirect(exchange: string, routingKey: string, message: Message): Promise<void> {
    for (const l of this.#store.direct.get(`${exchange}\0${routingKey}`) ?? []) l(message);
    return Promise.resolve();
  }

  async *consumeDirect(
    exchange: string,
    routingKey: string,
    options: ConsumeDirectOptions,
  ): AsyncGenerator<Message> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    if (signal.aborted) return;
    const key = `${exchange}\0${routingKey}`;
    const channel = new PushChannel<Message>();
    const listener = (m: Message) => channel.push(m);
    let set = this.#store.direct.get(key);
    if (!set) this.#store.direct.set(key, set = new Set());
    set.add(listener);
    try {
      options.onReady?.();
      yield* channel.stream(signal);
    } finally {
      set.delete(listener);
      if (set.size === 0) this.#store.direct.delete(key);
    }
  }

  close(): Promise<void> {
    this.#closed.abort();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    return Promise.resolve();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Counts of each queue; delivered and scheduled messages are not tracked (`null`). */
  queueCounts(queues: readonly string[]): Promise<QueueCounts[]> {
    return Promise.resolve(queues.map((queue) => ({
      queue,
      waiting: this.size(queue),
      reserved: null,
      scheduled: null,
      deadLettered: this.deadLetters(queue).length,
    })));
  }

  /** The dead letters of a queue, oldest first; the id is the task id. */
  browseDeadLetters(queue: string, options: BrowseOptions = {}): Promise<DeadLetter[]> {
    return Promise.resolve(
      this.deadLetters(queue).slice(0, options.limit ?? 100).map((message, i) => ({
        id: typeof message.headers.id === "string" ? message.headers.id : String(i),
        message,
      })),
    );
  }

  /** Moves dead letters back onto their queue; returns how many. */
  replayDeadLetters(queue: string, ids?: readonly string[]): Promise<number> {
    const dead = this.#store.deadLetters.get(queue) ?? [];
    const keep: Message[] = [];
    let moved = 0;
    dead.forEach((message, i) => {
      const id = typeof message.headers.id === "string" ? message.headers.id : String(i);
      if (ids && !ids.includes(id)) return keep.push(message);
      moved++;
      this.publish(queue, message);
    });
    this.#store.deadLetters.set(queue, keep);
    return Promise.resolve(moved);
  }

  /** Deletes the dead letters of a queue; returns how many. */
  purgeDeadLetters(queue: string): Promise<number> {
    const n = this.deadLetters(queue).length;
    this.#store.deadLetters.delete(queue);
    return Promise.resolve(n);
  }
}
