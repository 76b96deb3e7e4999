/**
 * A message body between bytes (as brokers carry it) and the `Message.body` string. A text body
 * is UTF-8. A binary body (`content-encoding: binary`, as kombu marks pickle and msgpack) and a
 * compressed body (a `compression` header, see `compression.ts`) are kept one character per
 * byte, so that they survive unchanged until `decodeTask` inflates them or refuses them with a
 * clear reason.
 *
 * @module
 */

import { MessageDecodeError } from "../errors.ts";
import { isCompressed } from "./compression.ts";

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Whether a body is carried one character per byte rather than as UTF-8 text.
 *
 * @param contentEncoding The message's content encoding.
 * @param headers The message's headers.
 * @returns `true` for `binary` content, or a compressed body.
 * @example
 * ```ts
 * import { isByteBody } from "./body.ts";
 * console.assert(isByteBody("binary", {}) && isByteBody("utf-8", { compression: "gzip" }));
 * console.assert(!isByteBody("utf-8", {}));
 * ```
 */
export function isByteBody(
  contentEncoding: string,
  headers: Record<string, unknown> | null | undefined,
): boolean {
  return contentEncoding.toLowerCase() === "binary" || isCompressed(headers);
}

/**
 * Bytes to a string, one character per byte (latin-1), so binary data survives unchanged.
 *
 * @param bytes The bytes.
 * @returns The string.
 * @example
 * ```ts
 * import { bytesToLatin1 } from "./body.ts";
 * console.assert(bytesToLatin1(new Uint8Array([0x80, 0x41])) === "\x80A");
 * ```
 */
export function bytesToLatin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return text;
}

/**
 * The inverse of {@linkcode bytesToLatin1}: each character's low byte.
 *
 * @param text The string.
 * @returns The bytes.
 * @example
 * ```ts
 * import { latin1ToBytes } from "./body.ts";
 * console.assert(latin1ToBytes("\x80A")[0] === 0x80);
 * ```
 */
export function latin1ToBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * The `Message.body` string of a body received as bytes: UTF-8 text, or one character per byte
 * for a binary or compressed body ({@linkcode isByteBody}). A broker that receives raw bytes
 * (AMQP) calls this instead of a lossy `TextDecoder`.
 *
 * @param bytes The body as received.
 * @param contentEncoding The message's content encoding.
 * @param headers The message's headers.
 * @returns The body string.
 * @throws {MessageDecodeError} When a text body is not valid UTF-8.
 * @example
 * ```ts
 * import { bodyFromBytes } from "./body.ts";
 * console.assert(bodyFromBytes(new TextEncoder().encode("[]"), "utf-8", {}) === "[]");
 * ```
 */
export function bodyFromBytes(
  bytes: Uint8Array,
  contentEncoding: string,
  headers: Record<string, unknown> | null | undefined,
): string {
  if (isByteBody(contentEncoding, headers)) return bytesToLatin1(bytes);
  try {
    return utf8Decoder.decode(bytes);
  } catch (cause) {
    throw new MessageDecodeError(
      `the body is not valid UTF-8 (content-encoding ${contentEncoding})`,
      { cause },
    );
  }
}

/**
 * The bytes to send for a `Message.body`: the inverse of {@linkcode bodyFromBytes}.
 *
 * @param body The body string.
 * @param contentEncoding The message's content encoding.
 * @param headers The message's headers.
 * @returns The bytes.
 * @example
 * ```ts
 * import { bodyToBytes } from "./body.ts";
 * console.assert(bodyToBytes("\x80", "binary", {})[0] === 0x80);
 * ```
 */
export function bodyToBytes(
  body: string,
  contentEncoding: string,
  headers: Record<string, unknown> | null | undefined,
): Uint8Array {
  return isByteBody(contentEncoding, headers) ? latin1ToBytes(body) : utf8.encode(body);
}
