/**
 * kombu's Redis (virtual transport) envelope: the JSON object stored as one element of a queue
 * list. See `kombu/transport/virtual/base.py:Channel.prepare_message` and
 * `_inplace_augment_message`, and CELERY_PROTOCOL.md §2.2.
 *
 * Both functions here are pure: no I/O, no clock, so a broker may call them on its hot path.
 *
 * @module
 */

import { MessageDecodeError } from "../errors.ts";
import { boundedRepr } from "./repr.ts";
import { bodyFromBytes, bodyToBytes, isByteBody } from "./body.ts";
import type { Message, MessageProperties } from "./message.ts";

/** Where kombu records the exchange and routing key a message was published with. */
export interface KombuDeliveryInfo {
  /** The exchange; `""` is the default (direct to the queue). */
  exchange: string;
  /** The routing key; for the default exchange, the queue name. */
  routing_key: string;
  /** Set by kombu when a visibility timeout restores the message. */
  redelivered?: boolean;
  /** Any other key. */
  [key: string]: unknown;
}

/** The properties of a kombu envelope: the message properties plus the transport's own. */
export interface KombuProperties extends MessageProperties {
  /** `"base64"`: how `body` is encoded in the envelope. */
  body_encoding: string;
  /** A uuid4 that names the message in the `unacked` hash. */
  delivery_tag: string;
  /** Exchange and routing key. A Python worker crashes when these are missing. */
  delivery_info: KombuDeliveryInfo;
  /** 0–9; selects the Redis priority list. */
  priority: number;
}

/** One queue element as kombu writes it. Note the dashed `content-*` keys. */
export interface KombuEnvelope {
  /** The body, base64-encoded when `properties.body_encoding` is `"base64"`. */
  body: string;
  /** Character set of the decoded body, `utf-8` (or `binary`). */
  "content-encoding": string;
  /** MIME type of the decoded body, `application/json`. */
  "content-type": string;
  /** Application headers (Celery's task headers). */
  headers: Record<string, unknown>;
  /** Properties. */
  properties: KombuProperties;
}

/** Options of {@linkcode toKombuEnvelope}. */
export interface ToKombuEnvelopeOptions {
  /** The queue the message is published to; the default routing key. */
  queue: string;
  /**
   * The delivery tag.
   * @default {crypto.randomUUID()}
   */
  deliveryTag?: string;
  /**
   * The exchange recorded in `delivery_info`.
   * @default {""}
   */
  exchange?: string;
  /**
   * The routing key recorded in `delivery_info`.
   * @default {queue}
   */
  routingKey?: string;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

const NOT_PRINTABLE_ASCII = /[^\t\n\r\u0020-\u007e]/;
const NOT_BASE64_CHAR = /[^A-Za-z0-9+/]/;

// Whether `body` is canonical, padded base64 (what atob and Uint8Array.fromBase64 both accept
// alike), checked in linear time: a length that is a multiple of 4, then one character-class
// scan of all but the (at most two) trailing `=`. A backtracking regex over the whole body
// overflows V8's regex stack on bodies of a few megabytes.
function isPlainBase64(body: string): boolean {
  if (body.length % 4 !== 0) return false;
  let end = body.length;
  if (end > 0 && body.charCodeAt(end - 1) === 0x3d) end--;
  if (end > 0 && body.charCodeAt(end - 1) === 0x3d) end--;
  return !NOT_BASE64_CHAR.test(end === body.length ? body : body.slice(0, end));
}

// What is wrong with a body Uint8Array.fromBase64 refused, for the error reason.
function base64Problem(body: string): string {
  const trimmed = body.replace(/[\t\n\f\r ]+/g, "");
  const bad = /[^A-Za-z0-9+/=]/.exec(trimmed);
  if (bad) {
    return `character ${JSON.stringify(bad[0])} at offset ${bad.index} is not a base64 character`;
  }
  const pad = trimmed.indexOf("=");
  if (pad !== -1 && !/^={1,2}$/.test(trimmed.slice(pad))) {
    return `padding "=" at offset ${pad} is not at the end`;
  }
  return `its length ${trimmed.length} is not a multiple of 4`;
}

// The fast path of the usual body: canonical base64 of printable ASCII, which is its own
// UTF-8. Anything else (undefined) takes the checked path.
function asciiFromBase64(body: string): string | undefined {
  if (!isPlainBase64(body)) return undefined;
  const text = atob(body);
  return NOT_PRINTABLE_ASCII.test(text) ? undefined : text;
}

/**
 * Converts a kombu envelope, as popped from a Redis queue list, to a transport-neutral
 * {@linkcode Message}: the body is base64-decoded, the dashed `content-*` keys become
 * `contentType`/`contentEncoding`, and `body_encoding` is dropped. `delivery_tag` and
 * `delivery_info` stay in `properties`, for the broker's ack bookkeeping.
 *
 * @param envelope The envelope: a parsed object, or the JSON text of one.
 * @returns The message. A binary (`content-encoding: binary`) or compressed (a `compression`
 *   header) body is returned one character per byte, for `decodeTask` to inflate or refuse; any
 *   other body is decoded as UTF-8. Base64 is checked in linear time: bodies of any size decode.
 * @throws {MessageDecodeError} When the value is not a kombu envelope, or its body is not valid
 *   base64 or UTF-8.
 * @example
 * ```ts
 * import { fromKombuEnvelope } from "./kombu.ts";
 * const m = fromKombuEnvelope({
 *   body: btoa("[[2,2],{},{}]"),
 *   "content-type": "application/json",
 *   "content-encoding": "utf-8",
 *   headers: { task: "tasks.add", id: "1" },
 *   properties: { body_encoding: "base64", delivery_tag: "t", priority: 0,
 *     delivery_info: { exchange: "", routing_key: "celery" } },
 * });
 * console.assert(m.body === "[[2,2],{},{}]" && m.contentType === "application/json");
 * ```
 */
export function fromKombuEnvelope(envelope: unknown): Message {
  let value = envelope;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch (cause) {
      throw new MessageDecodeError(
        `Envelope is not valid JSON: ${(cause as Error).message}`,
        { cause },
      );
    }
  }
  if (!isObject(value)) {
    throw new MessageDecodeError(
      `A kombu envelope must be a JSON object, got ${
        Array.isArray(value) ? "a list" : typeof value
      }`,
    );
  }
  const { body, headers, properties } = value;
  const contentType = value["content-type"];
  const contentEncoding = value["content-encoding"];
  if (typeof body !== "string") {
    throw new MessageDecodeError("A kombu envelope's body must be a string");
  }
  if (typeof contentType !== "string" || typeof contentEncoding !== "string") {
    throw new MessageDecodeError(
      "A kombu envelope needs string content-type and content-encoding keys",
    );
  }
  if (headers !== undefined && headers !== null && !isObject(headers)) {
    throw new MessageDecodeError("A kombu envelope's headers must be a mapping");
  }
  if (properties !== undefined && properties !== null && !isObject(properties)) {
    throw new MessageDecodeError("A kombu envelope's properties must be a mapping");
  }
  const { body_encoding: bodyEncoding, ...rest } = properties ?? {};
  const bytesBody = isByteBody(contentEncoding, headers as Record<string, unknown> | undefined);
  let text = body;
  const ascii = bodyEncoding === "base64" && !bytesBody ? asciiFromBase64(body) : undefined;
  if (ascii !== undefined) {
    text = ascii;
  } else if (bodyEncoding === "base64") {
    let bytes: Uint8Array;
    try {
      bytes = Uint8Array.fromBase64(body);
    } catch (cause) {
      throw new MessageDecodeError(
        `A kombu envelope's body is not valid base64: ${base64Problem(body)}`,
        { cause },
      );
    }
    try {
      text = bodyFromBytes(bytes, contentEncoding, headers as Record<string, unknown> | undefined);
    } catch (cause) {
      throw new MessageDecodeError(`A kombu envelope's body is not valid UTF-8`, { cause });
    }
  } else if (bodyEncoding !== undefined && bodyEncoding !== null) {
    throw new MessageDecodeError(
      `Unsupported kombu body_encoding ${boundedRepr(bodyEncoding, { maxLength: 80 })}`,
    );
  }
  return {
    headers: { ...(headers ?? {}) },
    properties: rest as MessageProperties,
    body: text,
    contentType,
    contentEncoding,
  };
}

