/**
 * Private helpers of the Deno KV transport: turning a `kv://` URL into what `Deno.openKv`
 * takes, one shared (ref-counted) `Deno.Kv` handle per path and process, and retrying the
 * operations SQLite refuses while another process holds its write lock.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { delay } from "./_signal.ts";

/**
 * The file a bare `kv://` opens, relative to the app module's folder (see
 * {@linkcode withKvDefault}; `CELERIAC_KV_PATH` overrides it).
 */
export const DEFAULT_KV_PATH = ".celeriac/celeriac.kv";

/**
 * Turns a broker or backend URL into the argument of `Deno.openKv`.
 *
 * - `kv://` (or `kv:`): `$CELERIAC_KV_PATH`, else `.celeriac/celeriac.kv` under the current
 *   directory (the App first makes a bare `kv://` absolute with {@linkcode withKvDefault});
 * - `kv:///abs/path`: an absolute file;
 * - `kv://./rel/path` (or `kv://rel/path`): a file relative to the current directory;
 * - `kv://:memory:`: a private in-memory store (one per process, shared by its users);
 * - `kv+https://host/path`: a KV Connect URL (Deno Deploy), as `https://host/path`.
 *
 * `kvUrl` (the `kvUrl` transport option) wins over the URL when given.
 *
 * @param url The URL.
 * @param kvUrl A KV Connect `https://` URL or a path, from the transport options.
 * @returns `{ target, local }`: what to pass to `Deno.openKv`, and whether it is a file whose
 * directory must exist.
 * @throws {TypeError} For a URL that is not `kv:` or `kv+http(s):`.
 * @example
 * ```ts
 * import { kvTarget } from "./_kv.ts";
 * console.assert(kvTarget("kv:///tmp/x.kv").target === "/tmp/x.kv");
 * ```
 */
