/**
 * Message bodies larger than one Deno KV value (64 KiB), for the KV broker: the body is stored
 * as UTF-8 chunks under `[P, "q", queue, "chunk", id, i]` and the entry keeps an empty body and
 * the chunk count. Chunks never move: an entry goes from `ready` to `lease` to `dead` and back
 * by rewriting the small entry only, so a claim stays one atomic operation over the entry,
 * whatever the size of the body. The chunks are written before the entry that refers to them
 * (nothing sees them until then) and deleted with the entry's ack, purge or dead-letter purge.
 *
 * @module
 */

import { commit, retry } from "../_kv.ts";

/** Bytes of body per chunk: under the 64 KiB value limit with room for serialization. */
export const CHUNK_BYTES = 60_000;

/** Chunks deleted in the same atomic operation as an ack; more are deleted right after. */
export const INLINE_CHUNK_DELETES = 200;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Splits a body into chunks of at most {@linkcode CHUNK_BYTES} UTF-8 bytes.
 *
 * @param body The message body.
 * @returns The chunks.
 */
export function splitBody(body: string): Uint8Array[] {
  const bytes = encoder.encode(body);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += CHUNK_BYTES) {
    chunks.push(bytes.slice(i, i + CHUNK_BYTES));
  }
  return chunks;
}

/**
 * Writes chunks, at most 10 per atomic operation (under Deno KV's 800 KiB per operation).
 *
 * @param kv The store.
 * @param key The key of chunk `i`.
 * @param chunks The chunks.
 */
export async function writeChunks(
  kv: Deno.Kv,
  key: (i: number) => Deno.KvKey,
  chunks: readonly Uint8Array[],
): Promise<void> {
  for (let i = 0; i < chunks.length; i += 10) {
    await commit(() => {
      const op = kv.atomic();
      for (let j = i; j < Math.min(i + 10, chunks.length); j++) op.set(key(j), chunks[j]);
      return op;
    });
  }
}

/**
 * Reads a chunked body back.
 *
 * @param kv The store.
 * @param key The key of chunk `i`.
 * @param count How many chunks.
 * @returns The body, or `undefined` when a chunk is missing or not UTF-8.
 */
export async function readChunks(
  kv: Deno.Kv,
  key: (i: number) => Deno.KvKey,
  count: number,
): Promise<string | undefined> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (let i = 0; i < count; i += 10) {
    const keys = Array.from({ length: Math.min(10, count - i) }, (_, j) => key(i + j));
    const got = await retry(() => kv.getMany<Uint8Array[]>(keys));
    for (const e of got) {
      if (!(e.value instanceof Uint8Array)) return undefined;
      parts.push(e.value);
      size += e.value.byteLength;
    }
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  try {
    return decoder.decode(all);
  } catch {
    return undefined;
  }
}

/**
 * Deletes chunks, in batches.
 *
 * @param kv The store.
 * @param key The key of chunk `i`.
 * @param count How many chunks.
 * @param from The first one to delete.
 */
export async function deleteChunks(
  kv: Deno.Kv,
  key: (i: number) => Deno.KvKey,
  count: number,
  from = 0,
): Promise<void> {
  for (let i = from; i < count; i += 500) {
    await commit(() => {
      const op = kv.atomic();
      for (let j = i; j < Math.min(i + 500, count); j++) op.delete(key(j));
      return op;
    });
  }
}
