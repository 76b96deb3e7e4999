/**
 * Broker-side delayed delivery on plain RabbitMQ (no plugin), so that no worker holds an ETA
 * message unacked (Celery #6760: RabbitMQ's `consumer_timeout` kills such a channel).
 *
 * Layout (declared once, durable, shared by every celeriac process on the vhost):
 * - `celeriac.delay.<k>` for k = 0..37: a topic exchange and a durable queue of the same name
 *   with `x-message-ttl` = 2^k ms; the queue dead-letters to exchange `celeriac.delay.<k-1>`
 *   (level 0 to `celeriac.delay.deliver`), keeping the routing key.
 * - The routing key is the delay in binary, one word per bit, most significant first
 *   (`0.0.….1.0.1`). Exchange k routes a message whose bit k is `1` to queue k (where it waits
 *   2^k ms) and one whose bit k is `0` straight on to exchange k-1. A delay of D ms thus passes
 *   through exactly the queues of D's set bits and waits D ms in total. Within one queue every
 *   message has the same TTL, so expiry order is arrival order and nothing waits behind a
 *   longer message.
 * - `celeriac.delay.deliver` is a headers exchange; each destination queue is bound to it with
 *   `celeriac_delayed_to = <queue>` (headers starting with `x-` are ignored by RabbitMQ's
 *   matching, hence the name), so any queue name works, dots included.
 *
 * This is the same idea as Celery 5.5's `celery_delayed_0..27` (seconds, 28 levels), at
 * millisecond resolution: 38 levels reach 2^38 ms ≈ 8.7 years.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";

/** Number of levels: delays up to 2^LEVELS - 1 ms. */
export const DELAY_LEVELS = 38;
/** The longest delay, in milliseconds. */
export const MAX_DELAY_MS = 2 ** DELAY_LEVELS - 1;
/** The exchange that hands an expired message to its destination queue. */
export const DELIVER_EXCHANGE = "celeriac.delay.deliver";
/** The header naming the destination queue of a delayed message. */
export const DELAY_HEADER = "celeriac_delayed_to";

const levelName = (k: number) => `celeriac.delay.${k}`;

/** The exchange a delayed message is published to. */
export const DELAY_ENTRY_EXCHANGE = levelName(DELAY_LEVELS - 1);

function pattern(k: number, bit: 0 | 1): string {
  return `${"*.".repeat(DELAY_LEVELS - 1 - k)}${bit}.#`;
}

/**
 * The routing key that carries a delay through the levels.
 *
 * @param ms The delay in milliseconds, 1 ≤ ms ≤ {@linkcode MAX_DELAY_MS}.
 * @returns `b37.b36.….b0`.
 * @throws {RangeError} When the delay is out of range.
 */
export function delayRoutingKey(ms: number): string {
  if (!Number.isInteger(ms) || ms < 1 || ms > MAX_DELAY_MS) {
    throw new RangeError(
      `Cannot schedule a message: the delay must be 1..${MAX_DELAY_MS} ms, got ${ms}`,
    );
  }
  return ms.toString(2).padStart(DELAY_LEVELS, "0").split("").join(".");
}

/**
 * Declares the level exchanges, queues and bindings (idempotent).
 *
 * @param channel An open channel.
 * @returns Nothing.
 */
export async function declareDelayTopology(channel: amqp.Channel): Promise<void> {
  await channel.assertExchange(DELIVER_EXCHANGE, "headers", { durable: true });
  for (let k = 0; k < DELAY_LEVELS; k++) {
    const name = levelName(k);
    const next = k === 0 ? DELIVER_EXCHANGE : levelName(k - 1);
    await channel.assertExchange(name, "topic", { durable: true });
    await channel.assertQueue(name, {
      durable: true,
      arguments: { "x-message-ttl": 2 ** k, "x-dead-letter-exchange": next },
    });
    await channel.bindQueue(name, name, pattern(k, 1));
  }
  // Exchange-to-exchange bindings need their destination declared first.
  for (let k = 0; k < DELAY_LEVELS; k++) {
    const next = k === 0 ? DELIVER_EXCHANGE : levelName(k - 1);
    await channel.bindExchange(next, levelName(k), pattern(k, 0));
  }
}

/**
 * Binds a destination queue to the deliver exchange.
 *
 * @param channel An open channel.
 * @param queue The destination queue (already declared).
 * @returns Nothing.
 */
export async function bindDelayDestination(channel: amqp.Channel, queue: string): Promise<void> {
  await channel.bindQueue(queue, DELIVER_EXCHANGE, "", {
    "x-match": "all",
    [DELAY_HEADER]: queue,
  });
}

/**
 * Removes the bookkeeping headers that the delay levels add (`x-death` and friends, and
 * {@linkcode DELAY_HEADER}), so the worker sees the headers that were scheduled.
 *
 * @param headers Headers of a delivered message.
 * @returns The same object, cleaned.
 */
export function stripDelayHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  if (!(DELAY_HEADER in headers)) return headers;
  for (const key of Object.keys(headers)) {
    if (
      key === DELAY_HEADER || key === "x-death" || key.startsWith("x-first-death-") ||
      key.startsWith("x-last-death-")
    ) {
      delete headers[key];
    }
  }
  return headers;
}