export function kvTarget(url: string, kvUrl?: string): { target: string; local: boolean } {
  if (kvUrl !== undefined) {
    if (typeof kvUrl !== "string" || kvUrl === "") {
      throw new TypeError(`Cannot use kvUrl: it must be a non-empty string, got ${kvUrl}`);
    }
    if (/^https?:\/\//i.test(kvUrl)) return { target: kvUrl, local: false };
    return kvTarget(kvUrl.startsWith("kv:") ? kvUrl : `kv://${kvUrl}`);
  }
  const remote = /^kv\+(https?:\/\/.+)$/i.exec(url);
  if (remote) return { target: remote[1]!, local: false };
  const match = /^kv:(?:\/\/)?(.*)$/i.exec(url);
  if (!match) {
    throw new TypeError(
      `Cannot use KV URL "${url}": expected kv://, kv:///abs/path, kv://./rel/path or kv+https://...`,
    );
  }
  const rest = decodeURIComponent(match[1]!.replace(/[?#].*$/, ""));
  if (rest === ":memory:") return { target: ":memory:", local: false };
  return { target: resolve(rest === "" ? kvPathFromEnv() ?? DEFAULT_KV_PATH : rest), local: true };
}

interface Shared {
  kv: Promise<Deno.Kv>;
  refs: number;
}

const handles = new Map<string, Shared>();

/**
 * A reference to a shared `Deno.Kv` handle: the first `acquire` of a target opens it (and
 * creates a file's directory), the last `release` closes it.
 */
export class KvHandle {
  readonly #target: string;
  readonly #local: boolean;
  #shared: Shared | undefined;
  #released = false;

  /**
   * Describes the handle; nothing is opened yet.
   *
   * @param url A `kv:` URL.
   * @param kvUrl The `kvUrl` transport option.
   */
  constructor(url: string, kvUrl?: string) {
    const { target, local } = kvTarget(url, kvUrl);
    this.#target = target;
    this.#local = local;
  }

  /** What `Deno.openKv` is given. */
  get target(): string {
    return this.#target;
  }

  /**
   * Opens (or reuses) the shared handle.
   *
   * @returns The KV store.
   */
  acquire(): Promise<Deno.Kv> {
    if (this.#released) return Promise.reject(new Error("Cannot use KV: it is closed"));
    if (this.#shared) return this.#shared.kv;
    let shared = handles.get(this.#target);
    if (!shared) {
      const target = this.#target;
      const local = this.#local;
      const kv = (async () => {
        if (local) await Deno.mkdir(dirname(target), { recursive: true });
        if (typeof Deno.openKv !== "function") {
          throw new Error(
            "Cannot open Deno KV: Deno.openKv is missing; run with --unstable-kv " +
              '(or "unstable": ["kv"] in deno.json)',
          );
        }
        return await retry(() => Deno.openKv(target === ":memory:" ? ":memory:" : target));
      })();
      shared = { kv, refs: 0 };
      handles.set(this.#target, shared);
      // A failed open must not poison later attempts.
      kv.catch(() => {
        if (handles.get(target) === shared) handles.delete(target);
      });
    }
    shared.refs++;
    this.#shared = shared;
    return shared.kv;
  }

  /** Drops this reference; the last one closes the store. Idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const shared = this.#shared;
    if (!shared) return;
    this.#shared = undefined;
    if (--shared.refs > 0) return;
    if (handles.get(this.#target) === shared) handles.delete(this.#target);
    try {
      (await shared.kv).close();
    } catch {
      // The open failed or the store is already closed: nothing to release.
    }
  }
}

/**
 * Whether an error is SQLite refusing a write because another process holds the lock (or a
 * similar transient condition worth retrying).
 *
 * @param error The error.
 * @returns `true` to retry.
 * @example
 * ```ts
 * import { isTransient } from "./_kv.ts";
 * console.assert(isTransient(new Error("database is locked")));
 * ```
 */
export function isTransient(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /database is locked|database table is locked|SQLITE_BUSY|\bbusy\b/i.test(message);
}

/**
 * Runs `fn`, retrying transient KV errors ("database is locked") with jittered exponential
 * backoff, so they never surface while several processes share one file.
 *
 * @param fn The operation.
 * @param signal Stops retrying.
 * @returns What `fn` returns.
 * @example
 * ```ts
 * import { retry } from "./_kv.ts";
 * console.assert(await retry(() => Promise.resolve(1)) === 1);
 * ```
 */
export async function retry<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  let wait = 2;
  const deadline = Date.now() + 120_000;
  while (true) {
    try {
      return await fn();
    } catch (error) {
      if (!isTransient(error) || Date.now() > deadline) throw error;
      await delay(wait * (0.5 + Math.random()), signal);
      wait = Math.min(wait * 2, 250);
    }
  }
}

/**
 * Commits an atomic operation, retrying transient errors. A failed check is not an error: it
 * returns `false`.
 *
 * @param build Builds the operation (called again on each retry).
 * @param signal Stops retrying.
 * @returns Whether the operation committed.
 * @example
 * ```ts
 * import { commit } from "./_kv.ts";
 * const kv = await Deno.openKv(":memory:");
 * console.assert(await commit(() => kv.atomic().set(["a"], 1)));
 * kv.close();
 * ```
 */
export async function commit(
  build: () => Deno.AtomicOperation,
  signal?: AbortSignal,
): Promise<boolean> {
  const result = await retry(() => build().commit(), signal);
  return result.ok;
}

/**
 * Group commit: unconditional writes (sets, deletes, sums) handed to `write` while a commit is
 * in flight are committed together in the next one. SQLite syncs the file once per commit, so
 * this multiplies the write rate of a busy process without delaying an idle one.
 */
export class GroupCommit {
  readonly #kv: Deno.Kv;
  #queue: {
    build: (op: Deno.AtomicOperation) => void;
    size: number;
    done: PromiseWithResolvers<void>;
  }[] = [];
  #flushing = false;

  /**
   * @param kv The store.
   */
  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /**
   * Adds writes to the next commit.
   *
   * @param build Adds the mutations to the operation (no checks: a batch must not fail).
   * @param size About how many bytes the mutations write.
   * @returns Once committed.
   */
  write(build: (op: Deno.AtomicOperation) => void, size = 100): Promise<void> {
    const done = Promise.withResolvers<void>();
    this.#queue.push({ build, size, done });
    if (!this.#flushing) this.#flush();
    return done.promise;
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        // Stay well under Deno KV's limits (1000 mutations, 800 KiB per operation).
        let bytes = 0;
        let n = 0;
        while (n < this.#queue.length && n < 100 && bytes < 400_000) {
          bytes += this.#queue[n]!.size;
          n++;
        }
        const batch = this.#queue.splice(0, n);
        try {
          await commit(() => {
            const op = this.#kv.atomic();
            for (const w of batch) w.build(op);
            return op;
          });
          for (const w of batch) w.done.resolve();
        } catch (error) {
          for (const w of batch) w.done.reject(error);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }
}

/**
 * Where a bare `kv://` points: `$CELERIAC_KV_PATH` when set (a file path, absolute or relative
 * to the current directory), else `.celeriac/celeriac.kv` in `dir` (the app module's folder),
 * else under the current directory. Any other URL is returned unchanged.
 *
 * @param url A broker or backend URL.
 * @param dir The app module's folder, when known.
 * @returns The URL, with a bare `kv://` made `kv:///absolute/path`.
 * @example
 * ```ts
 * import { withKvDefault } from "./_kv.ts";
 * console.assert(withKvDefault("redis://h", "/srv/app") === "redis://h");
 * console.assert(withKvDefault("kv://?leaseTime=5000", "/srv/app").endsWith("kv?leaseTime=5000"));
 * ```
 */
export function withKvDefault(url: string, dir?: string): string {
  const bare = /^kv:(?:\/\/)?([?#].*)?$/i.exec(url);
  if (!bare) return url;
  const fromEnv = kvPathFromEnv();
  const path = fromEnv !== undefined ? resolve(fromEnv) : resolve(dir ?? ".", DEFAULT_KV_PATH);
  return `kv://${encodeURI(path)}${bare[1] ?? ""}`;
}

function kvPathFromEnv(): string | undefined {
  try {
    const variable = "CELERIAC_KV_PATH";
    if (Deno.permissions.querySync({ name: "env", variable }).state !== "granted") return undefined;
    const value = Deno.env.get(variable);
    return value === "" ? undefined : value;
  } catch {
    return undefined;
  }
}
