/**
 * `amqp://` / `amqps://`: RabbitMQ (AMQP 0-9-1) through amqplib, with Celery's layout
 * (CELERY_PROTOCOL.md §2.3, kombu `transport/pyamqp.py`):
 *
 * - each queue is durable and bound to a durable direct exchange of the same name with routing
 *   key = queue; tasks are published to the default exchange `''` with routing key = queue,
 *   persistent, headers as an AMQP field table (see `_amqp_table.ts` for the number typing
 *   py-amqp needs), publisher confirms on;
 * - consumers take `prefetch` (channel-wide `basic.qos`, as Celery) on their own channel and
 *   come back by themselves after a lost connection; RabbitMQ requeues what was unacked;
 * - `reject({ requeue: true })` republishes the message with an `x-celeriac-delivery-count`
 *   header and acks the original (quorum queues: native `nack` and `x-delivery-count`), so the
 *   delivery count is exact for rejections and best-effort (+1 when `redelivered`) for
 *   connection losses; once it reaches `maxDeliveries`, and on `reject()` without requeue, the
 *   message moves to the durable queue `<queue>.dlq`. A republish happens before the ack, so a
 *   crash in between duplicates rather than loses. Native dead-letter arguments are not put on
 *   task queues because Python Celery declares the same queues without them (a mismatch is a
 *   `PRECONDITION_FAILED`);
 * - `schedule()` parks messages in TTL queues, never in a worker: Celery 5.5+'s
 *   `celery_delayed_*` for quorum queues (`_amqp_native_delay.ts`, `delayedDelivery`), else
 *   celeriac's `celeriac.delay.*` (`_amqp_delay.ts`); workers bind their queues to
 *   `celery_delayed_delivery` as a Celery 5.5+ worker does;
 * - an adopted queue's type and `x-delivery-limit` are read from RabbitMQ's answers to a declare
 *   (`_amqp_queue_probe.ts`): a quorum queue gets per-consumer QoS, native `nack` requeues, and
 *   `maxDeliveries` capped at `x-delivery-limit` + 1 so it reaches `<queue>.dlq` before RabbitMQ
 *   drops it;
 * - remote control and events use Celery's exchanges and queues (§2.4, §2.6): commands go to
 *   the fanout `celery.pidbox` (non-durable), each worker consumes `<hostname>.celery.pidbox`;
 *   replies go to the direct `reply.celery.pidbox` and its `<oid>.reply.celery.pidbox`
 *   queues (both auto-delete, `x-message-ttl` 300 s, `x-expires` 10 s); events go to the
 *   durable topic `celeryev` as transient messages, read through `celeryev.<uuid>` queues
 *   bound with `#` (auto-delete, TTL 5 s, expiry 60 s). These queues are consumed without acks.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";
import { Buffer } from "node:buffer";
import { delay } from "../_signal.ts";
import { CeleriacError } from "../errors.ts";
import type { Message, MessageProperties } from "../protocol/message.ts";
import { redact } from "../_url.ts";
import {
  type BroadcastMessage,
  type Broker,
  type ConsumeDirectOptions,
  type ConsumeOptions,
  DEAD_LETTER_REASON_HEADER,
  type Delivery,
  type PublishOptions,
  type QueueCounts,
  type SubscribeOptions,
} from "./broker.ts";
import { amqpPurgeDeadLetters, amqpQueueCounts } from "./amqp_admin.ts";
import {
  checkMaxDeliveries,
  checkQueue,
  consumeLoop,
  type ConsumerContext,
  type ConsumerHooks,
  type RawDelivery,
} from "../transport/consume.ts";
import { PushChannel } from "../transport/channel.ts";
import { AmqpConnection, type AmqpConnectionOptions } from "./_amqp_connection.ts";
import {
  bindDelayDestination,
  declareDelayTopology,
  DELAY_ENTRY_EXCHANGE,
  DELAY_HEADER,
  delayRoutingKey,
  stripDelayHeaders,
} from "./_amqp_delay.ts";
import {
  bindNativeDelayDestination,
  declareNativeDelayTopology,
  NATIVE_DELIVERY_EXCHANGE,
  NATIVE_ENTRY_EXCHANGE,
  type NativeDelayQueueType,
  nativeRoutingKey,
  stripNativeDelayHeaders,
} from "./_amqp_native_delay.ts";
import { probeQueue } from "./_amqp_queue_probe.ts";
import { ChannelAcks } from "./_amqp_acks.ts";
import { fromFieldTable, toFieldTable } from "./_amqp_table.ts";
import { bodyFromBytes, bodyToBytes } from "../protocol/body.ts";

/** The header celeriac uses to count deliveries on classic queues. */
export const DELIVERY_COUNT_HEADER = "x-celeriac-delivery-count";

