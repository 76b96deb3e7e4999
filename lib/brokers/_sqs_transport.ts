/**
 * The SQS transport's operations (claim, ack, reject, renew, publish, schedule, purge), the
 * shape of kombu's virtual transport (`_get_bulk`, `_put`, `_purge`, `basic_ack`); `sqs.ts`
 * plugs them into the shared consume loop (`lib/transport/consume.ts`), which owns prefetch,
 * settle-once, lease scheduling and the dead-letter decisions.
 *
 * - Queue names follow kombu: `queue_name_prefix` + name, punctuation replaced
 *   (`sqsQueueName`); queues are created on first use with the visibility timeout (and
 *   `FifoQueue` for `.fifo`), unless `predefinedQueues` are set.
 * - ETA: `DelaySeconds` up to `maxDelaySeconds` (900 on AWS); the ETA also rides in the
 *   `celeriac-eta` message attribute, and a message that arrives before it is re-sent with the
 *   rest of the delay and the old copy deleted (FIFO queues take no per-message delay: there
 *   the message is hidden with `ChangeMessageVisibility` until its ETA instead).
 * - Dead letters: a rejected message moves to the dead-letter queue (`<queue>.dlq`, SQS name
 *   `<queue>-dlq`) with its reason in the `x-celeriac-dead-letter-reason` header, and is
 *   deleted. A redrive policy set with `creationAttributes` works beside it.
 *
 * @module
 */

import { delay } from "../_signal.ts";
import type { Message } from "../protocol/message.ts";
import { DEAD_LETTER_REASON_HEADER, type PublishOptions } from "./broker.ts";
import type { RawDelivery } from "../transport/consume.ts";
import { type SendMessageInput, SqsClient, SqsError, type SqsMessage } from "./_sqs_client.ts";
import { decodeSqsBody, encodeSqsBody } from "./_sqs_format.ts";
import { sqsQueueName, type SqsSettings } from "./_sqs_options.ts";

/** The ETA message attribute (ms since the epoch). */
export const ETA_ATTRIBUTE = "celeriac-eta";
const EMPTY: Message = {
  headers: {},
  properties: {},
  body: "",
  contentType: "application/json",
  contentEncoding: "utf-8",
};
/** ChangeMessageVisibility's limit, less a margin. */
const MAX_HOLD_SECONDS = 43_200 - 60;
/** An ETA this close is waited for in the claim rather than re-sent. */
const SHORT_WAIT_MS = 1000;

/** One received message, until it is settled. */
export interface SqsClaim extends RawDelivery {
  /** Its queue's URL. */
  readonly queueUrl: string;
  /** The client that received it (predefined queues may have their own credentials). */
  readonly client: SqsClient;
  /** The SQS message. */
  readonly sqs: SqsMessage;
}

interface QueueRef {
  url: string;
  client: SqsClient;
  fifo: boolean;
}

/** The hooks of the SQS transport. */
export class SqsTransport {
  readonly settings: SqsSettings;
  readonly #client: SqsClient;
  readonly #clients = new Map<string, SqsClient>();
  readonly #queues = new Map<string, Promise<QueueRef>>();

