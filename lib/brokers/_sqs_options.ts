/**
 * The `sqs://` URL and kombu's SQS `broker_transport_options`, turned into the broker's
 * settings. See `kombu/transport/SQS.py:Channel` (the cached properties at its end).
 *
 * @module
 */

import type { SqsCredentials } from "./_sqs_client.ts";

/** A queue that already exists, as in kombu's `predefined_queues`. */
export interface SqsPredefinedQueue {
  /** The queue URL. */
  url: string;
  /** Credentials for this queue only (kombu: `access_key_id`). */
  accessKeyId?: string;
  /** Credentials for this queue only (kombu: `secret_access_key`). */
  secretAccessKey?: string;
  /** A session token for this queue (kombu: `session_token`). */
  sessionToken?: string;
  /** The queue's region (kombu: `region`). */
  region?: string;
}

/** Options of {@linkcode SqsBroker}. */
export interface SqsBrokerOptions {
  /**
   * The region. kombu's `region`.
   * @default {AWS_REGION, AWS_DEFAULT_REGION, or "us-east-1"}
   */
  region?: string;
  /**
   * Where requests go. kombu takes the URL's host (`sqs://k:s@host:port`), which wins;
   * otherwise `AWS_ENDPOINT_URL_SQS`, then `AWS_ENDPOINT_URL`.
   * @default {https://sqs.<region>.amazonaws.com}
   */
  endpoint?: string;
  /**
   * Credentials; the URL's `KEY:SECRET@` win, then the environment (`AWS_ACCESS_KEY_ID`,
   * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
   */
  credentials?: SqsCredentials;
  /**
   * Prepended to every queue name. kombu's `queue_name_prefix`.
   * @default {""}
   */
  queueNamePrefix?: string;
  /**
   * How long a received message stays hidden from other consumers, in ms (rounded up to
   * seconds). Set on queues this broker creates; the broker also extends it for every
   * delivery it still holds (long tasks, prefetched messages), so a live worker never loses a
   * message, and a dead worker's messages come back after it. kombu's `visibility_timeout`
   * (seconds).
   * @default {1_800_000}
   */
  visibilityTimeout?: number;
  /**
   * Long-poll wait of one `ReceiveMessage`, in seconds (0–20). Aborting the consume signal
   * ends a poll at once. kombu's `wait_time_seconds`.
   * @default {20}
   */
  waitTimeSeconds?: number;
  /**
   * Queues that already exist: name → URL (and optional credentials). When set, only these
   * queues are used and none is created. kombu's `predefined_queues`.
   */
  predefinedQueues?: Record<string, SqsPredefinedQueue>;
  /**
   * Extra attributes for queues this broker creates (e.g. `KmsMasterKeyId`, `RedrivePolicy`).
   * kombu's `sqs-creation-attributes`.
   */
  creationAttributes?: Record<string, string>;
  /**
   * Longest per-message delay SQS takes, in seconds. An ETA further away is sent with this
   * delay and re-sent when it arrives, until it is due. Lower it only in tests.
   * @default {900}
   */
  maxDelaySeconds?: number;
  /**
   * Send bodies as the base64 of the JSON envelope (`false`: the JSON itself). Either is read.
   * kombu's `sqs_base64_encoding`.
   * @default {true}
   */
  base64Encoding?: boolean;
  /**
   * With a host in the URL, reach it over https rather than http. kombu's `is_secure`.
   * @default {false}
   */
  secure?: boolean;
  /**
   * Deliveries (SQS `ApproximateReceiveCount`) after which a message is dead-lettered.
   * @default {10}
   */
  maxDeliveries?: number;
  /**
   * Where a dead-lettered message goes: a function of the queue name, or `false` to delete
   * it. (kombu's renaming makes `celery.dlq` the SQS queue `celery-dlq`.)
   * @default {(q) => q.endsWith(".fifo") ? `${q.slice(0, -5)}.dlq.fifo` : `${q}.dlq`}
   */
  deadLetterQueue?: false | ((queue: string) => string);
}