/** Options of {@linkcode AmqpBroker}. */
export interface AmqpBrokerOptions extends AmqpConnectionOptions {
  /**
   * Deliveries after which a rejected-with-requeue message goes to `<queue>.dlq`.
   * @default {10}
   */
  maxDeliveries?: number;
  /**
   * `x-max-priority` of every task queue declared (Celery's `task_queue_max_priority`).
   * Unset: queues have no priorities.
   */
  maxPriority?: number;
  /**
   * Extra arguments of every task queue declared, e.g. `{"x-queue-type": "quorum"}`. They
   * must match how the queue already exists, or declaring fails with
   * {@linkcode AmqpQueueMismatchError}.
   * @default {{}}
   */
  queueArguments?: Record<string, unknown>;
  /**
   * The type of task queues celeriac creates (Celery 5.5's `task_default_queue_type` and
   * `task_create_missing_queue_type`): `"quorum"` declares `x-queue-type: quorum` (as kombu
   * 5.2 does through `queue_arguments`), takes no priorities and uses per-consumer QoS. A queue
   * that already exists is adopted with its own type and arguments either way.
   * @default {"classic"}
   */
  queueType?: "classic" | "quorum";
  /** Celery 5.5's name for {@linkcode queueType} (used when `queueType` is unset). */
  taskCreateMissingQueueType?: "classic" | "quorum";
  /** Celery 5.5's `task_default_queue_type` (used when neither of the above is set). */
  taskDefaultQueueType?: "classic" | "quorum";
  /**
   * The type of the exchange named after each task queue when celeriac creates it (Celery's
   * `task_default_exchange_type`). An existing exchange is adopted with its own type.
   * @default {"direct"}
   */
  exchangeType?: "direct" | "topic";
  /**
   * Exchange types for `broadcast`/`subscribe`, by name. Unlisted: `reply.*` is direct,
   * `*.pidbox` fanout, anything else topic (as `celeryev`).
   * @default {{}}
   */
  exchangeTypes?: Record<string, "direct" | "fanout" | "topic">;
  /**
   * Which delay topology countdowns and ETAs take (see the README, "RabbitMQ"):
   * - `"auto"`: Celery 5.5+'s rule. A countdown to a quorum queue goes through Celery's
   *   `celery_delayed_*` (declared as kombu declares it, unless it exists), anything else
   *   through celeriac's `celeriac.delay.*` (millisecond levels). A worker binds its queues to
   *   `celery_delayed_delivery` when one of them is quorum (declaring the topology, as a Celery
   *   5.5+ worker does) or when the topology exists.
   * - `"celery"`: every countdown through `celery_delayed_*`; workers always declare and bind.
   * - `"celeriac"`: only `celeriac.delay.*`; workers do not bind to `celery_delayed_delivery`.
   *
   * Countdowns under a second, and the part under a second that Celery's whole-second levels
   * leave (the worker holds it), use neither: they are held by the worker or take
   * `celeriac.delay.*`.
   * @default {"auto"}
   */
  delayedDelivery?: "auto" | "celery" | "celeriac";
  /**
   * Celery's `broker_native_delayed_delivery_queue_type`: the type of the `celery_delayed_*`
   * queues when celeriac declares them (an existing topology is adopted as it is).
   * @default {"quorum"}
   */
  brokerNativeDelayedDeliveryQueueType?: NativeDelayQueueType;
}

/** What celeriac knows of a task queue once declared or adopted. */
interface QueueInfo {
  /** It is a quorum queue (no global QoS, no priorities, native delayed delivery). */
  quorum: boolean;
  /** Its `x-delivery-limit`, when it has one. */
  deliveryLimit: number | null;
  /** Its exchange (same name) is a topic exchange, when known. */
  topic: boolean | null;
}

/** A queue exists with other arguments than celeriac declares (`PRECONDITION_FAILED`). */
export class AmqpQueueMismatchError extends CeleriacError {
  /** The queue. */
  readonly queue: string;
  /** The mismatched property RabbitMQ named (`x-queue-type`, `type`, ...), if it named one. */
  readonly property: string | null;
  /**
   * Creates the error.
   *
   * @param queue The queue.
   * @param options The cause (RabbitMQ's 406 error).
   */
  constructor(queue: string, options?: ErrorOptions) {
    const detail = (options?.cause as Error | undefined)?.message ?? "";
    const property = /inequivalent arg '([^']+)'/.exec(detail)?.[1] ?? null;
    const onExchange = / for exchange /.test(detail);
    const hint = property === "type" && onExchange
      ? `the exchange "${queue}" exists with another type: set exchangeType to match it`
      : property === "x-queue-type"
      ? `the queue exists with another x-queue-type: set queueType to match it`
      : property === "x-max-priority"
      ? `the queue exists with another x-max-priority: set maxPriority to match it`
      : property
      ? `the ${
        onExchange ? "exchange" : "queue"
      } differs in "${property}": match it in queueArguments`
      : `use the same queueType/maxPriority/queueArguments as the existing queue, or delete it`;
    super(
      `Cannot declare queue "${queue}": it already exists with different ` +
        `${property ? `"${property}"` : "arguments"} (${detail}). ${hint}`,
      options,
    );
    this.name = "AmqpQueueMismatchError";
    this.queue = queue;
    this.property = property;
  }
}

/** Options of {@linkcode AmqpBroker.subscribe}. */
export interface AmqpSubscribeOptions extends SubscribeOptions {
  /**
   * Binding key: `#` (topic), `''` (fanout), required meaning for direct exchanges.
   * @default {"#"}
   */
  routingKey?: string;
  /** More queue arguments, merged over the TTLs (e.g. `{"x-max-length": 1000}`). */
  queueArguments?: Record<string, unknown>;
}

/** Celery's `event_queue_ttl` (5 s) and `event_queue_expires` (60 s), in milliseconds. */
export const EVENT_QUEUE_TTL = 5_000;
/** Celery's `event_queue_expires`, in milliseconds. */
export const EVENT_QUEUE_EXPIRES = 60_000;
/** Celery's `control_queue_ttl` (300 s), in milliseconds. */
export const CONTROL_QUEUE_TTL = 300_000;
/** Celery's `control_queue_expires` (10 s), in milliseconds. */
export const CONTROL_QUEUE_EXPIRES = 10_000;

/**
 * The queue a subscription to `exchange` consumes from, as Celery names and declares it:
 * `*.pidbox` exchanges get `<queue or uuid>.celery.pidbox`-style queues with the control TTLs
 * (`celery/app/control.py`, `kombu/pidbox.py`), other exchanges (`celeryev`) get
 * `<exchange>.<uuid>` with the event TTLs (`celery/events/receiver.py`).
 *
 * @param exchange The exchange.
 * @param options Queue name, TTLs and extra arguments.
 * @returns The queue name and its arguments.
 * @example
 * ```ts
 * import { subscriptionLayout } from "./amqp.ts";
 * subscriptionLayout("celeryev").arguments; // {"x-message-ttl": 5000, "x-expires": 60000}
 * ```
 */
export function subscriptionLayout(
  exchange: string,
  options: AmqpSubscribeOptions = {},
): { queue: string; arguments: Record<string, unknown> } {
  const pidbox = exchange.endsWith(".pidbox");
  const queue = options.queue ??
    (pidbox ? `${crypto.randomUUID()}.${exchange}` : `${exchange}.${crypto.randomUUID()}`);
  return {
    queue,
    arguments: {
      "x-message-ttl": options.messageTtl ?? (pidbox ? CONTROL_QUEUE_TTL : EVENT_QUEUE_TTL),
      "x-expires": options.expires ?? (pidbox ? CONTROL_QUEUE_EXPIRES : EVENT_QUEUE_EXPIRES),
      ...options.queueArguments,
    },
  };
}