  /**
   * Creates the transport; nothing is sent until first use.
   *
   * @param settings Resolved settings.
   */
  constructor(settings: SqsSettings) {
    this.settings = settings;
    this.#client = new SqsClient({
      endpoint: settings.endpoint,
      region: settings.region,
      credentials: () => this.#credentials(),
    });
  }

  #credentials() {
    const c = this.settings.credentials;
    if (!c) {
      throw new SqsError(
        "sign",
        "MissingCredentials",
        0,
        "no credentials: use sqs://KEY:SECRET@ or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
      );
    }
    return c;
  }

  /** The SQS queue name of an app queue (prefix and kombu's renaming). */
  sqsName(queue: string): string {
    return sqsQueueName(this.settings.queueNamePrefix + queue);
  }

  /**
   * The URL and client of a queue, created on first use (kombu's `_new_queue`).
   *
   * @param queue The app's queue name.
   * @returns The queue.
   * @throws {TypeError} With predefined queues, for a queue not among them.
   */
  queue(queue: string): Promise<QueueRef> {
    let ref = this.#queues.get(queue);
    if (!ref) {
      ref = this.#resolve(queue);
      this.#queues.set(queue, ref);
      ref.catch(() => this.#queues.delete(queue));
    }
    return ref;
  }

  async #resolve(queue: string): Promise<QueueRef> {
    const s = this.settings;
    const name = this.sqsName(queue);
    const fifo = name.endsWith(".fifo");
    if (Object.keys(s.predefinedQueues).length > 0) {
      const q = s.predefinedQueues[queue] ?? s.predefinedQueues[name];
      if (!q) {
        throw new TypeError(
          `Cannot use SQS queue "${queue}": it must be defined in predefined_queues`,
        );
      }
      let client = this.#client;
      if (q.accessKeyId || q.region) {
        const key = `${q.accessKeyId ?? ""}\0${q.region ?? ""}`;
        client = this.#clients.get(key) ?? new SqsClient({
          // A configured endpoint (a local emulator) wins; else the queue URL's own host.
          endpoint: s.endpointSet ? s.endpoint : new URL(q.url).origin,
          region: q.region ?? s.region,
          credentials: q.accessKeyId
            ? {
              accessKeyId: q.accessKeyId,
              secretAccessKey: q.secretAccessKey ?? "",
              ...(q.sessionToken ? { sessionToken: q.sessionToken } : {}),
            }
            : () => this.#credentials(),
        });
        this.#clients.set(key, client);
      }
      return { url: q.url, client, fifo };
    }
    const client = this.#client;
    try {
      return { url: await client.getQueueUrl(name), client, fifo };
    } catch (error) {
      if (!(error instanceof SqsError && error.queueMissing)) throw error;
    }
    const attributes: Record<string, string> = {
      VisibilityTimeout: String(s.visibilitySeconds),
      ...(fifo ? { FifoQueue: "true" } : {}),
      ...s.creationAttributes,
    };
    try {
      return { url: await client.createQueue(name, attributes), client, fifo };
    } catch (error) {
      // Created meanwhile by another process with other attributes (a worker with another
      // visibility timeout): use it as it is, as an existing queue is used.
      if (!(error instanceof SqsError && error.queueExists)) throw error;
      return { url: await client.getQueueUrl(name), client, fifo };
    }
  }

  #sendInput(
    ref: QueueRef,
    body: string,
    message: Message,
    extra: { delaySeconds?: number; eta?: number; group?: string; dedup?: string } = {},
  ): SendMessageInput {
    const input: SendMessageInput = { QueueUrl: ref.url, MessageBody: body };
    if (ref.fifo) {
      // kombu: MessageGroupId / MessageDeduplicationId from the message properties.
      const p = message.properties;
      input.MessageGroupId = extra.group ??
        (typeof p.MessageGroupId === "string" ? p.MessageGroupId : "default");
      input.MessageDeduplicationId = extra.dedup ??
        (typeof p.MessageDeduplicationId === "string"
          ? p.MessageDeduplicationId
          : crypto.randomUUID());
    } else if (extra.delaySeconds) {
      input.DelaySeconds = extra.delaySeconds;
    }
    if (extra.eta !== undefined) {
      input.MessageAttributes = {
        [ETA_ATTRIBUTE]: { DataType: "Number", StringValue: String(extra.eta) },
      };
    }
    return input;
  }

  /**
   * Sends a message now (kombu's `_put`).
   *
   * @param queue The queue.
   * @param message The message.
   * @param options Priority (SQS has none: recorded in the envelope only).
   */
  async publish(queue: string, message: Message, options: PublishOptions = {}): Promise<void> {
    const ref = await this.queue(queue);
    const m = options.priority === undefined
      ? message
      : { ...message, properties: { ...message.properties, priority: options.priority } };
    await ref.client.sendMessage(
      this.#sendInput(ref, encodeSqsBody(m, queue, this.settings.base64Encoding), m),
    );
  }

  /**
   * Sends a message that becomes visible at `eta` (or, past the delay limit, at the limit,
   * to be re-sent then).
   *
   * @param queue The queue.
   * @param message The message.
   * @param eta When it is due.
   * @param options Priority.
   */
  async schedule(
    queue: string,
    message: Message,
    eta: Date,
    options: PublishOptions = {},
  ): Promise<void> {
    const ref = await this.queue(queue);
    const m = options.priority === undefined
      ? message
      : { ...message, properties: { ...message.properties, priority: options.priority } };
    const due = eta.getTime();
    const seconds = Math.ceil((due - Date.now()) / 1000);
    await ref.client.sendMessage(
      this.#sendInput(ref, encodeSqsBody(m, queue, this.settings.base64Encoding), m, {
        eta: due,
        delaySeconds: Math.min(Math.max(0, seconds), this.settings.maxDelaySeconds),
        // A held FIFO message must not block its group: it gets a group of its own.
        ...(ref.fifo ? { group: `celeriac-eta-${crypto.randomUUID()}` } : {}),
      }),
    );
  }

  /**
   * Receives up to `max` messages of one queue, long-polling (kombu's `_get_bulk`). Messages
   * whose ETA is still ahead are re-sent (or hidden, on FIFO queues) and not returned.
   *
   * @param queue The queue.
   * @param max 1–10.
   * @param options The signal (aborts the poll) and the long-poll wait.
   * @returns The claims; the caller settles each exactly once.
   */
  async claim(
    queue: string,
    max: number,
    options: { signal?: AbortSignal; waitSeconds?: number } = {},
  ): Promise<SqsClaim[]> {
    const ref = await this.queue(queue);
    const raws = await ref.client.receiveMessage(
      ref.url,
      Math.max(1, Math.min(10, max)),
      options.waitSeconds ?? this.settings.waitTimeSeconds,
      { signal: options.signal },
    );
    const claims: SqsClaim[] = [];
    const early: SqsMessage[] = [];
    for (const raw of raws) {
      const eta = Number(raw.MessageAttributes?.[ETA_ATTRIBUTE]?.StringValue ?? NaN);
      const wait = Number.isFinite(eta) ? eta - Date.now() : 0;
      if (wait > SHORT_WAIT_MS) {
        early.push(raw);
        continue;
      }
      let message: Message | null = null;
      let error: string | undefined;
      try {
        message = decodeSqsBody(raw.Body);
      } catch (cause) {
        // Undecodable: the consume loop dead-letters it with this reason.
        error = `the SQS message could not be read: ${(cause as Error).message}`;
      }
      if (wait > 0) await delay(wait);
      const count = deliveryCount(raw, eta);
      claims.push({
        queue,
        queueUrl: ref.url,
        client: ref.client,
        sqs: raw,
        message,
        deliveryCount: count,
        redelivered: count > 1,
        ...(error === undefined ? {} : { error, raw: raw.Body.slice(0, 200) }),
      });
    }
    if (early.length) {
      // Best effort: a message not postponed now comes back after its visibility timeout.
      await this.#postpone(ref, queue, early).catch(() => {});
    }
    return claims;
  }

  // Messages whose ETA is ahead: re-send with the rest of the delay, then delete the old copy
  // at once. Only a crash between those two calls leaves two copies (the old one comes back
  // after its visibility timeout and hops again). Re-sending, not hiding, keeps SQS's receive
  // count (and a redrive policy's maxReceiveCount) for real deliveries; FIFO queues take no
  // per-message delay, so there the message is hidden until its ETA (12 h at a time).
  async #postpone(ref: QueueRef, queue: string, raws: SqsMessage[]): Promise<void> {
    const max = this.settings.maxDelaySeconds;
    if (ref.fifo) {
      await ref.client.changeMessageVisibilityBatch(
        ref.url,
        raws.map((raw) => {
          const eta = Number(raw.MessageAttributes![ETA_ATTRIBUTE]!.StringValue);
          const seconds = Math.ceil((eta - Date.now()) / 1000);
          return { receiptHandle: raw.ReceiptHandle, seconds: Math.min(seconds, MAX_HOLD_SECONDS) };
        }),
      );
      return;
    }
    for (const raw of raws) {
      const eta = Number(raw.MessageAttributes![ETA_ATTRIBUTE]!.StringValue);
      const seconds = Math.ceil((eta - Date.now()) / 1000);
      await ref.client.sendMessage({
        QueueUrl: ref.url,
        MessageBody: raw.Body,
        DelaySeconds: Math.min(Math.max(0, seconds), max),
        MessageAttributes: {
          [ETA_ATTRIBUTE]: { DataType: "Number", StringValue: String(eta) },
        },
      });
    }
    await this.#deleteAll(ref.client, ref.url, raws.map((r) => r.ReceiptHandle), queue);
  }

  async #deleteAll(
    client: SqsClient,
    url: string,
    handles: readonly string[],
    queue: string,
  ): Promise<void> {
    for (let i = 0; i < handles.length; i += 10) {
      const failed = await client.deleteMessageBatch(url, handles.slice(i, i + 10));
      const first = failed.values().next().value;
      if (first) {
        throw new SqsError(
          "DeleteMessageBatch",
          first.Code,
          400,
          `${failed.size} of the messages of ${queue} were not deleted: ${first.Message ?? ""}`,
        );
      }
    }
  }

  /**
   * Deletes settled messages, in batches of 10 per queue (kombu's `basic_ack`, batched).
   *
   * @param claims The claims, of any queues.
   * @returns One result per claim: `undefined`, or the error that claim's delete met.
   */
  async ack(claims: readonly SqsClaim[]): Promise<(Error | undefined)[]> {
    const results: (Error | undefined)[] = new Array(claims.length).fill(undefined);
    const byUrl = new Map<string, number[]>();
    claims.forEach((c, i) => {
      let list = byUrl.get(c.queueUrl);
      if (!list) byUrl.set(c.queueUrl, list = []);
      list.push(i);
    });
    await Promise.all([...byUrl.values()].map(async (indexes) => {
      for (let i = 0; i < indexes.length; i += 10) {
        const chunk = indexes.slice(i, i + 10);
        const first = claims[chunk[0]!]!;
        try {
          const failed = await first.client.deleteMessageBatch(
            first.queueUrl,
            chunk.map((j) => claims[j]!.sqs.ReceiptHandle),
          );
          for (const [k, f] of failed) {
            results[chunk[k]!] = new SqsError("DeleteMessageBatch", f.Code, 400, f.Message ?? "");
          }
        } catch (error) {
          for (const j of chunk) results[j] = error as Error;
        }
      }
    }));
    return results;
  }

  /**
   * Gives a message back, visible again at once (kombu's requeue); SQS counts the next
   * receive as a delivery.
   *
   * @param claims The claims.
   */
  requeue(claims: readonly SqsClaim[]): Promise<void> {
    return this.renew(claims, 0);
  }

  /**
   * Moves a message to its queue's dead-letter queue, with the reason in the
   * `x-celeriac-dead-letter-reason` header (an undecodable body is moved as it is, the reason
   * in a message attribute), then deletes it. With predefined queues and no dead-letter
   * queue among them, the message is only deleted.
   *
   * @param claim The claim.
   * @param reason Why.
   */
  async deadLetter(claim: SqsClaim, reason: string): Promise<void> {
    const dlq = this.settings.deadLetterQueue;
    if (dlq) {
      let ref: QueueRef | undefined;
      try {
        ref = await this.queue(dlq(claim.queue));
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
      }
      if (ref) {
        const message = claim.message;
        const body = message
          ? encodeSqsBody(
            {
              ...message,
              headers: { ...message.headers, [DEAD_LETTER_REASON_HEADER]: reason },
            },
            claim.queue,
            this.settings.base64Encoding,
          )
          : claim.sqs.Body;
        const input = this.#sendInput(ref, body, message ?? EMPTY, {
          // A repeated move (after a crash) is dropped on FIFO queues.
          dedup: claim.sqs.MessageId,
          ...(claim.sqs.Attributes?.MessageGroupId
            ? { group: claim.sqs.Attributes.MessageGroupId }
            : {}),
        });
        input.MessageAttributes = {
          [DEAD_LETTER_REASON_HEADER]: { DataType: "String", StringValue: reason || "rejected" },
        };
        await ref.client.sendMessage(input);
      }
    }
    await this.#deleteAll(claim.client, claim.queueUrl, [claim.sqs.ReceiptHandle], claim.queue);
  }

  /**
   * Sets the visibility timeout of held messages from now: the lease of long tasks and
   * prefetched messages (`seconds` = visibility timeout), or a requeue (`0`).
   *
   * @param claims The claims.
   * @param seconds The new timeout.
   */
  async renew(claims: readonly SqsClaim[], seconds: number): Promise<void> {
    const byUrl = new Map<string, SqsClaim[]>();
    for (const c of claims) {
      let list = byUrl.get(c.queueUrl);
      if (!list) byUrl.set(c.queueUrl, list = []);
      list.push(c);
    }
    await Promise.all([...byUrl.values()].map(async (list) => {
      for (let i = 0; i < list.length; i += 10) {
        const chunk = list.slice(i, i + 10);
        await chunk[0]!.client.changeMessageVisibilityBatch(
          chunk[0]!.queueUrl,
          chunk.map((c) => ({ receiptHandle: c.sqs.ReceiptHandle, seconds })),
        );
      }
    }));
  }

  /**
   * Removes the waiting messages of a queue; returns how many (kombu's `_purge`). Messages are
   * received and deleted rather than `PurgeQueue`d, which SQS allows once a minute and which
   * takes up to a minute to finish; delayed messages are then purged with `PurgeQueue`.
   *
   * @param queue The queue.
   * @returns How many were removed.
   */
  async purge(queue: string): Promise<number> {
    const ref = await this.queue(queue);
    let n = 0;
    for (let empty = 0; empty < 2;) {
      const raws = await ref.client.receiveMessage(ref.url, 10, 0, { visibilityTimeout: 30 });
      if (raws.length === 0) {
        const attrs = await ref.client.getQueueAttributes(ref.url, [
          "ApproximateNumberOfMessages",
          "ApproximateNumberOfMessagesDelayed",
        ]);
        if (Number(attrs.ApproximateNumberOfMessages ?? 0) === 0) {
          if (Number(attrs.ApproximateNumberOfMessagesDelayed ?? 0) > 0) {
            await ref.client.purgeQueue(ref.url).catch(() => {});
          }
          break;
        }
        empty++;
        continue;
      }
      await this.#deleteAll(ref.client, ref.url, raws.map((r) => r.ReceiptHandle), queue);
      n += raws.length;
    }
    return n;
  }
}

// SQS's receive count, less the receives that only hid a FIFO message until its ETA (each
// hold lasts until the ETA or MAX_HOLD_SECONDS, starting from the first receive).
function deliveryCount(raw: SqsMessage, eta: number): number {
  const count = Math.max(1, Number(raw.Attributes?.ApproximateReceiveCount ?? 1));
  const first = Number(raw.Attributes?.ApproximateFirstReceiveTimestamp ?? NaN);
  if (!raw.Attributes?.MessageGroupId || !Number.isFinite(eta) || !(first < eta)) return count;
  const holds = Math.ceil((eta - first) / (MAX_HOLD_SECONDS * 1000));
  return Math.max(1, count - holds);
}
