/**
 * `redis://` and `rediss://` result backend, in the layout of Celery's Redis backend
 * (CELERY_PROTOCOL.md §2.5): `celery-task-meta-<id>` strings published on the channel of the
 * same name, `celery-taskset-meta-<gid>` groups, and the `.j/.t/.s` chord counters.
 *
 * Every waiter of one backend shares ONE subscriber connection. After each subscription, and
 * after every reconnect, the current values are read back (`MGET`), so a result stored while
 * the subscriber was away is never missed.
 *
 * @module
 */

import { PushChannel } from "../transport/channel.ts";
import {
  closeRedisClient,
  connectRedisClient,
  createRedisClient,
  parseRedisUrl,
  type RedisClient,
  RedisDeadlineError,
  type RedisUrl,
  retryTransient,
  scheduleFlush,
  sentinelOptions,
  SharedRedisClient,
  withDeadline,
} from "../_redis.ts";

// A command that has had no reply for this long means a wedged connection (ms).
const COMMAND_DEADLINE = 15_000;
import { redact } from "../_url.ts";
import { groupBySlot } from "../_redis_cluster.ts";
import { parseJson, stringifyJson } from "../protocol/json.ts";
import { toResultMeta } from "../protocol/result_meta.ts";
import type { Backend, BackendOptions, ChordPart, ResultMeta, WaitOptions } from "./backend.ts";
import { readyEach, untilReady } from "./_wait.ts";
import { CHORD_PART_RETURN } from "./redis_scripts/chord_part_return.ts";
import { STORE_RESULT } from "./redis_scripts/store_result.ts";
import { STORE_RESULTS } from "./redis_scripts/store_results.ts";

/** Celery's key prefix of task results. */
export const TASK_KEY_PREFIX = "celery-task-meta-";
/** Celery's key prefix of group results. */
export const GROUP_KEY_PREFIX = "celery-taskset-meta-";

/** Options of {@linkcode RedisBackend}. */
export interface RedisBackendOptions extends BackendOptions {
  /** Receives connection errors; the clients reconnect by themselves. */
  onError?: (error: Error) => void;
  /** Name of every connection (`CLIENT SETNAME`), to find them in `CLIENT LIST`. */
  connectionName?: string;
  /**
   * For `sentinel://`: the monitored master's name (kombu's `master_name`).
   * @default {the only master the sentinels monitor}
   */
  masterName?: string;
  /** For `sentinel://`: the sentinels' own password (kombu's `sentinel_kwargs.password`). */
  sentinelPassword?: string;
}

type Listener = (raw: string, key: string) => void;

interface StoreBatch {
  keys: string[];
  values: string[];
  done: PromiseWithResolvers<void>;
}

// Most results in one store script call.
const STORE_BATCH = 500;
// Longest a result store keeps retrying before it fails (ms): past the command deadline (a
// wedged client is replaced at 15 s) plus a reconnect.
const STORE_WINDOW = 60_000;

interface Subscription {
  listeners: Set<Listener>;
  ready: Promise<void>;
}

interface KeyBatch {
  keys: string[];
  done: PromiseWithResolvers<void>;
}

/**
 * A Redis result backend, wire compatible with Celery's `RedisBackend`.
 *
 * @example
 * ```ts ignore
 * import { RedisBackend } from "./redis.ts";
 * await using backend = new RedisBackend("redis://127.0.0.1:6379/1");
 * console.assert(await backend.get("no-such-task") === null);
 * ```
 */
export class RedisBackend implements Backend {
  readonly url: string;
  #url: RedisUrl;
  #expires: number;
  #onError: (e: Error) => void;
  #name: string | undefined;
  #client: SharedRedisClient;
  #subscriber: Promise<RedisClient> | undefined;
  #subs = new Map<string, Subscription>();
  #stores: StoreBatch | undefined;
  // Store batches sent and not answered yet.
  #storesSent = 0;
  #pubsub: { subscribe?: KeyBatch | undefined; unsubscribe?: KeyBatch | undefined } = {};
  #closed = new AbortController();
  #closing: Promise<void> | undefined;

