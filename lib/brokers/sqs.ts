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
 * The transport's hooks are in `_sqs_transport.ts`; this file holds the consume loop,
 * prefetch, leases and settle-once, which the shared transport base will take over.
 *
 * @module
 */

import { Notifier } from "../_signal.ts";
import { delay } from "../_signal.ts";
import type { Message } from "../protocol/message.ts";
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
  return error.status === 0 || error.status >= 500 || error.status === 429 ||
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
  /** The transport's hooks (claim, ack, reject, renew, publish, schedule, purge). */
  readonly transport: SqsTransport;
  #closed = new AbortController();
  #held = new Set<SqsDelivery>();
  #leaseTimer: ReturnType<typeof setInterval> | undefined;
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
    this.transport = new SqsTransport(resolveSqsSettings(url, options));
  }

  publish(queue: string, message: Message, options?: PublishOptions): Promise<void> {
    return this.transport.publish(queue, message, options);
  }

  schedule(queue: string, message: Message, eta: Date, options?: PublishOptions): Promise<void> {
    return this.transport.schedule(queue, message, eta, options);
  }

  purge(queue: string): Promise<number> {
    return this.transport.purge(queue);
  }

  async *consume(
    queues: readonly string[],
    options: ConsumeOptions = {},
  ): AsyncGenerator<Delivery> {
    const prefetch = options.prefetch ?? 4;
    if (queues.length === 0) return;
    const stop = new AbortController();
    const signal = AbortSignal.any([
      this.#closed.signal,
      stop.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    const wake = new Notifier();
    const ready: SqsDelivery[] = [];
    const polls = new Map<string, Promise<void>>();
    let outstanding = 0;
    let reserved = 0;
    let next = 0;
    let failures = 0;
    let failure: unknown;
    const release = () => {
      outstanding--;
      wake.notify();
    };
    const poll = (queue: string, share: number) => {
      reserved += share;
      const p = this.transport.claim(queue, share, { signal }).then(
        (claims) => {
          failures = 0;
          for (const claim of claims) {
            const d = new SqsDelivery(this, claim, release);
            this.#hold(d);
            ready.push(d);
          }
        },
        (error) => {
          if (!signal.aborted) failure = error;
        },
      ).finally(() => {
        reserved -= share;
        polls.delete(queue);
        wake.notify();
      });
      polls.set(queue, p);
    };
    try {
      while (!signal.aborted) {
        if (failure !== undefined) {
          const error = failure;
          failure = undefined;
          if (!transient(error)) throw error;
          await delay(Math.min(30_000, 100 * 2 ** failures++), signal).catch(() => {});
          continue;
        }
        if (ready.length > 0) {
          outstanding++;
          yield ready.shift()!;
          continue;
        }
        // Start a poll on each idle queue while the prefetch allows, sharing what it allows.
        let free = prefetch > 0 ? prefetch - outstanding - reserved : Infinity;
        for (let i = 0; i < queues.length && free >= 1; i++) {
          const queue = queues[(next + i) % queues.length]!;
          if (polls.has(queue)) continue;
          const idle = queues.length - polls.size;
          const share = Math.min(10, Math.max(1, Math.floor(free / idle)));
          poll(queue, share);
          free -= share;
        }
        next = (next + 1) % queues.length;
        await wake.wait(signal);
      }
    } finally {
      stop.abort();
      await Promise.allSettled(polls.values());
      // Claimed but never handed out: visible again at once.
      const left = ready.splice(0);
      for (const d of left) this.#unhold(d);
      if (left.length) {
        await this.transport.renew(left.map((d) => d.claim), 0).catch(() => {});
      }
    }
  }

  #hold(d: SqsDelivery): void {
    this.#held.add(d);
    if (this.#leaseTimer !== undefined) return;
    const seconds = this.transport.settings.visibilitySeconds;
    const every = Math.min(300_000, Math.max(500, (seconds * 1000) / 3));
    this.#leaseTimer = setInterval(() => {
      const claims = [...this.#held].map((h) => h.claim);
      if (claims.length) this.transport.renew(claims, seconds).catch(() => {});
    }, every);
  }

  /** @internal Stops extending a delivery's visibility. */
  #unhold(d: SqsDelivery): void {
    this.#held.delete(d);
    if (this.#held.size === 0 && this.#leaseTimer !== undefined) {
      clearInterval(this.#leaseTimer);
      this.#leaseTimer = undefined;
    }
  }

  /** @internal Called by a delivery once it settles. */
  settled(d: SqsDelivery): void {
    this.#unhold(d);
  }

  /** @internal Queues a delete; deletes made in the same turn go in one batch. */
  enqueueAck(claim: SqsClaim): Promise<void> {
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
      if (this.#leaseTimer !== undefined) clearInterval(this.#leaseTimer);
      this.#leaseTimer = undefined;
      this.#held.clear();
    })();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** One SQS message handed to a consumer; the first settle wins, later ones do nothing. */
class SqsDelivery implements Delivery {
  readonly claim: SqsClaim;
  readonly #broker: SqsBroker;
  readonly #release: () => void;
  #settled = false;

  constructor(broker: SqsBroker, claim: SqsClaim, release: () => void) {
    this.#broker = broker;
    this.claim = claim;
    this.#release = release;
  }

  get message(): Message {
    return this.claim.message;
  }

  get queue(): string {
    return this.claim.queue;
  }

  get redelivered(): boolean {
    return this.claim.deliveryCount > 1;
  }

  get deliveryCount(): number {
    return this.claim.deliveryCount;
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#broker.settled(this);
    this.#release();
    return true;
  }

  ack(): Promise<void> {
    if (!this.#settle()) return Promise.resolve();
    return this.#broker.enqueueAck(this.claim);
  }

  reject(options: { requeue?: boolean } = {}): Promise<void> {
    if (!this.#settle()) return Promise.resolve();
    return this.#broker.transport.reject(this.claim, options);
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
