/**
 * Celery 5.5+'s native delayed delivery on RabbitMQ, laid out exactly as kombu 5.6 declares it
 * (`kombu/transport/native_delayed_delivery.py`), so that a Celery 5.5+ worker and a celeriac
 * worker run each other's countdowns:
 *
 * - `celery_delayed_<k>` for k = 0..27: a topic exchange and a durable queue of the same name,
 *   `x-queue-type` = `broker_native_delayed_delivery_queue_type` (quorum by default),
 *   `x-overflow: reject-publish`, `x-message-ttl` = 2^k s, dead-lettering to exchange
 *   `celery_delayed_<k-1>` (level 0 to `celery_delayed_delivery`), and for quorum
 *   `x-dead-letter-strategy: at-least-once`. Queue k is bound to exchange k with
 *   `*.`×(27-k) + `1.#`; exchange k-1 is bound to exchange k with `*.`×(27-k) + `0.#`; the topic
 *   exchange `celery_delayed_delivery` is bound to `celery_delayed_0` with `*.`×27 + `0.#`.
 * - A countdown of S whole seconds is published to `celery_delayed_27` with the routing key
 *   `b27.b26.….b0.<routing key>` (S in binary, one word per bit) and waits in the queues of its
 *   set bits; Celery truncates the countdown to whole seconds, and the worker holds the rest.
 * - A Celery worker binds each queue's (non-direct) exchange to `celery_delayed_delivery` with
 *   `#.<routing key>` and the queue to its exchange with the same key. celeriac does that too
 *   when the queue's exchange is a topic exchange, and always binds the queue itself to
 *   `celery_delayed_delivery` with `#.<queue>`, which works whatever its exchange's type.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";

/** kombu's `MAX_NUMBER_OF_BITS_TO_USE`: countdowns up to 2^28 - 1 s (~8.5 years). */
export const NATIVE_DELAY_BITS = 28;
/** kombu's `MAX_LEVEL`. */
export const NATIVE_DELAY_MAX_LEVEL = NATIVE_DELAY_BITS - 1;
/** kombu's `CELERY_DELAYED_DELIVERY_EXCHANGE`. */
export const NATIVE_DELIVERY_EXCHANGE = "celery_delayed_delivery";
/** The longest countdown, in seconds. */
export const NATIVE_MAX_DELAY_S = 2 ** NATIVE_DELAY_BITS - 1;

/** The queue types kombu accepts for the delay queues. */
export type NativeDelayQueueType = "classic" | "quorum";

/**
 * kombu's `level_name`.
 *
 * @param level 0..27.
 * @returns `celery_delayed_<level>`.
 */
export function nativeLevelName(level: number): string {
  if (!Number.isInteger(level) || level < 0) {
    throw new RangeError(`Cannot name a delay level: it must be an integer >= 0, got ${level}`);
  }
  return `celery_delayed_${level}`;
}

/** The exchange a Celery 5.5+ producer publishes countdowns to (`celery_delayed_27`). */
export const NATIVE_ENTRY_EXCHANGE: string = nativeLevelName(NATIVE_DELAY_MAX_LEVEL);

/**
 * kombu's `calculate_routing_key`: the countdown in 28 binary digits, one word each, then the
 * routing key.
 *
 * @param countdown Whole seconds, 1..2^28-1.
 * @param routingKey The destination's routing key (for celeriac, the queue name).
 * @returns E.g. `0.….0.1.0.1.celery` for 5 s.
 * @throws {RangeError} For a countdown out of range or an empty routing key.
 * @example
 * ```ts
 * import { nativeRoutingKey } from "./_amqp_native_delay.ts";
 * nativeRoutingKey(5, "celery").endsWith("0.1.0.1.celery"); // true
 * ```
 */
export function nativeRoutingKey(countdown: number, routingKey: string): string {
  if (!Number.isInteger(countdown) || countdown < 1 || countdown > NATIVE_MAX_DELAY_S) {
    throw new RangeError(
      `Cannot schedule a message: the countdown must be 1..${NATIVE_MAX_DELAY_S} s, got ${countdown}`,
    );
  }
  if (!routingKey) throw new RangeError("Cannot schedule a message: the routing key is empty");
  const digits = countdown.toString(2).padStart(NATIVE_DELAY_BITS, "0").split("").join(".");
  return `${digits}.${routingKey}`;
}

