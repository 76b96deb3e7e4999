/**
 * kombu's SQS message format: the body of an SQS message is the base64 of the JSON kombu
 * envelope (`kombu/transport/SQS.py:Channel._put` with `sqs_base64_encoding`, its default),
 * the same envelope as on Redis. On receive kombu decodes base64 when the body round-trips
 * (`_optional_b64_decode`), so plain JSON bodies are read too, and a JSON body that is no
 * kombu envelope becomes the task body itself (`_message_to_python`).
 *
 * @module
 */

import { parseJson, stringifyJson } from "../protocol/json.ts";
import { fromKombuEnvelope, toKombuEnvelope } from "../protocol/kombu.ts";
import type { Message } from "../protocol/message.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Encodes a message as kombu's SQS transport sends it.
 *
 * @param message The message.
 * @param queue The queue name (before kombu's SQS renaming): the routing key.
 * @param base64 Base64 the JSON (kombu's `sqs_base64_encoding`, its default).
 * @returns The `MessageBody` to send.
 * @example
 * ```ts
 * import { encodeSqsBody, decodeSqsBody } from "./_sqs_format.ts";
 * import { encodeTask } from "../protocol/message.ts";
 * const m = encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} });
 * const body = encodeSqsBody(m, "celery");
 * console.assert(JSON.parse(atob(body)).properties.delivery_info.routing_key === "celery");
 * console.assert(decodeSqsBody(body).body === m.body);
 * ```
 */
export function encodeSqsBody(message: Message, queue: string, base64 = true): string {
  const json = stringifyJson(toKombuEnvelope(message, { queue }));
  return base64 ? utf8.encode(json).toBase64() : json;
}

/**
 * Decodes an SQS message body into a {@linkcode Message}, as kombu's SQS transport reads it.
 *
 * @param body The SQS `Body`.
 * @returns The message.
 * @throws {MessageDecodeError} When the body is neither a kombu envelope nor JSON.
 */
export function decodeSqsBody(body: string): Message {
  let text = body;
  if (BASE64.test(body) && body.length > 0) {
    try {
      text = utf8Decoder.decode(Uint8Array.fromBase64(body));
    } catch {
      text = body;
    }
  }
  const value = parseJson(text);
  if (
    value !== null && typeof value === "object" && !Array.isArray(value) &&
    "properties" in value && "body" in value
  ) {
    return fromKombuEnvelope(value);
  }
  // JSON not sent by kombu: the whole text is the body (kombu does the same).
  return {
    headers: {},
    properties: {},
    body: text,
    contentType: "application/json",
    contentEncoding: "utf-8",
  };
}
