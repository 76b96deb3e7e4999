/**
 * The `Broker` seam: every transport (memory, Deno KV, Redis, AMQP) implements it.
 *
 * @module
 */

import type { Message } from "../protocol/message.ts";

/** Options of {@linkcode Broker.publish}. */
export interface PublishOptions {
  /**
   * Message priority 0–9 (AMQP: 9 is highest; Redis/kombu: 0 is served first).
   * @default {0}
   */
  priority?: number;
}

/** Options of {@linkcode Broker.consume}. */
export interface ConsumeOptions {
  /**
   * Most deliveries handed out and not yet acked or rejected. `0` means unlimited.
   * @default {4}
   */
  prefetch?: number;
  /** Ends the stream: the generator returns once it is aborted. */
  signal?: AbortSignal;
}

/** One message handed to a consumer; it must be acked or rejected exactly once. */
export interface Delivery {
  /** The message. */
  readonly message: Message;
  /** The queue it came from. */
  readonly queue: string;
  /** Whether the broker delivered it before. */
  readonly redelivered: boolean;
  /** How many times it has been delivered, this time included (at least 1). */
  readonly deliveryCount: number;
  /** Removes the message from the broker. */
  ack(): Promise<void>;
  /**
   * Gives the message back (`requeue: true`) or drops it (or moves it to the dead-letter
   * queue, where the broker has one).
   */
  reject(options?: { requeue?: boolean }): Promise<void>;
}

/** A fan-out message, for remote control (pidbox) and events. */
export interface BroadcastMessage {
  /** The exchange, e.g. `celery.pidbox` or `celeryev`. */
  exchange: string;
  /** The routing key, e.g. `worker.heartbeat`. */
  routingKey: string;
  /** The message. */
  message: Message;
}

/**
 * A message broker. Implementations open their connections lazily, on first use, and
 * `close()` is idempotent.
 */
export interface Broker extends AsyncDisposable {
  /** The URL the broker was made from, with any password hidden. */
  readonly url: string;
  /** Puts a message on a queue. */
  publish(queue: string, message: Message, options?: PublishOptions): Promise<void>;
  /**
   * Puts a message on a queue once `eta` has passed. The broker keeps it (no worker holds it
   * in memory), so a long countdown survives restarts and is never run twice.
   */
  schedule(queue: string, message: Message, eta: Date, options?: PublishOptions): Promise<void>;
  /** Streams deliveries from the queues until `signal` aborts. */
  consume(queues: readonly string[], options?: ConsumeOptions): AsyncIterable<Delivery>;
  /** Removes every waiting message from a queue; returns how many. */
  purge(queue: string): Promise<number>;
  /** Publishes a fan-out message (pidbox commands, events). Optional. */
  broadcast?(message: BroadcastMessage): Promise<void>;
  /** Streams fan-out messages of an exchange. Optional. */
  subscribe?(
    exchange: string,
    options?: SubscribeOptions,
  ): AsyncIterable<BroadcastMessage>;
  /**
   * Publishes to a direct exchange: every queue bound to `exchange` with `routingKey` gets a
   * copy (pidbox replies to `reply.celery.pidbox`). Optional.
   */
  publishDirect?(exchange: string, routingKey: string, message: Message): Promise<void>;
  /**
   * Declares a private queue bound to the direct `exchange` with `routingKey`, streams its
   * messages until `signal` aborts, then unbinds and deletes it (pidbox reply queues). Optional.
   */
  consumeDirect?(
    exchange: string,
    routingKey: string,
    options: ConsumeDirectOptions,
  ): AsyncIterable<Message>;
  /**
   * Makes one connection attempt now (the App retries it as Celery's start-up does); it gives
   * up when `signal` aborts. Optional: brokers without a server need none.
   */
  connect?(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Declares the queues a worker will consume, so a refusal is reported before the worker
   * says it is ready. Optional.
   */
  declare?(queues: readonly string[]): Promise<void>;
  /** Closes connections; idempotent. */
  close(): Promise<void>;
}

/** Options of {@linkcode Broker.subscribe}. */
export interface SubscribeOptions {
  /** Ends the stream. */
  signal?: AbortSignal;
  /** Called once the subscription is in place (nothing published later is missed). */
  onReady?: () => void;
  /**
   * The name of the subscription's queue on brokers that have one (AMQP), e.g. the worker's
   * `<hostname>.celery.pidbox`. Unset: a fresh name (`celeryev.<uuid>` for events).
   */
  queue?: string;
  /** Message TTL of that queue in milliseconds (AMQP `x-message-ttl`). */
  messageTtl?: number;
  /** Unused-queue expiry of that queue in milliseconds (AMQP `x-expires`). */
  expires?: number;
}

/** Options of {@linkcode Broker.consumeDirect}. */
export interface ConsumeDirectOptions {
  /** The queue name, e.g. `<oid>.reply.celery.pidbox`. */
  queue: string;
  /** Ends the stream; the queue is deleted. */
  signal?: AbortSignal;
  /** Message TTL in milliseconds (AMQP `x-message-ttl`). */
  messageTtl?: number;
  /** Unused-queue expiry in milliseconds (AMQP `x-expires`). @default {10_000} */
  expires?: number;
  /**
   * Called once the queue is bound, so a command can be sent without losing early replies.
   */
  onReady?: () => void;
}
