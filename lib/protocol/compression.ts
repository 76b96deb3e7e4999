/**
 * kombu's body compression (`kombu/compression.py`): a producer compresses the serialized body
 * and names the method in the `compression` header. kombu 5.2 registers `application/x-gzip`
 * (aliases `gzip` and `zlib`, both written with `zlib.compress`, so the bytes have a zlib
 * header), `application/x-bz2` (`bzip2`, `bzip`), `application/x-brotli`, `application/x-lzma`
 * and `application/zstd`. celeriac reads the zlib family (zlib or gzip framing, told apart by
 * their first bytes) and brotli, with `node:zlib`'s synchronous API so that decoding stays
 * synchronous; the others are refused with a clear reason (and, since protocol v2 headers are
 * never compressed, the worker stores a FAILURE for the task id so its client does not wait).
 * bzip2 is not decoded: npm's pure-JS decoders (`seek-bzip`, `unbzip2-stream`, `compressjs`)
 * are unmaintained for years or stream-only, and none bounds its output against a
 * decompression bomb as `maxOutputLength` does here.
 *
 * @module
 */

import { brotliDecompressSync, unzipSync } from "node:zlib";
import { MessageDecodeError } from "../errors.ts";
import { boundedRepr } from "./repr.ts";

/**
 * The largest body a compressed message may inflate to: 512 MiB. A larger output (a
 * decompression bomb, or a mistake) is refused instead of exhausting memory.
 */
export const MAX_DECOMPRESSED_BYTES = 512 * 1024 * 1024;

const ZLIB_NAMES = new Set([
  "application/x-gzip",
  "application/gzip",
  "application/x-zlib",
  "application/zlib",
  "gzip",
  "zlib",
]);
const BROTLI_NAMES = new Set(["application/x-brotli", "brotli"]);

// kombu's names of the methods celeriac cannot inflate, for error messages.
const UNSUPPORTED_NAMES: Record<string, string> = {
  "application/x-bz2": "bzip2",
  bzip2: "bzip2",
  bzip: "bzip2",
  "application/x-lzma": "lzma",
  lzma: "lzma",
  "application/zstd": "zstd",
  zstd: "zstd",
};

/** The compression methods celeriac inflates, as an error message lists them. */
export const SUPPORTED_COMPRESSION = "gzip, zlib, brotli";

/**
 * Whether {@linkcode decompress} can inflate a body compressed with this method.
 *
 * @param compression The `compression` header.
 * @returns `true` for the zlib family and brotli.
 * @example
 * ```ts
 * import { canDecompress } from "./compression.ts";
 * console.assert(canDecompress("application/x-gzip") && !canDecompress("application/x-bz2"));
 * ```
 */
export function canDecompress(compression: unknown): boolean {
  const name = typeof compression === "string" ? compression.trim().toLowerCase() : undefined;
  return name !== undefined && (ZLIB_NAMES.has(name) || BROTLI_NAMES.has(name));
}

/**
 * The common name of a compression method celeriac cannot inflate (`bzip2` for kombu's
 * `application/x-bz2`), or the header as sent, bounded.
 *
 * @param compression The `compression` header.
 * @returns The name.
 * @example
 * ```ts
 * import { compressionName } from "./compression.ts";
 * console.assert(compressionName("application/x-bz2") === "bzip2");
 * ```
 */
export function compressionName(compression: unknown): string {
  const name = typeof compression === "string" ? compression.trim().toLowerCase() : "";
  return UNSUPPORTED_NAMES[name] ?? boundedRepr(compression, { maxLength: 80 });
}

/**
 * Whether headers name a compression method (a non-empty `compression` header).
 *
 * @param headers Message headers.
 * @returns `true` when the body is compressed.
 * @example
 * ```ts
 * import { isCompressed } from "./compression.ts";
 * console.assert(isCompressed({ compression: "application/x-gzip" }));
 * console.assert(!isCompressed({ compression: null }));
 * ```
 */
export function isCompressed(headers: Record<string, unknown> | null | undefined): boolean {
  const value = headers?.compression;
  return value !== undefined && value !== null && value !== "";
}

/**
 * Inflates a compressed body.
 *
 * @param bytes The compressed body.
 * @param compression The `compression` header: a kombu content type or alias.
 * @param maxBytes The largest output accepted.
 * @returns The inflated bytes.
 * @throws {MessageDecodeError} When the method is not supported, the data is corrupt, or the
 *   output would exceed `maxBytes` (by default {@linkcode MAX_DECOMPRESSED_BYTES}).
 * @example
 * ```ts
 * import { deflateSync } from "node:zlib";
 * import { decompress } from "./compression.ts";
 * const out = decompress(deflateSync(new TextEncoder().encode("[[2],{},{}]")), "gzip");
 * console.assert(new TextDecoder().decode(out) === "[[2],{},{}]");
 * ```
 */
export function decompress(
  bytes: Uint8Array,
  compression: unknown,
  maxBytes: number = MAX_DECOMPRESSED_BYTES,
): Uint8Array {
  const name = typeof compression === "string" ? compression.trim().toLowerCase() : undefined;
  const zlib = name !== undefined && ZLIB_NAMES.has(name);
  if (!canDecompress(compression)) {
    throw new MessageDecodeError(
      `compression ${
        boundedRepr(compression, { maxLength: 80 })
      } is not supported (supported: ${SUPPORTED_COMPRESSION})`,
    );
  }
  try {
    const options = { maxOutputLength: maxBytes };
    return zlib ? unzipSync(bytes, options) : brotliDecompressSync(bytes, options);
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    throw new MessageDecodeError(
      code === "ERR_BUFFER_TOO_LARGE"
        ? `compressed body inflates to more than ${maxBytes} bytes`
        : `compressed body is not valid ${zlib ? "zlib/gzip" : "brotli"} data: ${
          (cause as Error).message
        }`,
      { cause },
    );
  }
}
