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
  /**
   * Called for each message the broker dead-letters by itself, without a `reject()` from the
   * consumer: an envelope it cannot decode, one with no delivery tag, one delivered more than
   * `maxDeliveries` times, or a `reject({ requeue: true })` past `maxDeliveries`. The
   * consumer logs one line and sends `task-rejected`. Errors it throws are ignored.
   */
  onDeadLetter?: (event: DeadLetterEvent) => void;
}

/** A message the broker moved to its dead-letter queue by itself. */
export interface DeadLetterEvent {
  /** The queue it came from. */
  queue: string;
  /** Why, in words (e.g. `envelope is not JSON`, `delivered 11 times (maxDeliveries 10)`). */
  reason: string;
  /** The message, or `null` when it could not be decoded. */
  message: Message | null;
  /** The start of the stored text, when the message could not be decoded. */
  raw?: string;
}

/** Options of {@linkcode Delivery.reject}. */
export interface DeliveryRejectOptions {
  /**
   * `true`: back on its queue (dead-lettered instead past `maxDeliveries`); `false`: to the
   * dead-letter queue (`<queue>.dlq`).
   * @default {false}
   */
  requeue?: boolean;
  /**
   * Why it is dead-lettered; kept with the dead-lettered entry (the
   * {@linkcode DEAD_LETTER_REASON_HEADER} header) where the broker's layout allows.
   */
  reason?: string;
}

/** The header that carries why a message was dead-lettered, on the dead-lettered copy. */
export const DEAD_LETTER_REASON_HEADER = "x-celeriac-dead-letter-reason";

/** One message handed to a consumer; it must be acked or rejected (once; more calls are no-ops). */
export interface Delivery {
  /** The message. */
  readonly message: Message;
  /** The queue it came from. */
  readonly queue: string;
  /** Whether the broker delivered it before. */
  readonly redelivered: boolean;
  /** How many times it has been delivered, this time included (at least 1). */
  readonly deliveryCount: number;
  /**
   * Removes the message from the broker. A delivery settles once: a second `ack()` or
   * `reject()` does nothing and returns the first settle's promise.
   */
  ack(): Promise<void>;
  /**
   * Gives the message back (`requeue: true`) or moves it to the dead-letter queue with its
   * `reason`. Settles once, as `ack()`.
   */
  reject(options?: DeliveryRejectOptions): Promise<void>;
}

/** Options the scheme registry passes to every broker it makes from a URL. */
export interface BrokerConnectOptions {
  /**
   * Deliveries after which a message goes to the dead-letter queue instead of back to its
   * queue.
   * @default {10}
   */
  maxDeliveries?: number;
  /** Transport-specific options, by name. */
  transportOptions?: Record<string, unknown>;
  /** Receives errors of a connection that was up (its client reconnects by itself). */
  onError?: (error: Error) => void;
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
 *
 * The consume loop is written once (`lib/transport/consume.ts`); a broker supplies its hooks.
 * Optional admin members (queue counts, dead-letter list/replay/purge) belong beside
 * `broadcast`/`subscribe` below, as optional methods every broker may implement.
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
  /**
   * How a client (`sendTask` with `countdown`/`eta`) sends an ETA task: `"queue"` publishes it
   * at once with its `eta` header, as Celery's clients do, and the worker that takes it waits
   * (a celeriac worker hands a far one back to {@linkcode schedule}); `"schedule"` or unset
   * calls {@linkcode schedule}.
   */
  readonly producerEta?: "queue" | "schedule";
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
  /**
   * Admin: counts of each queue's messages (waiting, delivered and unacked, scheduled for an
   * ETA, dead-lettered), for dashboards. Optional. A count the broker cannot tell is `null`.
   */
  queueCounts?(queues: readonly string[]): Promise<QueueCounts[]>;
  /**
   * Admin: the scheduled (ETA) messages of a queue, soonest first. Optional.
   */
  browseScheduled?(queue: string, options?: BrowseOptions): Promise<ScheduledMessage[]>;
  /**
   * Admin: the dead letters of a queue, oldest first, each with an id that
   * {@linkcode Broker.replayDeadLetters} takes. Optional. (Named `browse...` because several
   * brokers already have a `deadLetters(queue)` of their own, returning plain messages.)
   */
  browseDeadLetters?(queue: string, options?: BrowseOptions): Promise<DeadLetter[]>;
  /**
   * Admin: moves dead letters back onto their queue (all of them, or those with the given
   * ids), with their delivery count reset. Optional.
   *
   * @returns How many were moved.
   */
  replayDeadLetters?(queue: string, ids?: readonly string[]): Promise<number>;
  /**
   * Admin: deletes every dead letter of a queue. Optional.
   *
   * @returns How many were deleted.
   */
  purgeDeadLetters?(queue: string): Promise<number>;
}

/** Counts of one queue, from {@linkcode Broker.queueCounts}. */
export interface QueueCounts {
  /** The queue. */
  queue: string;
  /** Messages waiting to be delivered. */
  waiting: number;
  /** Messages delivered and not yet acked (Redis `unacked`, KV leases); `null`: unknown. */
  reserved: number | null;
  /** Messages held for their ETA by the broker; `null`: unknown. */
  scheduled: number | null;
  /** Messages in the dead-letter queue; `null`: unknown. */
  deadLettered: number | null;
}

/** Options of the admin browse methods. */
export interface BrowseOptions {
  /**
   * Most entries returned.
   * @default {100}
   */
  limit?: number;
}

/** A dead letter, from {@linkcode Broker.browseDeadLetters}. */
export interface DeadLetter {
  /** Its id within the dead-letter queue (the task id where the broker keys by it). */
  id: string;
  /** The message. */
  message: Message;
  /** Why it was dead-lettered, when the broker recorded it. */
  reason?: string;
}

/** A scheduled message, from {@linkcode Broker.browseScheduled}. */
export interface ScheduledMessage {
  /** Its id (the task id where known). */
  id: string;
  /** When it becomes due, in ms since the epoch. */
  eta: number;
  /** The message. */
  message: Message;
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