  /**
   * Creates the backend; it connects on first use.
   *
   * @param url `redis://[[user]:password@]host[:port][/db]` or `rediss://...`.
   * @param options Options.
   * @throws {TypeError} For a malformed URL.
   * @throws {RangeError} For a negative `resultExpires`.
   */
  constructor(url: string, options: RedisBackendOptions = {}) {
    this.url = redact(url);
    this.#url = parseRedisUrl(url, {
      ...(options.masterName !== undefined ? { masterName: options.masterName } : {}),
      ...(options.sentinelPassword !== undefined
        ? { sentinelPassword: options.sentinelPassword }
        : {}),
    });
    this.#expires = options.resultExpires ?? 86_400_000;
    if (!(this.#expires >= 0)) {
      throw new RangeError(
        `Cannot set resultExpires: it must be 0 or more milliseconds, got ${this.#expires}`,
      );
    }
    this.#onError = options.onError ?? (() => {});
    this.#name = options.connectionName;
    this.#client = new SharedRedisClient(() =>
      createRedisClient(this.#url, this.#onError, this.#name)
    );
  }

  // GET of many keys: one MGET, or on a cluster one per slot (result keys spread over them).
  async #mGet(client: RedisClient, keys: string[]): Promise<(string | null)[]> {
    if (!this.#url.cluster) return await client.mGet(keys);
    const values = new Map<string, string | null>();
    await Promise.all(
      groupBySlot(keys, (k) => k).map(async (group) => {
        const got = await client.mGet(group);
        group.forEach((k, i) => values.set(k, got[i] ?? null));
      }),
    );
    return keys.map((k) => values.get(k) ?? null);
  }

  // The keys of one chord: Celery's names, with the group id as hash tag on a cluster so that
  // the counter script touches one slot.
  #chordBase(groupId: string): string {
    return this.#url.cluster ? `${GROUP_KEY_PREFIX}{${groupId}}` : GROUP_KEY_PREFIX + groupId;
  }

  #ttl(): number {
    return this.#expires > 0 ? Math.max(1, Math.ceil(this.#expires / 1000)) : 0;
  }

  /**
   * Makes one connection attempt now, if there is no client yet.
   *
   * @param options `signal` gives up the attempt.
   * @returns When connected.
   */
  async connect(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#closed.signal.aborted) throw new Error(`Backend ${this.url} is closed`);
    await this.#client.get(options.signal);
  }

  #connect(): Promise<RedisClient> {
    if (this.#closed.signal.aborted) {
      return Promise.reject(new Error(`Backend ${this.url} is closed`));
    }
    return this.#client.get();
  }

  #connectSubscriber(): Promise<RedisClient> {
    if (this.#subscriber) return this.#subscriber;
    this.#subscriber = (async () => {
      const client = createRedisClient(this.#url, this.#onError, this.#name);
      let first = true;
      // After a reconnect node-redis has re-subscribed before "ready": read what was missed.
      client.on("ready", () => {
        if (first) first = false;
        else void this.#recheck([...this.#subs.keys()]);
      });
      await connectRedisClient(client);
      return client;
    })();
    // A failed connect is not remembered: the next waiter tries again.
    this.#subscriber.catch(() => this.#subscriber = undefined);
    return this.#subscriber;
  }

  async #recheck(keys: string[]): Promise<void> {
    if (keys.length === 0 || this.#closed.signal.aborted) return;
    try {
      const client = await this.#connect();
      const values = await this.#mGet(client, keys);
      values.forEach((raw, i) => {
        const sub = this.#subs.get(keys[i]!);
        if (raw !== null && sub) { for (const l of sub.listeners) l(raw, keys[i]!); }
      });
    } catch (error) {
      this.#onError(error as Error);
    }
  }

  async #listen(key: string, listener: Listener): Promise<void> {
    let sub = this.#subs.get(key);
    if (!sub) {
      const entry: Subscription = {
        listeners: new Set<Listener>(),
        ready: this.#batch("subscribe", key),
      };
      // A failed SUBSCRIBE is forgotten, so the next waiter tries again.
      entry.ready.catch(() => {
        if (this.#subs.get(key) === entry) this.#subs.delete(key);
      });
      sub = entry;
      this.#subs.set(key, sub);
    }
    sub.listeners.add(listener);
    await sub.ready;
  }

  async #unlisten(key: string, listener: Listener): Promise<void> {
    const sub = this.#subs.get(key);
    if (!sub) return;
    sub.listeners.delete(listener);
    if (sub.listeners.size > 0) return;
    this.#subs.delete(key);
    await this.#batch("unsubscribe", key).catch(() => {});
  }

  // (Un)subscriptions asked for in the same microtask turn (a GroupResult of 10 000 tasks) go
  // out as one SUBSCRIBE/UNSUBSCRIBE with every channel, all sharing one listener. An
  // unsubscription whose key was listened to again meanwhile is dropped.
  #batch(kind: "subscribe" | "unsubscribe", key: string): Promise<void> {
    let batch = this.#pubsub[kind];
    if (!batch) {
      const b = batch = this.#pubsub[kind] = { keys: [], done: Promise.withResolvers<void>() };
      queueMicrotask(() => {
        this.#pubsub[kind] = undefined;
        const keys = kind === "subscribe" ? b.keys : b.keys.filter((k) => !this.#subs.has(k));
        if (keys.length === 0) return b.done.resolve();
        const sent = kind === "subscribe"
          ? this.#connectSubscriber().then((c) => c.subscribe(keys, this.#onMessage))
          : (this.#subscriber ?? Promise.resolve(undefined)).then((c) =>
            c?.isOpen ? c.unsubscribe(keys, this.#onMessage) : undefined
          );
        sent.then(() => b.done.resolve(), b.done.reject);
      });
    }
    batch.keys.push(key);
    return batch.done.promise;
  }

  #onMessage = (raw: string, channel: string): void => {
    const sub = this.#subs.get(channel);
    if (sub) { for (const l of sub.listeners) l(raw, channel); }
  };

  async store(taskId: string, meta: ResultMeta): Promise<void> {
    if (this.#closed.signal.aborted) throw new Error(`Backend ${this.url} is closed`);
    const key = TASK_KEY_PREFIX + taskId;
    const value = stringifyJson(meta, "");
    // Stores batched by scheduleFlush (a worker finishing a batch of tasks, results of several
    // Web Workers) share one script call; a lone store runs the single-task script.
    let batch = this.#stores;
    if (!batch) {
      batch = this.#stores = { keys: [], values: [], done: Promise.withResolvers<void>() };
      scheduleFlush(this.#storesSent, () => this.#flushStores());
    }
    batch.keys.push(key);
    batch.values.push(value);
    const promise = batch.done.promise;
    if (batch.keys.length >= STORE_BATCH) this.#flushStores();
    await promise;
  }

  // Repeated after a lost connection, a wedged client or while a restarted server loads:
  // storing the same meta twice is harmless, and a worker that acked early has no other copy
  // of the result. Every attempt takes the CURRENT shared client, so when one batch replaces a
  // wedged client, every other pending batch moves to the replacement too. After
  // STORE_WINDOW the batch's stores reject: the caller must not ack (late ack) or must count
  // the loss loudly.
  #flushStores(): void {
    const batch = this.#stores;
    if (!batch) return;
    this.#stores = undefined;
    this.#storesSent++;
    const ttl = this.#ttl();
    const ran = retryTransient(
      async () => {
        const current = await this.#connect();
        try {
          return await withDeadline(
            batch.keys.length === 1
              ? STORE_RESULT.run(current, batch.keys, [batch.values[0]!, ttl])
              : this.#url.cluster
              // One script per slot: result keys are spread over the cluster.
              ? Promise.all(
                groupBySlot(batch.keys.map((_, i) => i), (i) => batch.keys[i]!).map((group) =>
                  STORE_RESULTS.run(
                    current,
                    group.map((i) => batch.keys[i]!),
                    [ttl, ...group.map((i) => batch.values[i]!)],
                  )
                ),
              )
              : STORE_RESULTS.run(current, batch.keys, [ttl, ...batch.values]),
            COMMAND_DEADLINE,
            "store results",
          );
        } catch (error) {
          if (error instanceof RedisDeadlineError) {
            this.#onError(error);
            this.#client.replace(current);
          }
          throw error;
        }
      },
      this.#closed.signal,
      STORE_WINDOW,
    );
    ran.finally(() => this.#storesSent--).catch(() => {});
    ran.then(() => batch.done.resolve(), (cause) =>
      batch.done.reject(
        new Error(
          `Cannot store ${batch.keys.length} result(s) in Redis within ${STORE_WINDOW} ms: ${
            (cause as Error)?.message ?? cause
          }`,
          { cause },
        ),
      ));
  }

  async get(taskId: string): Promise<ResultMeta | null> {
    const client = await this.#connect();
    const raw = await client.get(TASK_KEY_PREFIX + taskId);
    return raw === null ? null : decodeMeta(raw, taskId);
  }

  async *waitFor(
    taskIds: readonly string[],
    options: WaitOptions = {},
  ): AsyncGenerator<ResultMeta> {
    yield* readyEach(taskIds, (ids) => this.#changes([...ids], options));
  }

  async *watch(taskId: string, options: WaitOptions = {}): AsyncGenerator<ResultMeta> {
    yield* untilReady(this.#changes([taskId], options));
  }

  // Current metas of `ids`, then every meta stored for them, until the signal aborts.
  async *#changes(ids: string[], options: WaitOptions): AsyncGenerator<ResultMeta> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    if (signal.aborted) throw signal.reason;
    const keys = ids.map((id) => TASK_KEY_PREFIX + id);
    const metas = new PushChannel<ResultMeta>();
    const listener: Listener = (raw, key) => {
      try {
        metas.push(decodeMeta(raw, key.slice(TASK_KEY_PREFIX.length)));
      } catch (error) {
        this.#onError(error as Error);
      }
    };
    try {
      await Promise.all(keys.map((k) => this.#listen(k, listener)));
      const client = await this.#connect();
      const values = await this.#mGet(client, keys);
      values.forEach((raw, i) => raw !== null && listener(raw, keys[i]!));
      yield* metas.stream(signal, { onAbort: "throw" });
    } finally {
      // Not awaited: the waiter has its result now, and the UNSUBSCRIBE is one more round trip
      // (the listener is gone at once; close() lets the reply arrive before it disconnects).
      for (const k of keys) void this.#unlisten(k, listener);
    }
  }

  async forget(taskId: string): Promise<void> {
    const client = await this.#connect();
    await client.del(TASK_KEY_PREFIX + taskId);
  }

  async saveGroup(groupId: string, taskIds: readonly string[]): Promise<void> {
    const client = await this.#connect();
    // GroupResult.as_tuple(): ((id, parent), [((id, parent), None), ...]).
    const value = stringifyJson({
      result: [[groupId, null], taskIds.map((id) => [[id, null], null])],
    });
    const key = GROUP_KEY_PREFIX + groupId;
    const ttl = this.#ttl();
    await (ttl > 0 ? client.setEx(key, ttl, value) : client.set(key, value));
  }

  async restoreGroup(groupId: string): Promise<string[] | null> {
    const client = await this.#connect();
    const raw = await client.get(GROUP_KEY_PREFIX + groupId);
    if (raw === null) return null;
    const meta = parseJson(raw) as { result?: unknown };
    const members = Array.isArray(meta?.result) ? meta.result[1] : undefined;
    if (!Array.isArray(members)) {
      throw new TypeError(`Group ${groupId} is not stored in Celery's format`);
    }
    return members.map((m) => {
      const id = Array.isArray(m) && Array.isArray(m[0]) ? m[0][0] : undefined;
      if (typeof id !== "string") throw new TypeError(`Group ${groupId} has a malformed member`);
      return id;
    });
  }

  async deleteGroup(groupId: string): Promise<void> {
    const client = await this.#connect();
    await client.del(GROUP_KEY_PREFIX + groupId);
  }

  async setChordSize(groupId: string, size: number): Promise<void> {
    if (!Number.isInteger(size) || size < 0) {
      throw new RangeError(
        `Cannot set the chord size: it must be a non-negative integer, got ${size}`,
      );
    }
    const client = await this.#connect();
    const key = `${this.#chordBase(groupId)}.s`;
    const ttl = this.#ttl();
    await (ttl > 0 ? client.setEx(key, ttl, String(size)) : client.set(key, String(size)));
  }

  async chordPartReturn(
    groupId: string,
    groupIndex: number,
    part: ChordPart,
  ): Promise<ChordPart[] | null> {
    const client = await this.#connect();
    const base = this.#chordBase(groupId);
    const member = `[1,${JSON.stringify(part.taskId)},${JSON.stringify(part.status)},${
      stringifyJson(part.result, "result")
    }]`;
    const reply = await CHORD_PART_RETURN.run(client, [`${base}.j`, `${base}.t`, `${base}.s`], [
      member,
      groupIndex,
      this.#ttl(),
    ]);
    if (!Array.isArray(reply)) return null;
    return reply.map((raw) => {
      const [, taskId, status, result] = parseJson(String(raw)) as [
        number,
        string,
        string,
        unknown,
      ];
      return { taskId, status, result };
    });
  }

  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#closed.abort();
    const clients = await Promise.all(
      [this.#subscriber, this.#client.peek()].map((p) => p?.catch(() => undefined)),
    );
    for (const c of clients) if (c) await closeRedisClient(c);
    this.#subs.clear();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

// Celery's meta shape (children null becomes []); a meta without task_id gets the key's id.
function decodeMeta(raw: string, taskId: string): ResultMeta {
  const meta = parseJson(raw);
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    throw new TypeError(`Result of task ${taskId} is not a meta object`);
  }
  const m = meta as Record<string, unknown>;
  if (typeof m.task_id !== "string" || m.task_id === "") m.task_id = taskId;
  return toResultMeta(m);
}

/**
 * Makes a {@linkcode RedisBackend} from `createBackend()`'s options.
 *
 * @param url The backend URL.
 * @param options `resultExpires`.
 * @returns The backend.
 * @throws {TypeError} For a malformed URL.
 * @example
 * ```ts
 * import { redisBackendFromUrl } from "./redis.ts";
 * const backend = redisBackendFromUrl("redis://127.0.0.1/1", { resultExpires: 60_000 });
 * await backend.close();
 * ```
 */
export function redisBackendFromUrl(
  url: string,
  options: BackendOptions & {
    onError?: (error: Error) => void;
    transportOptions?: Record<string, unknown>;
  } = {},
): RedisBackend {
  const own: RedisBackendOptions = { ...sentinelOptions(options.transportOptions) };
  if (options.resultExpires !== undefined) own.resultExpires = options.resultExpires;
  if (options.onError) own.onError = options.onError;
  return new RedisBackend(url, own);
}
