/**
 * `kv://[path]`: the embedded default result backend, on Deno KV. A broker and a backend made
 * from the same path in one process share one `Deno.Kv` handle.
 *
 * Key layout (`P` is the `keyPrefix`, `celeriac` by default):
 *
 * | Key | Value | Meaning |
 * | --- | --- | --- |
 * | `[P, "r", "meta", taskId]` | `{ meta, expiresAt }` | a task's meta; PENDING is its absence |
 * | `[P, "r", "group", groupId]` | `{ ids, expiresAt }` | a saved group |
 * | `[P, "r", "chord", groupId, "size"]` | number | the chord header size |
 * | `[P, "r", "chord", groupId, "part", index]` | `ChordPart` | a finished header member |
 * | `[P, "r", "chord", groupId, "count"]` | `Deno.KvU64` | distinct parts recorded |
 * | `[P, "r", "chord", groupId, "done"]` | `true` | the chord was completed (once) |
 *
 * Every key is written with `expireIn` = `resultExpires`; Deno deletes expired keys lazily,
 * so reads also compare `expiresAt`. Waiting uses `kv.watch` (10 keys per call), which sees
 * writes of the same process (and of a remote KV Connect store) at once; since Deno's local
 * SQLite store does not report other processes' writes to `watch`, waiters also re-read
 * their keys every `pollInterval` (100 ms).
 *
 * @module
 */

import { PushChannel } from "../transport/channel.ts";
import { commit, KvHandle, retry } from "../_kv.ts";
import { toJsonValue } from "../protocol/json.ts";
import type { Backend, BackendOptions, ChordPart, ResultMeta, WaitOptions } from "./backend.ts";
import { readyEach, untilReady } from "./_wait.ts";

/** Options of {@linkcode KvBackend}. */
export interface KvBackendOptions extends BackendOptions {
  /**
   * How often waiters re-read their keys, for writes made by other processes, in ms.
   * @default {100}
   */
  pollInterval?: number;
  /**
   * First part of every key, so several apps can share one store.
   * @default {"celeriac"}
   */
  keyPrefix?: string;
  /** A KV Connect `https://` URL (or a path), used instead of the URL's path. */
  kvUrl?: string;
}

interface Stored<T> {
  value: T;
  expiresAt: number | null;
}

/**
 * A result backend on Deno KV.
 *
 * @example
 * ```ts
 * import { KvBackend } from "./kv.ts";
 * await using backend = new KvBackend("kv://:memory:");
 * await backend.store("1", {
 *   status: "SUCCESS", result: 4, traceback: null, children: [], date_done: null, task_id: "1",
 * });
 * console.assert((await backend.get("1"))?.result === 4);
 * ```
 */
export class KvBackend implements Backend {
  readonly url: string;
  readonly #handle: KvHandle;
  readonly #prefix: string;
  readonly #expires: number;
  readonly #pollInterval: number;
  readonly #closed = new AbortController();
  #closing: Promise<void> | undefined;

  /**
   * Creates the backend; the store is opened on first use.
   *
   * @param url `kv://`, `kv:///abs/path`, `kv://./rel/path`, `kv://:memory:` or
   * `kv+https://...`.
   * @param options Options.
   * @throws {TypeError} For a URL that is not a KV URL.
   * @throws {RangeError} For a bad option.
   */
  constructor(url = "kv://", options: KvBackendOptions = {}) {
    this.#handle = new KvHandle(url, options.kvUrl);
    this.url = url;
    this.#prefix = options.keyPrefix ?? "celeriac";
    this.#expires = options.resultExpires ?? 86_400_000;
    if (!Number.isFinite(this.#expires) || this.#expires < 0) {
      throw new RangeError(
        `Cannot set resultExpires: it must be a number >= 0, got ${this.#expires}`,
      );
    }
    this.#pollInterval = options.pollInterval ?? 100;
    if (!(this.#pollInterval > 0)) {
      throw new RangeError(
        `Cannot set pollInterval: it must be a positive number, got ${this.#pollInterval}`,
      );
    }
  }

  #key(...rest: Deno.KvKeyPart[]): Deno.KvKey {
    return [this.#prefix, "r", ...rest];
  }

  #open(): Promise<Deno.Kv> {
    if (this.#closed.signal.aborted) {
      return Promise.reject(new Error(`Cannot use backend ${this.url}: it is closed`));
    }
    return this.#handle.acquire();
  }

  #wrap<T>(value: T): Stored<T> {
    return { value, expiresAt: this.#expires > 0 ? Date.now() + this.#expires : null };
  }

  get #setOptions(): { expireIn?: number } {
    return this.#expires > 0 ? { expireIn: this.#expires } : {};
  }