/** The settings of one broker, all defaults applied. */
export interface SqsSettings {
  region: string;
  endpoint: string;
  /** Whether the endpoint came from configuration (not AWS's default). */
  endpointSet: boolean;
  credentials: SqsCredentials | undefined;
  queueNamePrefix: string;
  visibilitySeconds: number;
  waitTimeSeconds: number;
  predefinedQueues: Record<string, SqsPredefinedQueue>;
  creationAttributes: Record<string, string>;
  maxDelaySeconds: number;
  base64Encoding: boolean;
  maxDeliveries: number;
  deadLetterQueue: false | ((queue: string) => string);
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    // No --allow-env: the environment does not count.
    return undefined;
  }
}

/** The default dead-letter queue name of a queue. */
export function defaultDeadLetterQueue(queue: string): string {
  return queue.endsWith(".fifo") ? `${queue.slice(0, -5)}.dlq.fifo` : `${queue}.dlq`;
}

function positive(name: string, value: number, max = Infinity): number {
  if (!Number.isFinite(value) || value < 0 || value > max) {
    throw new RangeError(
      `Cannot set ${name}: it must be a number from 0 to ${max}, got ${value}`,
    );
  }
  return value;
}

/**
 * Resolves the settings from the URL, the options and the environment.
 *
 * @param url `sqs://`, `sqs://KEY:SECRET@` or `sqs://KEY:SECRET@host:port`.
 * @param options Options.
 * @returns The settings.
 * @throws {TypeError} For a URL that is not `sqs://`.
 * @throws {RangeError} For an option out of range.
 */
export function resolveSqsSettings(url: string, options: SqsBrokerOptions = {}): SqsSettings {
  const match = /^sqs:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]*)/i.exec(url);
  if (!match) throw new TypeError(`Cannot use SQS broker URL: it must start with sqs://`);
  const [, user, password, hostPort] = match;
  const region = options.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1";
  let endpoint = options.endpoint;
  if (hostPort) {
    // kombu: `is_secure` picks https; a host in the URL means a local or private endpoint.
    endpoint = `${options.secure ? "https" : "http"}://${hostPort}`;
  }
  endpoint ??= env("AWS_ENDPOINT_URL_SQS") ?? env("AWS_ENDPOINT_URL");
  const endpointSet = endpoint !== undefined;
  endpoint ??= `https://sqs.${region}.amazonaws.com`;
  let credentials = options.credentials;
  if (user) {
    credentials = {
      accessKeyId: decodeURIComponent(user),
      secretAccessKey: decodeURIComponent(password ?? ""),
    };
  }
  if (!credentials) {
    const accessKeyId = env("AWS_ACCESS_KEY_ID");
    const secretAccessKey = env("AWS_SECRET_ACCESS_KEY");
    const sessionToken = env("AWS_SESSION_TOKEN");
    if (accessKeyId && secretAccessKey) {
      credentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
    }
  }
  const predefinedQueues = options.predefinedQueues ?? {};
  for (const [name, q] of Object.entries(predefinedQueues)) {
    if (typeof q?.url !== "string") {
      throw new TypeError(`Cannot use predefined queue "${name}": it has no url`);
    }
    // kombu's _validate_predifined_queues: a FIFO URL needs a FIFO name and back.
    if (q.url.endsWith(".fifo") !== name.endsWith(".fifo")) {
      throw new TypeError(
        `Cannot use predefined queue "${name}": a FIFO queue's name and URL must both end in .fifo`,
      );
    }
  }
  return {
    region,
    endpoint,
    endpointSet,
    credentials,
    queueNamePrefix: options.queueNamePrefix ?? "",
    base64Encoding: options.base64Encoding ?? true,
    visibilitySeconds: Math.ceil(
      positive("visibilityTimeout", options.visibilityTimeout ?? 1_800_000, 43_200_000) / 1000,
    ),
    waitTimeSeconds: positive("waitTimeSeconds", options.waitTimeSeconds ?? 20, 20),
    predefinedQueues,
    creationAttributes: options.creationAttributes ?? {},
    maxDelaySeconds: positive("maxDelaySeconds", options.maxDelaySeconds ?? 900, 900),
    maxDeliveries: options.maxDeliveries ?? 10,
    deadLetterQueue: options.deadLetterQueue ?? defaultDeadLetterQueue,
  };
}