const errorCode = (e: unknown) => (e as { code?: number })?.code;

function toAmqpProperties(message: Message, priority?: number): amqp.Options.Publish {
  const p = message.properties;
  const out: amqp.Options.Publish = {
    contentType: message.contentType,
    contentEncoding: message.contentEncoding,
    headers: toFieldTable(message.headers),
    deliveryMode: p.delivery_mode ?? 2,
  };
  const prio = priority ?? p.priority;
  if (typeof prio === "number") out.priority = prio;
  if (p.correlation_id) out.correlationId = p.correlation_id;
  if (p.reply_to) out.replyTo = p.reply_to;
  if (p.expiration !== undefined && p.expiration !== null) out.expiration = String(p.expiration);
  if (typeof p.message_id === "string") out.messageId = p.message_id;
  if (typeof p.type === "string") out.type = p.type;
  if (typeof p.app_id === "string") out.appId = p.app_id;
  return out;
}

function fromAmqpMessage(msg: amqp.Message): Message {
  const p = msg.properties;
  const headers = stripNativeDelayHeaders(stripDelayHeaders(fromFieldTable(p.headers)));
  const properties: MessageProperties = {};
  if (p.correlationId !== undefined) properties.correlation_id = p.correlationId;
  if (p.replyTo !== undefined) properties.reply_to = p.replyTo;
  if (p.deliveryMode !== undefined) properties.delivery_mode = p.deliveryMode;
  if (p.priority !== undefined) properties.priority = p.priority;
  if (p.expiration !== undefined) properties.expiration = String(p.expiration);
  if (p.messageId !== undefined) properties.message_id = p.messageId;
  if (p.type !== undefined) properties.type = p.type;
  if (p.appId !== undefined) properties.app_id = p.appId;
  const contentEncoding = p.contentEncoding ?? "utf-8";
  return {
    headers,
    properties,
    body: bodyFromBytes(msg.content, contentEncoding, headers),
    contentType: p.contentType ?? "application/json",
    contentEncoding,
  };
}

interface ConsumerSession {
  channel: amqp.Channel;
  broken: boolean;
  /** Consumer tags, to cancel them when the stream ends. */
  tags: string[];
  /** Deliveries handed out and not yet settled. */
  outstanding: number;
  /** The stream ended: close the channel once nothing is outstanding. */
  draining: boolean;
  /** Its acks, sent together once per turn. */
  acks: ChannelAcks;
}

interface AmqpDelivery extends RawDelivery {
  readonly session: ConsumerSession;
  readonly msg: amqp.Message;
}

// The bare content of a message that could not be decoded, for its dead-lettered copy.
function fromRawContent(msg: amqp.Message): Message {
  return {
    headers: {},
    properties: {},
    body: msg.content.toString("utf8"),
    contentType: typeof msg.properties.contentType === "string"
      ? msg.properties.contentType
      : "application/octet-stream",
    contentEncoding: typeof msg.properties.contentEncoding === "string"
      ? msg.properties.contentEncoding
      : "binary",
  };
}

// Closes a session's channel once: its pending acks leave first.
function closeSession(session: ConsumerSession): Promise<void> {
  session.acks.flush();
  session.broken = true;
  return session.channel.close().catch(() => {});
}

function release(session: ConsumerSession): void {
  session.outstanding--;
  if (session.draining && session.outstanding <= 0 && !session.broken) void closeSession(session);
}

/**
 * A RabbitMQ broker.
 *
 * @example
 * ```ts ignore
 * import { AmqpBroker } from "./amqp.ts";
 * import { encodeTask } from "../protocol/message.ts";
 * await using broker = new AmqpBroker("amqp://guest:guest@localhost:5672//");
 * await broker.publish("celery", encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} }));
 * ```
 */
export class AmqpBroker implements Broker {
  readonly url: string;
  readonly #conn: AmqpConnection;
  readonly #options: AmqpBrokerOptions;
  readonly #maxDeliveries: number;
  #publisher: { generation: number; channel: Promise<amqp.ConfirmChannel> } | null = null;
  #declared = new Set<string>();
  #delayReady: Promise<void> | null = null;
  #delayBound = new Set<string>();
  #queueInfo = new Map<string, QueueInfo>();
  #nativeReady: Promise<void> | null = null;
  #nativeBound = new Set<string>();
  #closing: Promise<void> | null = null;
  #sessions = new Set<ConsumerSession>();
  #exchangesDeclared = new WeakMap<amqp.Channel, Set<string>>();

  /**
   * Creates the broker; it connects on first use.
   *
   * @param url `amqp://user:pass@host:5672/vhost` or `amqps://...`.
   * @param options Options.
   * @throws {TypeError} For an invalid URL.
   */
  constructor(url: string, options: AmqpBrokerOptions = {}) {
    this.url = redact(url);
    const queueType = options.queueType ?? options.taskCreateMissingQueueType ??
      options.taskDefaultQueueType;
    this.#options = queueType === undefined ? options : { ...options, queueType };
    this.#maxDeliveries = checkMaxDeliveries(options.maxDeliveries);
    if (options.maxPriority !== undefined) {
      const n = options.maxPriority;
      if (!Number.isInteger(n) || n < 1 || n > 255) {
        throw new RangeError(`Cannot set maxPriority: it must be an integer 1..255, got ${n}`);
      }
    }
    if (queueType === "quorum" && options.maxPriority !== undefined) {
      throw new RangeError(
        "Cannot set maxPriority with queueType quorum: quorum queues have no priorities",
      );
    }
    const mode = options.delayedDelivery;
    if (mode !== undefined && mode !== "auto" && mode !== "celery" && mode !== "celeriac") {
      throw new RangeError(
        `Cannot set delayedDelivery: it must be "auto", "celery" or "celeriac", got ${mode}`,
      );
    }
    const nativeType = options.brokerNativeDelayedDeliveryQueueType;
    if (nativeType !== undefined && nativeType !== "classic" && nativeType !== "quorum") {
      throw new RangeError(
        `Cannot set brokerNativeDelayedDeliveryQueueType: it must be "classic" or "quorum", got ${nativeType}`,
      );
    }
    this.#conn = new AmqpConnection(url, options);
  }