/**
 * The arguments kombu gives the delay queue of a level.
 *
 * @param level 0..27.
 * @param queueType `classic` or `quorum`.
 * @returns The queue arguments.
 */
export function nativeLevelArguments(
  level: number,
  queueType: NativeDelayQueueType,
): Record<string, unknown> {
  const args: Record<string, unknown> = {
    "x-queue-type": queueType,
    "x-overflow": "reject-publish",
    "x-message-ttl": 2 ** level * 1000,
    "x-dead-letter-exchange": level > 0 ? nativeLevelName(level - 1) : NATIVE_DELIVERY_EXCHANGE,
  };
  if (queueType === "quorum") args["x-dead-letter-strategy"] = "at-least-once";
  return args;
}

/**
 * kombu's `declare_native_delayed_delivery_exchanges_and_queues`, declaration for declaration
 * (idempotent; a level queue that exists with another type fails with `PRECONDITION_FAILED`).
 *
 * @param channel An open channel.
 * @param queueType Celery's `broker_native_delayed_delivery_queue_type`.
 * @returns Nothing.
 * @throws {TypeError} For another queue type.
 */
export async function declareNativeDelayTopology(
  channel: amqp.Channel,
  queueType: NativeDelayQueueType,
): Promise<void> {
  if (queueType !== "classic" && queueType !== "quorum") {
    throw new TypeError(
      `Cannot declare native delayed delivery: the queue type must be classic or quorum, got ${queueType}`,
    );
  }
  let routingKey = "1.#";
  for (let level = NATIVE_DELAY_MAX_LEVEL; level >= 0; level--) {
    const name = nativeLevelName(level);
    // kombu's Exchange() and Queue() defaults: durable, not auto-delete.
    await channel.assertExchange(name, "topic", { durable: true });
    await channel.assertQueue(name, {
      durable: true,
      arguments: nativeLevelArguments(level, queueType),
    });
    await channel.bindQueue(name, name, routingKey);
    routingKey = `*.${routingKey}`;
  }
  routingKey = "0.#";
  for (let level = NATIVE_DELAY_MAX_LEVEL; level > 0; level--) {
    await channel.bindExchange(nativeLevelName(level - 1), nativeLevelName(level), routingKey);
    routingKey = `*.${routingKey}`;
  }
  await channel.assertExchange(NATIVE_DELIVERY_EXCHANGE, "topic", { durable: true });
  await channel.bindExchange(NATIVE_DELIVERY_EXCHANGE, nativeLevelName(0), routingKey);
}

/**
 * kombu's binding key for a routing key.
 *
 * @param routingKey A queue's routing key.
 * @returns It as it is when it starts with `#`, else `#.<key>`.
 */
export function nativeBindingKey(routingKey: string): string {
  return routingKey.startsWith("#") ? routingKey : `#.${routingKey}`;
}

/**
 * Binds a task queue to `celery_delayed_delivery`: the queue itself with `#.<queue>`, and, when
 * its exchange is a topic exchange, the exchange and the queue as kombu's
 * `bind_queue_to_native_delayed_delivery_exchange` does.
 *
 * @param channel An open channel.
 * @param queue The queue; its exchange has the same name and routing key (celeriac's layout).
 * @param topicExchange Whether the queue's exchange is a topic exchange.
 * @returns Nothing.
 */
export async function bindNativeDelayDestination(
  channel: amqp.Channel,
  queue: string,
  topicExchange: boolean,
): Promise<void> {
  const key = nativeBindingKey(queue);
  await channel.bindQueue(queue, NATIVE_DELIVERY_EXCHANGE, key);
  if (topicExchange) {
    await channel.bindExchange(queue, NATIVE_DELIVERY_EXCHANGE, key);
    await channel.bindQueue(queue, queue, key);
  }
}

/**
 * Removes the `x-death` bookkeeping that the delay levels add to a message that went through
 * `celery_delayed_*`, so the worker sees the headers that were scheduled.
 *
 * @param headers Headers of a delivered message.
 * @returns The same object, cleaned.
 */
export function stripNativeDelayHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const first = headers["x-first-death-exchange"];
  if (typeof first !== "string" || !first.startsWith("celery_delayed_")) return headers;
  for (const key of Object.keys(headers)) {
    if (
      key === "x-death" || key.startsWith("x-first-death-") || key.startsWith("x-last-death-")
    ) {
      delete headers[key];
    }
  }
  return headers;
}
