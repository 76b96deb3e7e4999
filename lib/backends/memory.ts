/**
 * `memory://[name]`: an in-process result backend for tests. Backends made from the same URL
 * in one process share their results.
 *
 * @module
 */

import { toJsonValue } from "../protocol/json.ts";
import { PushChannel } from "../transport/channel.ts";
import type { Backend, BackendOptions, ChordPart, ResultMeta, WaitOptions } from "./backend.ts";
import { readyEach, untilReady } from "./_wait.ts";

class Store {
  results = new Map<string, { meta: ResultMeta; expiresAt: number }>();
  groups = new Map<string, string[]>();
  chords = new Map<string, { size: number; parts: Map<number, ChordPart> }>();
  listeners = new Set<(meta: ResultMeta) => void>();
}

const stores = new Map<string, Store>();

/**
 * An in-memory result backend.
 *
 * @example
 * ```ts
 * import { MemoryBackend } from "./memory.ts";
 * await using backend = new MemoryBackend("memory://doc");
 * await backend.store("1", {
 *   status: "SUCCESS", result: 4, traceback: null, children: [], date_done: null, task_id: "1",
 * });
 * console.assert((await backend.get("1"))?.result === 4);
 * ```
 */
export class MemoryBackend implements Backend {
  readonly url: string;
  #store: Store;
  #expires: number;
  #closed = new AbortController();

  /**
   * Creates the backend.
   *
   * @param url `memory://` or `memory://name`; the same name shares results.
   * @param options Options.
   */
  constructor(url = "memory://", options: BackendOptions = {}) {
    this.url = url;
    const key = url.replace(/^memory:\/\//, "");
    let store = stores.get(key);
    if (!store) stores.set(key, store = new Store());
    this.#store = store;
    this.#expires = options.resultExpires ?? 86_400_000;
  }

  store(taskId: string, meta: ResultMeta): Promise<void> {
    const current = this.#lookup(taskId);
    if (current?.status === "SUCCESS") return Promise.resolve();
    const expiresAt = this.#expires > 0 ? Date.now() + this.#expires : Infinity;
    let stored: ResultMeta;
    try {
      // The wire's JSON rule, so a result reads the same as from Redis (EncodeError likewise).
      stored = structuredClone(toJsonValue(meta, ""));
    } catch (error) {
      return Promise.reject(error);
    }
    this.#store.results.set(taskId, { meta: stored, expiresAt });
    for (const l of this.#store.listeners) l(stored);
    return Promise.resolve();
  }

  #lookup(taskId: string): ResultMeta | null {
    const entry = this.#store.results.get(taskId);
    if (!entry) return null;
    if (entry.expiresAt <= Date.now()) {
      this.#store.results.delete(taskId);
      return null;
    }
    return entry.meta;
  }

  get(taskId: string): Promise<ResultMeta | null> {
    const meta = this.#lookup(taskId);
    return Promise.resolve(meta ? structuredClone(meta) : null);
  }

  async *waitFor(
    taskIds: readonly string[],
    options: WaitOptions = {},
  ): AsyncGenerator<ResultMeta> {
    yield* readyEach(taskIds, (ids) => this.#changes(ids, options));
  }

  async *watch(taskId: string, options: WaitOptions = {}): AsyncGenerator<ResultMeta> {
    yield* untilReady(this.#changes(new Set([taskId]), options));
  }

  // Current metas of `ids`, then every meta stored for them, until the signal aborts.
  async *#changes(ids: Set<string>, options: WaitOptions): AsyncGenerator<ResultMeta> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    const metas = new PushChannel<ResultMeta>();
    const listener = (meta: ResultMeta) => {
      if (ids.has(meta.task_id)) metas.push(structuredClone(meta));
    };
    this.#store.listeners.add(listener);
    try {
      for (const id of ids) {
        const meta = this.#lookup(id);
        if (meta) metas.push(structuredClone(meta));
      }
      yield* metas.stream(signal, { onAbort: "throw" });
    } finally {
      this.#store.listeners.delete(listener);
    }
  }

  forget(taskId: string): Promise<void> {
    this.#store.results.delete(taskId);
    return Promise.resolve();
  }

  saveGroup(groupId: string, taskIds: readonly string[]): Promise<void> {
    this.#store.groups.set(groupId, [...taskIds]);
    return Promise.resolve();
  }

  restoreGroup(groupId: string): Promise<string[] | null> {
    const ids = this.#store.groups.get(groupId);
    return Promise.resolve(ids ? [...ids] : null);
  }

  deleteGroup(groupId: string): Promise<void> {
    this.#store.groups.delete(groupId);
    return Promise.resolve();
  }

  setChordSize(groupId: string, size: number): Promise<void> {
    const chord = this.#store.chords.get(groupId);
    if (chord) chord.size = size;
    else this.#store.chords.set(groupId, { size, parts: new Map() });
    return Promise.resolve();
  }

  chordPartReturn(
    groupId: string,
    groupIndex: number,
    part: ChordPart,
  ): Promise<ChordPart[] | null> {
    let stored: ChordPart;
    try {
      stored = structuredClone({ ...part, result: toJsonValue(part.result, "result") });
    } catch (error) {
      return Promise.reject(error);
    }
    let chord = this.#store.chords.get(groupId);
    if (!chord) this.#store.chords.set(groupId, chord = { size: Infinity, parts: new Map() });
    chord.parts.set(groupIndex, stored);
    if (chord.parts.size < chord.size) return Promise.resolve(null);
    this.#store.chords.delete(groupId);
    const parts = [...chord.parts.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p);
    return Promise.resolve(parts);
  }

  close(): Promise<void> {
    this.#closed.abort();
    return Promise.resolve();
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