  /**
   * Makes one connection attempt now, unless connected.
   *
   * @param options `signal` gives up the attempt.
   * @returns When connected.
   */
  async connect(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#conn.connect(options.signal);
  }

  /**
   * Declares the task queues (durable queue, direct exchange, binding) as `consume` does, so a
   * refusal (`PRECONDITION_FAILED`, `ACCESS_REFUSED`) surfaces before a worker is ready.
   *
   * @param queues The queues.
   * @returns When declared.
   * @throws {AmqpQueueMismatchError} When a queue exists with other arguments.
   */
  async declare(queues: readonly string[]): Promise<void> {
    for (const queue of queues) {
      await this.#withPublisher((ch) => this.#declareQueue(ch, queue));
    }
  }

  /** The underlying connection manager (tests force-close its socket). */
  get connection(): AmqpConnection {
    return this.#conn;
  }

  #queueArguments(): Record<string, unknown> {
    const args: Record<string, unknown> = { ...this.#options.queueArguments };
    if (this.#options.queueType === "quorum") args["x-queue-type"] = "quorum";
    if (this.#options.maxPriority !== undefined) args["x-max-priority"] = this.#options.maxPriority;
    return args;
  }

  #isQuorum(): boolean {
    return this.#options.queueType === "quorum" ||
      this.#options.queueArguments?.["x-queue-type"] === "quorum";
  }

  // Whether a queue and its exchange exist, by passive declares on throw-away channels (a 404
  // closes the channel it happens on).
  async #existing(queue: string): Promise<{ queue: boolean; exchange: boolean }> {
    return {
      queue: await this.#probe(404, (ch) => ch.checkQueue(queue)),
      exchange: await this.#probe(404, (ch) => ch.checkExchange(queue)),
    };
  }

