/**
 * `sqs://`: Amazon SQS, wire compatible with kombu's SQS transport (Celery's
 * `broker_url = "sqs://"`), so Python Celery clients and workers share queues with celeriac.
 *
 * - URLs: `sqs://` (credentials and region from the environment), `sqs://KEY:SECRET@`, and
 *   `sqs://KEY:SECRET@host:port` for a local endpoint (kombu); `AWS_ENDPOINT_URL_SQS` /
 *   `AWS_ENDPOINT_URL` select an endpoint too.
 * - Messages: the base64 of kombu's JSON envelope (see `_sqs_format.ts`).
 * - Consuming: long polls (20 s, ended at once by the signal) of up to 10 messages, never more
 *   than the prefetch allows; acks are deleted in batches; a requeue makes the message visible
 *   again at once; every held message's visibility is extended while it is held, so a long
 *   task is not redelivered to another worker, and a dead worker's messages come back after
 *   the visibility timeout.
 * - ETA: `DelaySeconds` up to 900 s; further ETAs hop (see `_sqs_transport.ts`).
 * - No fan-out: remote control and events are not available on SQS (as in Celery).
 *
 * The transport's operations are in `_sqs_transport.ts`; the consume loop, prefetch, leases,
 * settle-once and dead-letter decisions are the shared base's (`lib/transport/consume.ts`):
 * this file only fills in its hooks.
 *
 * @module
 */

import { delay } from "../_signal.ts";
import type { Message } from "../protocol/message.ts";
import {
  checkMaxDeliveries,
  checkQueue,
  consumeLoop,
  type ConsumerContext,
  type ConsumerHooks,
} from "../transport/consume.ts";
import type { Broker, ConsumeOptions, Delivery, PublishOptions } from "./broker.ts";
import { SqsError } from "./_sqs_client.ts";
import {
  resolveSqsSettings,
  type SqsBrokerOptions,
  sqsOptionsFromTransport,
} from "./_sqs_options.ts";
import { type SqsClaim, SqsTransport } from "./_sqs_transport.ts";

export type { SqsBrokerOptions, SqsPredefinedQueue } from "./_sqs_options.ts";

interface Ack {
  claim: SqsClaim;
  resolve: () => void;
  reject: (error: Error) => void;
}

// Network errors, throttling and 5xx are retried by the consume loop; others end it.
function transient(error: unknown): boolean {
  if (!(error instanceof SqsError)) return false;
  if (error.status === 0) return error.code === ""; // a network error, not missing credentials
  return error.status >= 500 || error.status === 429 ||
    /throttl|RequestThrottled|OverLimit/i.test(error.code);
}

/**
 * An Amazon SQS broker.
 *
 * @example
 * ```ts ignore
 * import { SqsBroker } from "./sqs.ts";
 * await using broker = new SqsBroker("sqs://", { region: "eu-west-1" });
 * ```
 */
export class SqsBroker implements Broker {
  readonly url: string;
  /** The transport's operations (claim, ack, requeue, dead-letter, renew, publish, purge). */
  readonly transport: SqsTransport;
  #closed = new AbortController();
  #maxDeliveries: number;
  #acks: Ack[] = [];
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #flushing = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;

  /**
   * Creates the broker; it sends nothing until first use.
   *
   * @param url `sqs://`, `sqs://KEY:SECRET@` or `sqs://KEY:SECRET@host:port`.
   * @param options Options.
   * @throws {TypeError} For a URL that is not `sqs://` or a bad predefined queue.
   * @throws {RangeError} For an option out of range.
   */
  constructor(url = "sqs://", options: SqsBrokerOptions = {}) {
    this.url = url.replace(/^(sqs:\/\/[^:/@]*:)[^@/]*@/i, "$1***@");
    this.#maxDeliveries = checkMaxDeliveries(options.maxDeliveries);
    this.transport = new SqsTransport(resolveSqsSettings(url, options));
  }