/**
 * Wraps a {@linkcode Message} in kombu's Redis envelope, exactly as a Python producer writes it:
 * base64 body, dashed `content-*` keys, `body_encoding`, a uuid `delivery_tag`, `delivery_info`
 * and `priority` (default 0). Any `delivery_info`/`delivery_tag` already in the message's
 * properties are replaced.
 *
 * @param message The message (from `encodeTask`, or a delivery being republished).
 * @param options The queue, and optionally the tag, exchange and routing key.
 * @returns The envelope; `JSON.stringify` it and `LPUSH` it to the queue's list.
 * @throws {TypeError} When `options.queue` is empty.
 * @example
 * ```ts
 * import { encodeTask } from "./message.ts";
 * import { toKombuEnvelope } from "./kombu.ts";
 * const m = encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} });
 * const env = toKombuEnvelope(m, { queue: "celery", deliveryTag: "t1" });
 * console.assert(env.properties.delivery_info.routing_key === "celery");
 * console.assert(atob(env.body) === m.body);
 * ```
 */
export function toKombuEnvelope(message: Message, options: ToKombuEnvelopeOptions): KombuEnvelope {
  const { queue, deliveryTag = crypto.randomUUID(), exchange = "", routingKey = queue } = options;
  if (typeof queue !== "string" || queue === "") {
    throw new TypeError(`Cannot build a kombu envelope: queue must be a non-empty string`);
  }
  const bytesBody = isByteBody(message.contentEncoding, message.headers);
  // Printable ASCII (the usual JSON body) is its own UTF-8: btoa takes it as is.
  const body = !bytesBody && !NOT_PRINTABLE_ASCII.test(message.body)
    ? btoa(message.body)
    : bodyToBytes(message.body, message.contentEncoding, message.headers).toBase64();
  const {
    delivery_info: _info,
    delivery_tag: _tag,
    body_encoding: _encoding,
    priority,
    ...properties
  } = message.properties;
  return {
    body,
    "content-encoding": message.contentEncoding,
    "content-type": message.contentType,
    headers: message.headers,
    properties: {
      ...properties,
      delivery_info: { exchange, routing_key: routingKey },
      priority: typeof priority === "number" ? priority : 0,
      body_encoding: "base64",
      delivery_tag: deliveryTag,
    },
  };
}