  // Runs `check` on a throw-away channel: true when it passes, false on the refusal `code`.
  async #probe(code: number, check: (ch: amqp.Channel) => Promise<unknown>): Promise<boolean> {
    const model = await this.#conn.connection();
    const ch = await model.createChannel();
    ch.on("error", () => {});
    try {
      await check(ch);
      return true;
    } catch (cause) {
      if (errorCode(cause) === code) return false;
      throw cause;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  // What a queue declared with celeriac's options is.
  #ownQueueInfo(): QueueInfo {
    const limit = this.#options.queueArguments?.["x-delivery-limit"];
    return {
      quorum: this.#isQuorum(),
      deliveryLimit: typeof limit === "number" ? limit : null,
      topic: (this.#options.exchangeType ?? "direct") === "topic",
    };
  }

  // What an adopted queue is (probed once; see `_amqp_queue_probe.ts`).
  async #adoptedQueueInfo(queue: string): Promise<QueueInfo> {
    const found = await probeQueue(await this.#conn.connection(), queue);
    if (!found) return { ...this.#ownQueueInfo(), topic: null };
    const limit = found.arguments["x-delivery-limit"];
    return {
      quorum: found.type === "quorum",
      deliveryLimit: found.type === "quorum" && typeof limit === "number" ? limit : null,
      topic: null,
    };
  }

  // Declares a task queue, its exchange and binding; an existing queue or exchange is adopted
  // as it is (its type and arguments: a Celery quorum queue, a topic exchange).
  async #declareTaskQueue(ch: amqp.Channel, queue: string): Promise<void> {
    try {
      const found = await this.#existing(queue);
      let info = this.#queueInfo.get(queue);
      if (!found.queue) {
        await ch.assertQueue(queue, { durable: true, arguments: this.#queueArguments() });
        info = this.#ownQueueInfo();
      } else if (!info) {
        info = await this.#adoptedQueueInfo(queue);
      }
      if (!found.exchange) {
        await ch.assertExchange(queue, this.#options.exchangeType ?? "direct", { durable: true });
        info = { ...info!, topic: (this.#options.exchangeType ?? "direct") === "topic" };
      }
      this.#queueInfo.set(queue, info!);
      await ch.bindQueue(queue, queue, queue);
    } catch (cause) {
      if (errorCode(cause) === 406) throw new AmqpQueueMismatchError(queue, { cause });
      throw cause;
    }
  }

  async #publishChannel(): Promise<amqp.ConfirmChannel> {
    const model = await this.#conn.connection();
    const generation = this.#conn.generation;
    if (!this.#publisher || this.#publisher.generation !== generation) {
      const channel = model.createConfirmChannel().then((ch) => {
        ch.on("error", () => {});
        ch.on("close", () => {
          if (this.#publisher?.channel === channel) this.#publisher = null;
        });
        return ch;
      });
      this.#publisher = { generation, channel };
      channel.catch(() => {
        if (this.#publisher?.channel === channel) this.#publisher = null;
      });
    }
    return this.#publisher.channel;
  }

  // Runs `fn` on the publishing channel; retries on a lost connection (not on a server
  // refusal such as PRECONDITION_FAILED, which is a mistake to report).
  async #withPublisher<T>(fn: (ch: amqp.ConfirmChannel) => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.#options.connectTimeout ?? 30_000);
    let wait = 50;
    while (true) {
      if (this.#closing) throw new CeleriacError("Cannot use the AMQP broker: it is closed");
      try {
        return await fn(await this.#publishChannel());
      } catch (error) {
        const code = errorCode(error);
        if (error instanceof CeleriacError || error instanceof RangeError) throw error;
        if (typeof code === "number" && code >= 400 && code < 600 && code !== 320) throw error;
        if (Date.now() > deadline || this.#closing) throw error;
        await delay(wait);
        wait = Math.min(wait * 2, 1_000);
      }
    }
  }

  async #declareQueue(ch: amqp.Channel, queue: string): Promise<void> {
    if (this.#declared.has(queue)) return;
    await this.#declareTaskQueue(ch, queue);
    this.#declared.add(queue);
  }

  #send(
    ch: amqp.ConfirmChannel,
    exchange: string,
    routingKey: string,
    content: Buffer,
    properties: amqp.Options.Publish,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      try {
        ch.publish(exchange, routingKey, content, properties, (err) => {
          if (err) reject(err instanceof Error ? err : new CeleriacError(String(err)));
          else resolve();
        });
      } catch (error) {
        reject(error);
      }
    });
  }

  /**
   * Publishes to the default exchange with routing key = queue, persistent, and waits for
   * RabbitMQ's confirm.
   *
   * @param queue The queue (declared on first use).
   * @param message The message.
   * @param options Priority.
   * @returns Nothing.
   * @throws {AmqpQueueMismatchError} When the queue exists with other arguments.
   */
  publish(queue: string, message: Message, options: PublishOptions = {}): Promise<void> {
    try {
      checkQueue(queue);
    } catch (error) {
      return Promise.reject(error);
    }
    const properties = toAmqpProperties(message, options.priority);
    const content = Buffer.from(
      bodyToBytes(message.body, message.contentEncoding, message.headers),
    );
    return this.#withPublisher(async (ch) => {
      await this.#declareQueue(ch, queue);
      await this.#send(ch, "", queue, content, properties);
    });
  }

  /**
   * Publishes once `eta` has passed, through the TTL levels of `_amqp_delay.ts`: the message
   * waits in RabbitMQ, not in a worker. The per-message `expiration` is dropped (it would
   * shorten the delay); the worker still honours the `expires` header.
   *
   * @param queue The queue.
   * @param message The message.
   * @param eta When to deliver.
   * @param options Priority.
   * @returns Nothing.
   * @throws {RangeError} For an ETA more than 2^38 ms (~8.7 years) away.
   */
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
    const ms = Math.ceil(eta.getTime() - Date.now());
    if (ms <= 0) return this.publish(queue, message, options);
    const routingKey = delayRoutingKey(ms);
    const properties = toAmqpProperties(message, options.priority);
    delete properties.expiration;
    const content = Buffer.from(
      bodyToBytes(message.body, message.contentEncoding, message.headers),
    );
    return this.#withPublisher(async (ch) => {
      await this.#declareQueue(ch, queue);
      // Celery's rule (celery/app/base.py `send_task`): whole seconds, truncated, through
      // `celery_delayed_27`; the worker holds the part under a second.
      const seconds = Math.floor(ms / 1000);
      if (seconds >= 1 && this.#nativeFor(queue)) {
        await this.#nativeTopology();
        await this.#bindNative(queue);
        await this.#send(ch, NATIVE_ENTRY_EXCHANGE, nativeRoutingKey(seconds, queue), content, {
          ...properties,
        });
        return;
      }
      properties.headers = { ...properties.headers, [DELAY_HEADER]: queue };
      this.#delayReady ??= declareDelayTopology(ch).catch((e) => {
        this.#delayReady = null;
        throw e;
      });
      await this.#delayReady;
      if (!this.#delayBound.has(queue)) {
        await bindDelayDestination(ch, queue);
        this.#delayBound.add(queue);
      }
      await this.#send(ch, DELAY_ENTRY_EXCHANGE, routingKey, content, properties);
    });
  }

  #delayMode(): "auto" | "celery" | "celeriac" {
    return this.#options.delayedDelivery ?? "auto";
  }

  // Whether a countdown to `queue` (declared) takes Celery's `celery_delayed_*`.
  #nativeFor(queue: string): boolean {
    const mode = this.#delayMode();
    return mode === "celery" || mode === "auto" && this.#queueInfo.get(queue)?.quorum === true;
  }

  // Runs `fn` on a throw-away channel (a refusal closes the channel it happens on).
  async #onChannel<T>(fn: (ch: amqp.Channel) => Promise<T>): Promise<T> {
    const model = await this.#conn.connection();
    const ch = await model.createChannel();
    ch.on("error", () => {});
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => {});
    }
  }

  // Celery's `celery_delayed_*`: adopted when `celery_delayed_delivery` exists, else declared
  // as kombu declares it; once per broker.
  #nativeTopology(): Promise<void> {
    this.#nativeReady ??= (async () => {
      if (await this.#probe(404, (c) => c.checkExchange(NATIVE_DELIVERY_EXCHANGE))) return;
      const type = this.#options.brokerNativeDelayedDeliveryQueueType ?? "quorum";
      await this.#onChannel((c) => declareNativeDelayTopology(c, type));
    })().catch((e) => {
      this.#nativeReady = null;
      throw e;
    });
    return this.#nativeReady;
  }

  // Binds a declared task queue to `celery_delayed_delivery` (see `_amqp_native_delay.ts`).
  async #bindNative(queue: string): Promise<void> {
    if (this.#nativeBound.has(queue)) return;
    const topic = this.#queueInfo.get(queue)?.topic ??
      await this.#probe(406, (c) => c.assertExchange(queue, "topic", { durable: true }));
    await this.#onChannel((c) => bindNativeDelayDestination(c, queue, topic));
    this.#nativeBound.add(queue);
  }

  // What a Celery 5.5+ worker's `DelayedDelivery` bootstep does for its queues: when one is
  // quorum (or `delayedDelivery` is "celery"), declare the topology and bind them all; with
  // "auto", also bind them when the topology exists. A failure is reported, not fatal (as in
  // Celery): the queues are still consumed.
  async #setUpNativeDelivery(queues: readonly string[]): Promise<void> {
    const mode = this.#delayMode();
    if (mode === "celeriac") return;
    try {
      const wanted = mode === "celery" ||
        queues.some((q) => this.#queueInfo.get(q)?.quorum === true) ||
        await this.#probe(404, (c) => c.checkExchange(NATIVE_DELIVERY_EXCHANGE));
      if (!wanted) return;
      await this.#nativeTopology();
      for (const queue of queues) await this.#bindNative(queue);
    } catch (error) {
      if (this.#closing) return;
      this.#options.onError?.(
        new CeleriacError(
          `Cannot set up Celery's native delayed delivery (celery_delayed_*) for ${
            queues.join(", ")
          }: ${(error as Error).message}`,
          { cause: error },
        ),
      );
    }
  }

  async #openSession(
    queues: readonly string[],
    prefetch: number,
    onMessage: (session: ConsumerSession, queue: string, msg: amqp.Message | null) => void,
    wake: () => void,
  ): Promise<ConsumerSession> {
    const model = await this.#conn.connection();
    const channel = await model.createChannel();
    const session: ConsumerSession = {
      channel,
      broken: false,
      tags: [],
      outstanding: 0,
      draining: false,
      acks: new ChannelAcks(channel),
    };
    channel.on("error", () => {});
    channel.on("close", () => {
      session.broken = true;
      wake();
    });
    try {
      for (const queue of queues) await this.#declareTaskQueue(channel, queue);
      // Celery sets global QoS; quorum queues refuse it (RabbitMQ closes the whole connection
      // with NOT_IMPLEMENTED), so a set with a quorum queue (declared or adopted) gets
      // per-consumer QoS, as does a single queue (the same limit).
      const quorum = this.#isQuorum() || queues.some((q) => this.#queueInfo.get(q)?.quorum);
      await channel.prefetch(prefetch, !quorum && queues.length > 1);
      await this.#setUpNativeDelivery(queues);
      for (const queue of queues) {
        const { consumerTag } = await channel.consume(
          queue,
          (msg) => onMessage(session, queue, msg),
          { noAck: false },
        );
        session.tags.push(consumerTag);
      }
    } catch (error) {
      await channel.close().catch(() => {});
      throw error;
    }
    return session;
  }

  // What one claimed message is to the consume loop.
  #delivery(session: ConsumerSession, queue: string, msg: amqp.Message): AmqpDelivery {
    let message: Message;
    try {
      message = fromAmqpMessage(msg);
    } catch (cause) {
      return {
        session,
        msg,
        message: null,
        queue,
        redelivered: msg.fields.redelivered,
        deliveryCount: msg.fields.redelivered ? 2 : 1,
        error: `the message could not be decoded: ${(cause as Error).message}`,
        raw: msg.content.subarray(0, 4096).toString("utf8"),
      };
    }
    // A quorum queue counts returns in `x-delivery-count` (absent on a first delivery).
    const info = this.#queueInfo.get(queue);
    const quorumCount = message.headers["x-delivery-count"];
    const prior = message.headers[DELIVERY_COUNT_HEADER];
    delete message.headers[DELIVERY_COUNT_HEADER];
    delete message.headers["x-delivery-count"];
    const deliveryCount = typeof quorumCount === "number"
      ? quorumCount + 1
      : (typeof prior === "number" ? prior : 0) + 1 + (msg.fields.redelivered ? 1 : 0);
    const delivery: AmqpDelivery = {
      session,
      msg,
      message,
      queue,
      redelivered: msg.fields.redelivered || deliveryCount > 1,
      deliveryCount,
    };
    // RabbitMQ drops (or dead-letters to the queue's own x-dead-letter-exchange) a message
    // returned more than x-delivery-limit times; celeriac dead-letters it to <queue>.dlq on the
    // last delivery RabbitMQ allows instead, when that comes before maxDeliveries.
    if (info?.deliveryLimit !== null && info?.deliveryLimit !== undefined) {
      const limit = Math.max(1, info.deliveryLimit + 1);
      if (limit < this.#maxDeliveries) return { ...delivery, maxDeliveries: limit };
    }
    return delivery;
  }

  // Acks on the delivery's channel; a channel that died took the message with it (RabbitMQ
  // redelivers it), so there is nothing to do then.
  #ackRaw(d: AmqpDelivery): void {
    if (d.session.broken) return;
    d.session.acks.ack(d.msg.fields.deliveryTag);
  }

  /**
   * Streams deliveries until `signal` aborts, reconnecting after a lost connection.
   *
   * @param queues Queues to consume (declared as needed).
   * @param options Prefetch, signal and `onDeadLetter`.
   * @returns The deliveries.
   * @throws {AmqpQueueMismatchError} When a queue exists with other arguments.
   */
  consume(queues: readonly string[], options: ConsumeOptions = {}): AsyncGenerator<Delivery> {
    return consumeLoop(
      queues,
      options,
      { closed: this.#conn.closedSignal, maxDeliveries: this.#maxDeliveries },
      (ctx) => Promise.resolve(this.#session(ctx)),
    );
  }

  // The consume hooks: RabbitMQ pushes into a channel, the loop pulls from it.
  #session(ctx: ConsumerContext): ConsumerHooks<AmqpDelivery> {
    const { queues, prefetch } = ctx;
    const pushed = new PushChannel<
      { session: ConsumerSession; queue: string; msg: amqp.Message }
    >();
    let session: ConsumerSession | null = null;
    let wait = 100;
    const onMessage = (s: ConsumerSession, queue: string, msg: amqp.Message | null) => {
      if (s.broken) return;
      if (s.draining) {
        if (msg) s.channel.nack(msg, false, true);
        return;
      }
      if (msg === null) {
        // The server cancelled the consumer (queue deleted): start over.
        void closeSession(s);
        pushed.wake();
      } else {
        s.acks.delivered(msg.fields.deliveryTag);
        pushed.push({ session: s, queue, msg });
      }
    };
    return {
      claim: async (max) => {
        if (!session || session.broken) {
          if (session) this.#sessions.delete(session);
          // Deliveries of a dead channel come back by redelivery.
          pushed.drain();
          session = null;
          session = await this.#openSession(queues, prefetch, onMessage, () => pushed.wake());
          this.#sessions.add(session);
          wait = 100;
        }
        const out: AmqpDelivery[] = [];
        for (const entry of pushed.take(max)) {
          if (entry.session.broken) continue;
          entry.session.outstanding++;
          out.push(this.#delivery(entry.session, entry.queue, entry.msg));
        }
        return out;
      },
      wait: (signal) => pushed.wait(signal),
      recover: async (error, signal) => {
        if (error instanceof AmqpQueueMismatchError) throw error;
        await delay(wait, signal).catch(() => {});
        wait = Math.min(wait * 2, 2_000);
      },
      ack: (d) => {
        this.#ackRaw(d);
        release(d.session);
        return Promise.resolve();
      },
      reject: async (d, { requeue, reason }) => {
        try {
          if (requeue) {
            if (this.#isQuorum() || this.#queueInfo.get(d.queue)?.quorum) {
              if (!d.session.broken) d.session.channel.nack(d.msg, false, true);
              d.session.acks.settled(d.msg.fields.deliveryTag);
              return "requeued";
            }
            const again = { ...d.message!, headers: { ...d.message!.headers } };
            again.headers[DELIVERY_COUNT_HEADER] = d.deliveryCount;
            await this.publish(d.queue, again);
          } else {
            const base = d.message ?? fromRawContent(d.msg);
            await this.publish(`${d.queue}.dlq`, {
              ...base,
              headers: { ...base.headers, [DEAD_LETTER_REASON_HEADER]: reason },
            });
          }
          this.#ackRaw(d);
          return requeue ? "requeued" : "dead";
        } finally {
          release(d.session);
        }
      },
      release: (ds) => {
        for (const d of ds) {
          if (!d.session.broken) {
            try {
              d.session.channel.nack(d.msg, false, true);
              d.session.acks.settled(d.msg.fields.deliveryTag);
            } catch {
              // The channel died meanwhile: RabbitMQ requeues it anyway.
            }
          }
          release(d.session);
        }
        return Promise.resolve();
      },
      close: async () => {
        if (session) await this.#drain(session, pushed);
      },
    };
  }

  // Ends a consumer session: no new deliveries, prefetched ones go back at once, and the
  // channel stays open until every delivery handed out is settled (a worker's warm shutdown
  // finishes its active tasks, then acks them).
  async #drain(
    session: ConsumerSession,
    pushed: PushChannel<{ session: ConsumerSession; msg: amqp.Message }>,
  ): Promise<void> {
    this.#sessions.delete(session);
    if (session.broken) return;
    session.draining = true;
    try {
      for (const tag of session.tags) await session.channel.cancel(tag);
      for (const entry of pushed.drain()) {
        if (entry.session === session) {
          session.channel.nack(entry.msg, false, true);
          session.acks.settled(entry.msg.fields.deliveryTag);
        }
      }
    } catch {
      // The channel died meanwhile: RabbitMQ requeues everything anyway.
    }
    if (session.outstanding <= 0 && !session.broken) await closeSession(session);
  }

  /**
   * Removes every ready message of a queue.
   *
   * @param queue The queue.
   * @returns How many were removed (0 when the queue does not exist).
   */
  async purge(queue: string): Promise<number> {
    checkQueue(queue);
    const model = await this.#conn.connection();
    const channel = await model.createChannel();
    channel.on("error", () => {});
    try {
      const { messageCount } = await channel.purgeQueue(queue);
      return messageCount;
    } catch (error) {
      if (errorCode(error) === 404) return 0;
      throw error;
    } finally {
      await channel.close().catch(() => {});
    }
  }

  /**
   * Admin: waiting and dead-lettered (`<queue>.dlq`) counts per queue; reserved and scheduled
   * are `null` (AMQP cannot tell them).
   *
   * @param queues The queues.
   * @returns The counts.
   */
  async queueCounts(queues: readonly string[]): Promise<QueueCounts[]> {
    for (const queue of queues) checkQueue(queue);
    return amqpQueueCounts(await this.#conn.connection(), queues);
  }

  /**
   * Admin: deletes the dead letters of a queue (purges `<queue>.dlq`).
   *
   * @param queue The queue.
   * @returns How many were deleted.
   */
  async purgeDeadLetters(queue: string): Promise<number> {
    checkQueue(queue);
    return amqpPurgeDeadLetters(await this.#conn.connection(), queue);
  }

  #exchangeType(exchange: string): "direct" | "fanout" | "topic" {
    const configured = this.#options.exchangeTypes?.[exchange];
    if (configured) return configured;
    if (exchange.startsWith("reply.")) return "direct";
    if (exchange.endsWith(".pidbox")) return "fanout";
    return "topic";
  }

  // kombu declares pidbox exchanges non-durable and `celeryev` durable; the same flags here
  // avoid PRECONDITION_FAILED when Python declared them first.
  #exchangeDurable(exchange: string): boolean {
    return !exchange.endsWith(".pidbox");
  }

  /**
   * Publishes to a fanout/topic/direct exchange (pidbox commands and replies, events).
   *
   * @param broadcast Exchange, routing key and message.
   * @returns Nothing.
   */
  broadcast(broadcast: BroadcastMessage): Promise<void> {
    const { exchange, routingKey, message } = broadcast;
    const properties = toAmqpProperties(message);
    const content = Buffer.from(
      bodyToBytes(message.body, message.contentEncoding, message.headers),
    );
    return this.#withPublisher(async (ch) => {
      await this.#declareExchange(ch, exchange, this.#exchangeType(exchange));
      await this.#send(ch, exchange, routingKey, content, properties);
    });
  }

  /**
   * Streams the messages of an exchange through a private auto-delete queue laid out as
   * Celery's (see {@linkcode subscriptionLayout}): `celeryev.<uuid>` for events, the worker's
   * `<hostname>.celery.pidbox` when `queue` is given. After a lost connection the queue is
   * declared and bound again (messages sent in between are lost, as with Celery).
   *
   * @param exchange The exchange (`celery.pidbox`, `celeryev`, ...).
   * @param options Signal, `onReady`, queue name, TTLs, binding key, extra queue arguments.
   * @returns The messages.
   */
  subscribe(
    exchange: string,
    options: AmqpSubscribeOptions = {},
  ): AsyncGenerator<BroadcastMessage> {
    const type = this.#exchangeType(exchange);
    const key = options.routingKey ?? (type === "topic" ? "#" : "");
    const layout = subscriptionLayout(exchange, options);
    return this.#privateStream(
      async (channel) => {
        await channel.assertExchange(exchange, type, { durable: this.#exchangeDurable(exchange) });
        await channel.assertQueue(layout.queue, {
          durable: false,
          autoDelete: true,
          arguments: layout.arguments,
        });
        await channel.bindQueue(layout.queue, exchange, key);
        return layout.queue;
      },
      (msg) => ({
        exchange: msg.fields.exchange,
        routingKey: msg.fields.routingKey,
        message: fromAmqpMessage(msg),
      }),
      options,
    );
  }

  /**
   * Publishes to a direct exchange (declared non-durable unless `exchangeTypes`/the name says
   * otherwise, as kombu declares `reply.celery.pidbox`); unroutable messages are dropped.
   *
   * @param exchange The exchange, e.g. `reply.celery.pidbox`.
   * @param routingKey The routing key (the client's oid).
   * @param message The message (kept transient when `delivery_mode` is 1).
   * @returns Nothing.
   */
  publishDirect(exchange: string, routingKey: string, message: Message): Promise<void> {
    const properties = toAmqpProperties(message);
    const content = Buffer.from(
      bodyToBytes(message.body, message.contentEncoding, message.headers),
    );
    return this.#withPublisher(async (ch) => {
      await this.#declareExchange(ch, exchange, "direct");
      await this.#send(ch, exchange, routingKey, content, properties);
    });
  }

  /**
   * Declares `options.queue` (non-durable, auto-delete, `x-expires` = `expires`,
   * `x-message-ttl` = `messageTtl`), binds it to the direct `exchange` with `routingKey`,
   * streams its messages until `signal` aborts, then deletes it.
   *
   * @param exchange The direct exchange (`reply.celery.pidbox`).
   * @param routingKey The binding key (the client's oid).
   * @param options Queue name, signal, TTLs, `onReady`.
   * @returns The messages.
   */
  consumeDirect(
    exchange: string,
    routingKey: string,
    options: ConsumeDirectOptions,
  ): AsyncGenerator<Message> {
    const { queue } = options;
    if (typeof queue !== "string" || queue === "") {
      throw new TypeError("Cannot consume a reply queue: options.queue must be a non-empty name");
    }
    const args: Record<string, unknown> = { "x-expires": options.expires ?? 10_000 };
    if (options.messageTtl !== undefined) args["x-message-ttl"] = options.messageTtl;
    return this.#privateStream(
      async (channel) => {
        await channel.assertExchange(exchange, "direct", {
          durable: this.#exchangeDurable(exchange),
        });
        await channel.assertQueue(queue, { durable: false, autoDelete: true, arguments: args });
        await channel.bindQueue(queue, exchange, routingKey);
        return queue;
      },
      fromAmqpMessage,
      options,
      async (channel) => {
        await channel.deleteQueue(queue);
      },
    );
  }

  async #declareExchange(
    ch: amqp.Channel,
    exchange: string,
    type: "direct" | "fanout" | "topic",
  ): Promise<void> {
    // Per channel: a new connection (RabbitMQ restarted) lost the non-durable exchanges.
    let seen = this.#exchangesDeclared.get(ch);
    if (!seen) this.#exchangesDeclared.set(ch, seen = new Set());
    if (seen.has(exchange)) return;
    await ch.assertExchange(exchange, type, { durable: this.#exchangeDurable(exchange) });
    seen.add(exchange);
  }

  // Consumes a private queue without acks (subscriptions, reply queues) on its own channel.
  // `setup` declares and binds the queue; it runs again on a new connection after a lost
  // one. `onReady` fires each time a consumer is in place; `cleanup` runs on the
  // open channel when the stream ends.
  async *#privateStream<T>(
    setup: (channel: amqp.Channel) => Promise<string>,
    map: (msg: amqp.Message) => T,
    options: { signal?: AbortSignal; onReady?: () => void },
    cleanup?: (channel: amqp.Channel) => Promise<void>,
  ): AsyncGenerator<T> {
    const signal = AbortSignal.any([
      this.#conn.closedSignal,
      ...(options.signal ? [options.signal] : []),
    ]);
    const received = new PushChannel<T>();
    let session: { channel: amqp.Channel; broken: boolean } | null = null;
    let wait = 100;
    const wake = () => received.wake();
    signal.addEventListener("abort", wake);
    try {
      while (!signal.aborted) {
        if (!session || session.broken) {
          session = null;
          let channel: amqp.Channel | undefined;
          try {
            const model = await this.#conn.connection(signal);
            channel = await model.createChannel();
            const s = { channel, broken: false };
            channel.on("error", () => {});
            channel.on("close", () => {
              s.broken = true;
              received.wake();
            });
            const queue = await setup(channel);
            await channel.consume(queue, (msg) => {
              if (!msg) {
                // The server cancelled the consumer (queue deleted): declare it again.
                s.broken = true;
                channel!.close().catch(() => {});
              } else {
                try {
                  received.push(map(msg));
                } catch {
                  // Not a message we can read: skip it.
                }
              }
              received.wake();
            }, { noAck: true });
            session = s;
            wait = 100;
            // Also after a rebind: anything sent from now on arrives.
            options.onReady?.();
          } catch (error) {
            await channel?.close().catch(() => {});
            // A refusal (e.g. PRECONDITION_FAILED on an existing queue) will not fix itself.
            const code = errorCode(error);
            if (typeof code === "number" && code >= 400 && code < 600 && code !== 320) {
              throw error;
            }
            try {
              await delay(wait, signal);
            } catch {
              return;
            }
            wait = Math.min(wait * 2, 2_000);
          }
          continue;
        }
        if (received.size > 0) {
          yield received.shift()!;
          continue;
        }
        await received.wait(signal);
      }
    } finally {
      signal.removeEventListener("abort", wake);
      if (session && !session.broken) {
        session.broken = true;
        if (cleanup) await cleanup(session.channel).catch(() => {});
        await session.channel.close().catch(() => {});
      }
    }
  }

  /**
   * Closes channels and the connection; idempotent.
   *
   * @returns Nothing.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const s of this.#sessions) s.broken = true;
      await this.#conn.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