  publish(queue: string, message: Message, options?: PublishOptions): Promise<void> {
    try {
      checkQueue(queue);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.transport.publish(queue, message, options);
  }

  schedule(queue: string, message: Message, eta: Date, options?: PublishOptions): Promise<void> {
    try {
      checkQueue(queue);
      if (!(eta instanceof Date) || Number.isNaN(eta.getTime())) {
        throw new TypeError(`Cannot schedule: invalid ETA ${eta}`);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return this.transport.schedule(queue, message, eta, options);
  }

  purge(queue: string): Promise<number> {
    try {
      checkQueue(queue);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.transport.purge(queue);
  }

  consume(queues: readonly string[], options: ConsumeOptions = {}): AsyncGenerator<Delivery> {
    return consumeLoop(
      queues,
      options,
      { closed: this.#closed.signal, maxDeliveries: this.#maxDeliveries },
      (ctx) => Promise.resolve(this.#session(ctx)),
    );
  }

  // The consume hooks. A claim long-polls every idle queue at once, each for its share of the
  // room the prefetch leaves, and returns as soon as one poll brings messages; polls still
  // running keep their share and stash what they bring for the next claim, so the messages
  // received but not handed out never exceed the prefetch.
  #session(ctx: ConsumerContext): ConsumerHooks<SqsClaim> {
    const transport = this.transport;
    const queues = ctx.queues;
    const polls = new Map<string, Promise<void>>();
    const stash: SqsClaim[] = [];
    let arrived = Promise.withResolvers<void>();
    let reserved = 0;
    let next = 0;
    let failures = 0;
    let failure: unknown;
    const seconds = transport.settings.visibilitySeconds;
    const longPoll = transport.settings.waitTimeSeconds;
    // Polls end with the session too: a consumer that breaks out of its loop does not wait
    // for a long poll.
    const ended = new AbortController();
    const pollSignal = AbortSignal.any([ctx.signal, ended.signal]);
    const poll = (queue: string, share: number, waitSeconds: number) => {
      reserved += share;
      const p = transport.claim(queue, share, { signal: pollSignal, waitSeconds }).then(
        (claims) => {
          failures = 0;
          stash.push(...claims);
        },
        (error) => {
          if (!pollSignal.aborted) failure = error;
        },
      ).finally(() => {
        reserved -= share;
        polls.delete(queue);
        arrived.resolve();
      });
      polls.set(queue, p);
    };
    return {
      batch: 10 * queues.length,
      claim: async (max, signal) => {
        for (;;) {
          if (stash.length > 0) return stash.splice(0, max);
          if (failure !== undefined) {
            const error = failure;
            failure = undefined;
            throw error;
          }
          let free = max - reserved;
          // Too little room to poll every idle queue at once: short polls (1 s) in turn, so
          // one empty queue's long poll does not keep the others waiting.
          const idle = queues.length - polls.size;
          const wait = free >= idle ? longPoll : Math.min(longPoll, 1);
          for (let i = 0; i < queues.length && free >= 1; i++) {
            const queue = queues[(next + i) % queues.length]!;
            if (polls.has(queue)) continue;
            const share = Math.min(10, Math.max(1, Math.floor(free / idle)));
            poll(queue, share, wait);
            free -= share;
          }
          next = (next + 1) % queues.length;
          if (polls.size === 0) return [];
          arrived = Promise.withResolvers<void>();
          const onAbort = () => arrived.resolve();
          signal.addEventListener("abort", onAbort, { once: true });
          await arrived.promise;
          signal.removeEventListener("abort", onAbort);
          if (signal.aborted) return stash.splice(0, max);
          // Every poll ended empty (long polls ran out): say so, and the loop claims again.
          if (stash.length === 0 && failure === undefined && polls.size === 0) return [];
        }
      },
      // A claim waits by long-polling; an empty one has already waited (without long polls,
      // kombu's polling_interval of 1 s).
      wait: (signal) =>
        transport.settings.waitTimeSeconds > 0
          ? Promise.resolve()
          : delay(1000, signal).catch(() => {}),
      ack: (claim) => this.#enqueueAck(claim),
      reject: async (claim, { requeue, reason }) => {
        if (requeue) {
          await transport.requeue([claim]);
          return "requeued";
        }
        await transport.deadLetter(claim, reason);
        return "dead";
      },
      release: (claims) => transport.requeue(claims),
      // The stash too: polls that finished while the consumer was busy are held as well.
      renew: (held) => transport.renew([...held, ...stash], seconds),
      renewInterval: Math.min(300_000, Math.max(500, (seconds * 1000) / 3)),
      recover: async (error, signal) => {
        if (!transient(error)) throw error;
        await delay(Math.min(30_000, 100 * 2 ** failures++), signal).catch(() => {});
      },
      close: async () => {
        ended.abort();
        await Promise.allSettled(polls.values());
        // Brought in by polls that ended with the consumer: visible again at once.
        const left = stash.splice(0);
        if (left.length) await transport.requeue(left).catch(() => {});
      },
    };
  }

  // Deletes made in the same turn go in one DeleteMessageBatch per queue.
  #enqueueAck(claim: SqsClaim): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#acks.push({ claim, resolve, reject });
    if (this.#acks.length >= 10) this.#flushAcks();
    else this.#ackTimer ??= setTimeout(() => this.#flushAcks(), 0);
    return promise;
  }

  #flushAcks(): void {
    if (this.#ackTimer !== undefined) clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const batch = this.#acks.splice(0);
    if (batch.length === 0) return;
    const p = this.transport.ack(batch.map((a) => a.claim)).then(
      (results) => results.forEach((e, i) => e ? batch[i]!.reject(e) : batch[i]!.resolve()),
      (error) => batch.forEach((a) => a.reject(error)),
    ).finally(() => this.#flushing.delete(p));
    this.#flushing.add(p);
  }

  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#closed.abort();
      this.#flushAcks();
      await Promise.allSettled(this.#flushing);
    })();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Makes an {@linkcode SqsBroker} from `createBroker()`'s options; `transportOptions` take
 * kombu's SQS names (`region`, `queue_name_prefix`, `visibility_timeout` in seconds,
 * `wait_time_seconds`, `predefined_queues`, `sqs-creation-attributes`, `endpoint_url`) or
 * celeriac's camelCase ones.
 *
 * @param url The `sqs://` URL.
 * @param options `maxDeliveries` and `transportOptions`.
 * @returns The broker.
 * @throws {TypeError} For a bad URL or option.
 * @example
 * ```ts
 * import { sqsBrokerFromUrl } from "./sqs.ts";
 * await using broker = sqsBrokerFromUrl("sqs://KEY:SECRET@", {
 *   transportOptions: { region: "eu-west-1", visibility_timeout: 3600 },
 * });
 * console.assert(broker.url === "sqs://KEY:***@");
 * ```
 */
export function sqsBrokerFromUrl(
  url: string,
  options: { maxDeliveries?: number; transportOptions?: Record<string, unknown> } = {},
): SqsBroker {
  const own = sqsOptionsFromTransport(options.transportOptions ?? {});
  if (options.maxDeliveries !== undefined) own.maxDeliveries = options.maxDeliveries;
  return new SqsBroker(url, own);
}
