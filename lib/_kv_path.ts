/**
 * Where a `kv://` URL points: `kv://` is `.celeriac/celeriac.kv` under the working directory,
 * `kv:///abs/path` an absolute file, `kv://./rel/path` a relative one, `kv://:memory:` an
 * in-memory store, and `kv+https://...` a KV Connect URL.
 *
 * @module
 */

/**
 * Resolves a `kv://` URL to what `Deno.openKv` takes.
 *
 * @param url The URL.
 * @returns A path, `:memory:`, or an `https://` URL.
 * @example
 * ```ts
 * import { kvPathOf } from "./_kv_path.ts";
 * console.assert(kvPathOf("kv:///tmp/x.kv") === "/tmp/x.kv");
 * ```
 */
export function kvPathOf(url: string): string {
  if (url.startsWith("kv+https://")) return url.slice(3);
  const rest = url.replace(/^kv:\/\//, "");
  if (rest === "") return ".celeriac/celeriac.kv";
  return rest;
}