  /**
   * Stores a meta; a SUCCESS already stored is kept.
   *
   * @param taskId The task id.
   * @param meta The meta.
   * @returns Once stored.
   */
  async store(taskId: string, meta: ResultMeta): Promise<void> {
    checkId(taskId);
    // The wire's JSON rule, so a result reads the same as from Redis (EncodeError likewise).
    const stored = toJsonValue(meta, "");
    const kv = await this.#open();
    const key = this.#key("meta", taskId);
    while (true) {
      const current = await retry(() => kv.get<Stored<ResultMeta>>(key));
      if (live(current.value)?.status === "SUCCESS") return;
      const ok = await commit(() =>
        kv.atomic().check(current).set(key, this.#wrap(stored), this.#setOptions)
      );
      if (ok) return;
    }
  }

  /**
   * Reads a meta.
   *
   * @param taskId The task id.
   * @returns The meta, or `null` (PENDING).
   */
  async get(taskId: string): Promise<ResultMeta | null> {
    checkId(taskId);
    const kv = await this.#open();
    const entry = await retry(() => kv.get<Stored<ResultMeta>>(this.#key("meta", taskId)));
    return live(entry.value) ?? null;
  }

  /**
   * Yields each task's meta once ready, in completion order; stored ones first.
   *
   * @param taskIds The task ids.
   * @param options `signal`: stops waiting by throwing its reason.
   * @returns The ready metas.
   */
  async *waitFor(
    taskIds: readonly string[],
    options: WaitOptions = {},
  ): AsyncGenerator<ResultMeta> {
    yield* readyEach(taskIds, (ids) => this.#changes([...ids], options));
  }

  /**
   * Yields every meta stored for a task until it is ready. States stored faster than a
   * reader reads may be skipped (the last one is always seen).
   *
   * @param taskId The task id.
   * @param options `signal`: stops waiting by throwing its reason.
   * @returns The metas.
   */
  async *watch(taskId: string, options: WaitOptions = {}): AsyncGenerator<ResultMeta> {
    yield* untilReady(this.#changes([taskId], options));
  }

  // Current metas of `ids`, then each new version, until the signal aborts.
  async *#changes(ids: string[], options: WaitOptions): AsyncGenerator<ResultMeta> {
    for (const id of ids) checkId(id);
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    if (signal.aborted) throw signal.reason;
    const kv = await this.#open();
    const keys = ids.map((id) => this.#key("meta", id));
    const seen = new Map<string, string>();
    const metas = new PushChannel<ResultMeta>();
    const readers: ReadableStreamDefaultReader<Deno.KvEntryMaybe<Stored<ResultMeta>>[]>[] = [];
    const loops: Promise<void>[] = [];
    const take = (entries: Deno.KvEntryMaybe<Stored<ResultMeta>>[]) => {
      for (const e of entries) {
        const meta = live(e.value);
        if (!meta || e.versionstamp === null) continue;
        const id = e.key[e.key.length - 1] as string;
        if (seen.get(id) === e.versionstamp) continue;
        // Versionstamps only grow, so an older read arriving late is dropped.
        const last = seen.get(id);
        if (last !== undefined && last > e.versionstamp) continue;
        seen.set(id, e.versionstamp);
        metas.push(meta);
      }
    };
    // kv.watch takes at most 10 keys per call.
    for (let i = 0; i < keys.length; i += 10) {
      const reader = kv.watch<Stored<ResultMeta>[]>(keys.slice(i, i + 10)).getReader();
      readers.push(reader);
      loops.push((async () => {
        try {
          while (true) {
            const r = await reader.read();
            if (r.done) return;
            take(r.value);
          }
        } catch {
          // The store closed: polling takes over until the generator ends.
        }
      })());
    }
    try {
      let nextPoll = 0;
      while (true) {
        if (Date.now() >= nextPoll) {
          for (let i = 0; i < keys.length; i += 10) {
            const batch = keys.slice(i, i + 10);
            take(await retry(() => kv.getMany<Stored<ResultMeta>[]>(batch), signal));
          }
          nextPoll = Date.now() + this.#pollInterval;
        }
        const meta = metas.shift();
        if (meta) {
          yield meta;
          continue;
        }
        if (signal.aborted) throw signal.reason;
        await metas.wait(signal, Math.max(0, nextPoll - Date.now()));
        if (signal.aborted) throw signal.reason;
      }
    } finally {
      await Promise.all(readers.map((r) => r.cancel().catch(() => {})));
      await Promise.all(loops);
    }
  }

  /**
   * Deletes a meta.
   *
   * @param taskId The task id.
   * @returns Once deleted.
   */
  async forget(taskId: string): Promise<void> {
    checkId(taskId);
    const kv = await this.#open();
    await retry(() => kv.delete(this.#key("meta", taskId)));
  }

  /**
   * Saves a group's member ids.
   *
   * @param groupId The group id.
   * @param taskIds The member ids.
   * @returns Once saved.
   */
  async saveGroup(groupId: string, taskIds: readonly string[]): Promise<void> {
    checkId(groupId);
    const kv = await this.#open();
    const value = this.#wrap([...taskIds]);
    await retry(() => kv.set(this.#key("group", groupId), value, this.#setOptions));
  }

  /**
   * Reads a saved group.
   *
   * @param groupId The group id.
   * @returns The member ids, or `null`.
   */
  async restoreGroup(groupId: string): Promise<string[] | null> {
    checkId(groupId);
    const kv = await this.#open();
    const entry = await retry(() => kv.get<Stored<string[]>>(this.#key("group", groupId)));
    return live(entry.value) ?? null;
  }

  /**
   * Deletes a saved group.
   *
   * @param groupId The group id.
   * @returns Once deleted.
   */
  async deleteGroup(groupId: string): Promise<void> {
    checkId(groupId);
    const kv = await this.#open();
    await retry(() => kv.delete(this.#key("group", groupId)));
  }

  /**
   * Records a chord's header size.
   *
   * @param groupId The chord's group id.
   * @param size The header size.
   * @returns Once stored.
   * @throws {RangeError} For a size that is not a non-negative integer.
   */
  async setChordSize(groupId: string, size: number): Promise<void> {
    checkId(groupId);
    if (!Number.isInteger(size) || size < 0) {
      throw new RangeError(`Cannot set the chord size: it must be an integer >= 0, got ${size}`);
    }
    const kv = await this.#open();
    await retry(() => kv.set(this.#key("chord", groupId, "size"), size, this.#setOptions));
  }

  /**
   * Records a finished header member. Parts are counted once per `groupIndex` (a redelivered
   * member overwrites its part); the caller whose part makes the count reach the size, and
   * who wins the atomic `done` check, gets every part in order.
   *
   * @param groupId The chord's group id.
   * @param groupIndex The member's position.
   * @param part The member's outcome.
   * @returns The ordered parts for exactly one caller, else `null`.
   */
  async chordPartReturn(
    groupId: string,
    groupIndex: number,
    part: ChordPart,
  ): Promise<ChordPart[] | null> {
    checkId(groupId);
    if (!Number.isInteger(groupIndex) || groupIndex < 0) {
      throw new RangeError(`Cannot record a chord part: bad groupIndex ${groupIndex}`);
    }
    const kv = await this.#open();
    const base = (...rest: Deno.KvKeyPart[]) => this.#key("chord", groupId, ...rest);
    const partKey = base("part", groupIndex);
    const opts = this.#setOptions;
    const stored = { ...part, result: toJsonValue(part.result, "result") };
    // Count the part only the first time its index is recorded.
    while (true) {
      const current = await retry(() => kv.get(partKey));
      const ok = await commit(() => {
        const op = kv.atomic().check(current).set(partKey, stored, opts);
        return current.versionstamp === null ? op.sum(base("count"), 1n) : op;
      });
      if (ok) break;
    }
    const [size, count, done] = await retry(() =>
      kv.getMany<[number, Deno.KvU64, boolean]>([base("size"), base("count"), base("done")])
    );
    if (typeof size.value !== "number" || done.value !== null) return null;
    if (count.value === null || count.value.value < BigInt(size.value)) return null;
    // Exactly one caller wins this check.
    const won = await commit(() => kv.atomic().check(done).set(base("done"), true, opts));
    if (!won) return null;
    const parts = await retry(() => Array.fromAsync(kv.list<ChordPart>({ prefix: base("part") })));
    await commit(() => {
      const op = kv.atomic().delete(base("size")).delete(base("count"));
      for (const p of parts.slice(0, 900)) op.delete(p.key);
      return op;
    });
    for (let i = 900; i < parts.length; i += 900) {
      const chunk = parts.slice(i, i + 900);
      await commit(() => {
        const op = kv.atomic();
        for (const p of chunk) op.delete(p.key);
        return op;
      });
    }
    return parts.map((p) => p.value);
  }

  /**
   * Closes the store (when no other broker or backend uses it); waiters end.
   *
   * @returns Once closed.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed.abort();
      await this.#handle.release();
    })();
    return this.#closing;
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function live<T>(stored: Stored<T> | null): T | undefined {
  if (!stored) return undefined;
  if (stored.expiresAt !== null && stored.expiresAt <= Date.now()) return undefined;
  return stored.value;
}

function checkId(id: string): void {
  if (typeof id !== "string" || id === "") {
    throw new TypeError(`Cannot use id ${JSON.stringify(id)}: it must be a non-empty string`);
  }
}
