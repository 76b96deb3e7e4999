/**
 * `memory://[name]`: an in-process broker for tests and single-process demos. Brokers made
 * from the same URL in one process share their queues.
 *
 * @module
 */

import { Notifier } from "../_signal.ts";
import type { Message } from "../protocol/message.ts";
import type {
  BroadcastMessage,
  Broker,
  ConsumeDirectOptions,
  ConsumeOptions,
  Delivery,
  PublishOptions,
  SubscribeOptions,
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
}

const stores = new Map<string, Store>();

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
    this.#maxDeliveries = options.maxDeliveries ?? 10;
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
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.publish(queue, message, options);
    }, Math.max(0, eta.getTime() - Date.now()));
    this.#timers.add(timer);
    return Promise.resolve();
  }

  async *consume(
    queues: readonly string[],
    options: ConsumeOptions = {},
  ): AsyncGenerator<Delivery> {
    const prefetch = options.prefetch ?? 4;
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    const store = this.#store;
    const acked = new Notifier();
    let outstanding = 0;
    let next = 0;
    while (!signal.aborted) {
      if (prefetch > 0 && outstanding >= prefetch) {
        await acked.wait(signal);
        continue;
      }
      let entry: Entry | undefined;
      let queue = "";
      for (let i = 0; i < queues.length && !entry; i++) {
        queue = queues[(next + i) % queues.length]!;
        entry = store.queues.get(queue)?.shift();
      }
      next = (next + 1) % Math.max(1, queues.length);
      if (!entry) {
        await store.notifier.wait(signal);
        continue;
      }
      entry.deliveries++;
      outstanding++;
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        outstanding--;
        acked.notify();
        return true;
      };
      const e = entry;
      const q = queue;
      yield {
        message: e.message,
        queue: q,
        redelivered: e.deliveries > 1,
        deliveryCount: e.deliveries,
        ack: () => {
          settle();
          return Promise.resolve();
        },
        reject: ({ requeue = false } = {}) => {
          if (!settle()) return Promise.resolve();
          if (requeue && e.deliveries < this.#maxDeliveries) {
            store.push(q, e);
          } else {
            let dead = store.deadLetters.get(q);
            if (!dead) store.deadLetters.set(q, dead = []);
            dead.push(e.message);
          }
          return Promise.resolve();
        },
      };
    }
  }

  purge(queue: string): Promise<number> {
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
    const buffer: BroadcastMessage[] = [];
    const notifier = new Notifier();
    const listener = (m: BroadcastMessage) => {
      if (m.exchange === exchange) {
        buffer.push(m);
        notifier.notify();
      }
    };
    this.#store.subscribers.add(listener);
    try {
      options.onReady?.();
      while (!signal.aborted) {
        const m = buffer.shift();
        if (m) yield m;
        else await notifier.wait(signal);
      }
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
    const buffer: Message[] = [];
    const notifier = new Notifier();
    const listener = (m: Message) => {
      buffer.push(m);
      notifier.notify();
    };
    let set = this.#store.direct.get(key);
    if (!set) this.#store.direct.set(key, set = new Set());
    set.add(listener);
    try {
      options.onReady?.();
      while (!signal.aborted) {
        const m = buffer.shift();
        if (m) yield m;
        else await notifier.wait(signal);
      }
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