const str = (name: string, v: unknown): string => {
  if (typeof v !== "string") {
    throw new TypeError(`Cannot set ${name}: it must be a string, got ${typeof v}`);
  }
  return v;
};
const num = (name: string, v: unknown): number => {
  if (typeof v !== "number") {
    throw new TypeError(`Cannot set ${name}: it must be a number, got ${typeof v}`);
  }
  return v;
};

/**
 * Reads kombu's SQS `broker_transport_options` (snake_case, seconds) and celeriac's own
 * camelCase names (ms for `visibilityTimeout`), as `App({ transportOptions })` passes them.
 *
 * @param t The transport options.
 * @returns The broker options.
 * @throws {TypeError} For an option of the wrong type.
 */
export function sqsOptionsFromTransport(t: Record<string, unknown>): SqsBrokerOptions {
  const out: SqsBrokerOptions = {};
  if (t.region !== undefined) out.region = str("region", t.region);
  const endpoint = t.endpoint_url ?? t.endpoint;
  if (endpoint !== undefined) out.endpoint = str("endpoint_url", endpoint);
  const prefix = t.queue_name_prefix ?? t.queueNamePrefix;
  if (prefix !== undefined) out.queueNamePrefix = str("queue_name_prefix", prefix);
  if (t.visibility_timeout !== undefined) {
    out.visibilityTimeout = num("visibility_timeout", t.visibility_timeout) * 1000;
  } else if (t.visibilityTimeout !== undefined) {
    out.visibilityTimeout = num("visibilityTimeout", t.visibilityTimeout);
  }
  const wait = t.wait_time_seconds ?? t.waitTimeSeconds;
  if (wait !== undefined) out.waitTimeSeconds = num("wait_time_seconds", wait);
  const b64 = t.sqs_base64_encoding ?? t.base64Encoding;
  if (b64 !== undefined) out.base64Encoding = Boolean(b64);
  const secure = t.is_secure ?? t.secure;
  if (secure !== undefined) out.secure = Boolean(secure);
  const maxDelay = t.max_delay_seconds ?? t.maxDelaySeconds;
  if (maxDelay !== undefined) out.maxDelaySeconds = num("max_delay_seconds", maxDelay);
  const attrs = t["sqs-creation-attributes"] ?? t.creationAttributes;
  if (attrs !== undefined) {
    out.creationAttributes = Object.fromEntries(
      Object.entries(attrs as Record<string, unknown>).map(([k, v]) => [k, String(v)]),
    );
  }
  const predefined = t.predefined_queues ?? t.predefinedQueues;
  if (predefined !== undefined) {
    out.predefinedQueues = {};
    for (const [name, raw] of Object.entries(predefined as Record<string, unknown>)) {
      const q = (raw ?? {}) as Record<string, unknown>;
      const entry: SqsPredefinedQueue = { url: str(`predefined_queues.${name}.url`, q.url) };
      const key = q.access_key_id ?? q.accessKeyId;
      const secret = q.secret_access_key ?? q.secretAccessKey;
      const token = q.session_token ?? q.sessionToken;
      if (key !== undefined) entry.accessKeyId = str("access_key_id", key);
      if (secret !== undefined) entry.secretAccessKey = str("secret_access_key", secret);
      if (token !== undefined) entry.sessionToken = str("session_token", token);
      if (q.region !== undefined) entry.region = str("region", q.region);
      out.predefinedQueues[name] = entry;
    }
  }
  return out;
}

// kombu's CHARS_REPLACE_TABLE: punctuation other than - _ . becomes _, and . becomes -.
const PUNCTUATION = /[!"#$%&'()*+,/:;<=>?@[\\\]^`{|}~]/g;

/**
 * kombu's `entity_name`: an AMQP-style queue name as a legal SQS queue name (`.fifo` kept).
 *
 * @param name The name, prefix included.
 * @returns The SQS name.
 * @example
 * ```ts
 * import { sqsQueueName } from "./_sqs_options.ts";
 * console.assert(sqsQueueName("celery.pidbox") === "celery-pidbox");
 * console.assert(sqsQueueName("jobs:high.fifo") === "jobs_high.fifo");
 * ```
 */
export function sqsQueueName(name: string): string {
  const fifo = name.endsWith(".fifo");
  const base = fifo ? name.slice(0, -5) : name;
  const legal = base.replace(PUNCTUATION, "_").replaceAll(".", "-");
  return fifo ? `${legal}.fifo` : legal;
}
