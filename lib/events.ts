/**
 * The event receiver (`celery/events/receiver.py`): every event on the `celeryev` exchange,
 * from celeriac and Python workers alike, as an async iterator. A message body may be one
 * event (a dict) or a batch (`task.multi`, a list); both come out as single events.
 *
 * @module
 */

import type { Broker } from "./brokers/broker.ts";
import type { CeleryEvent } from "./worker/events.ts";
import { EVENT_EXCHANGE } from "./worker/events.ts";

export type { CeleryEvent } from "./worker/events.ts";

/** Options of {@linkcode receiveEvents}. */
export interface ReceiveEventsOptions {
  /** Ends the stream. */
  signal?: AbortSignal;
  /** Only these event types (`task-succeeded`) or prefixes ending in `*` (`worker-*`). */
  types?: string[];
  /** Called once the subscription is in place. */
  onReady?: () => void;
}

function matches(type: string, types: string[] | undefined): boolean {
  if (!types?.length) return true;
  return types.some((t) => t.endsWith("*") ? type.startsWith(t.slice(0, -1)) : t === type);
}

/**
 * Streams events from a broker until `signal` aborts.
 *
 * @param broker The broker (it must support `subscribe`).
 * @param options Signal and type filter.
 * @returns The events.
 * @throws {TypeError} When the broker cannot subscribe.
 * @example
 * ```ts
 * import { receiveEvents } from "./events.ts";
 * import { MemoryBroker } from "./brokers/memory.ts";
 * await using broker = new MemoryBroker("memory://doc-receive");
 * const stop = new AbortController();
 * setTimeout(() => stop.abort(), 10);
 * for await (const e of receiveEvents(broker, { signal: stop.signal })) console.log(e.type);
 * ```
 */
export async function* receiveEvents(
  broker: Broker,
  options: ReceiveEventsOptions = {},
): AsyncGenerator<CeleryEvent> {
  if (!broker.subscribe) {
    throw new TypeError(
      `Cannot receive events: broker ${broker.url} has no subscribe (no fan-out, as on SQS: use Redis or RabbitMQ for events)`,
    );
  }
  const subscribeOptions: Parameters<NonNullable<Broker["subscribe"]>>[1] = {};
  if (options.signal) subscribeOptions.signal = options.signal;
  if (options.onReady) subscribeOptions.onReady = options.onReady;
  for await (const m of broker.subscribe(EVENT_EXCHANGE, subscribeOptions)) {
    let body: unknown;
    try {
      body = JSON.parse(m.message.body);
    } catch {
      continue;
    }
    for (const e of Array.isArray(body) ? body : [body]) {
      if (e === null || typeof e !== "object" || typeof e.type !== "string") continue;
      if (matches(e.type, options.types)) yield e as CeleryEvent;
    }
  }
}
