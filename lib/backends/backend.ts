/**
 * The `Backend` seam: every result store (memory, Deno KV, Redis, rpc) implements it.
 *
 * @module
 */

import type { Broker } from "../brokers/broker.ts";
import type { State } from "../protocol/states.ts";

/**
 * A task's stored result, in Celery's meta shape (`celery/backends/base.py:_get_result_meta`).
 * PENDING is never stored: it is the absence of a meta.
 */
export interface ResultMeta {
  /** The state. */
  status: State;
  /** The return value, the exception shape, or a custom state's meta. */
  result: unknown;
  /** Traceback text for failures. */
  traceback: string | null;
  /** Child result tuples `[[id, parent], null]`. */
  children: unknown[];
  /** Naive UTC ISO time for ready states, otherwise `null`. */
  date_done: string | null;
  /** The task id. */
  task_id: string;
  /** The group id, when part of a group. */
  group_id?: string | null;
  /** The parent task id. */
  parent_id?: string | null;
  /** Extra fields (`result_extended`: name, args, kwargs, worker, retries, queue). */
  [key: string]: unknown;
}

/** Options of {@linkcode Backend.waitFor}. */
export interface WaitOptions {
  /** Stops waiting: the iterator throws the signal's reason. */
  signal?: AbortSignal;
}

/** One finished (or failed) member of a chord header, as `chordPartReturn` records it. */
export interface ChordPart {
  /** The header task's id. */
  taskId: string;
  /** Its final state. */
  status: State;
  /** Its result (the exception shape on failure). */
  result: unknown;
}

/** Options of {@linkcode Backend.store}. */
export interface StoreOptions {
  /** The task's `reply_to`: where `rpc://` sends the result. */
  replyTo?: string | null;
}

/** A result backend. Connections open lazily; `close()` is idempotent. */
export interface Backend extends AsyncDisposable {
  /** The URL the backend was made from, with any password hidden. */
  readonly url: string;
  /**
   * The queue results must be sent to for this process to read them (`rpc://` only); the
   * producer puts it in the task's `reply_to`.
   */
  readonly replyTo?: string;
  /** Gets ready to receive results before a task is sent (`rpc://` declares its queue). */
  ready?(): Promise<void>;
  /**
   * Stores a task's meta, and wakes its waiters. A SUCCESS already stored is never
   * overwritten (as Celery).
   */
  store(taskId: string, meta: ResultMeta, options?: StoreOptions): Promise<void>;
  /** Reads a task's meta; `null` means PENDING. */
  get(taskId: string): Promise<ResultMeta | null>;
  /**
   * Yields each task's meta once it is ready (SUCCESS, FAILURE or REVOKED), in the order they
   * finish, then returns. Metas already stored are yielded first.
   */
  waitFor(taskIds: readonly string[], options?: WaitOptions): AsyncIterable<ResultMeta>;
  /** Yields every meta stored for a task (progress, STARTED, RETRY ...) until it is ready. */
  watch(taskId: string, options?: WaitOptions): AsyncIterable<ResultMeta>;
  /** Deletes a task's meta. */
  forget(taskId: string): Promise<void>;
  /** Saves a group's member ids (`GroupResult.save()`). */
  saveGroup(groupId: string, taskIds: readonly string[]): Promise<void>;
  /** Reads a saved group; `null` when none. */
  restoreGroup(groupId: string): Promise<string[] | null>;
  /** Deletes a saved group. */
  deleteGroup(groupId: string): Promise<void>;
  /** Records the header size of a chord, before its header tasks are sent. */
  setChordSize(groupId: string, size: number): Promise<void>;
  /**
   * Records one finished header member, atomically. Returns every part, ordered by
   * `groupIndex`, to exactly one caller: the one whose part completes the chord; every other
   * caller gets `null`.
   */
  chordPartReturn(
    groupId: string,
    groupIndex: number,
    part: ChordPart,
  ): Promise<ChordPart[] | null>;
  /**
   * Makes one connection attempt now (the App retries it); it gives up when `signal` aborts.
   * Optional: backends without a server need none.
   */
  connect?(options?: { signal?: AbortSignal }): Promise<void>;
  /** Closes connections; idempotent. */
  close(): Promise<void>;
}

/** Options every backend takes. */
export interface BackendOptions {
  /**
   * How long results are kept, in milliseconds; `0` keeps them forever.
   * @default {86_400_000}
   */
  resultExpires?: number;
}

/** Options the scheme registry passes to every backend it makes from a URL. */
export interface BackendConnectOptions extends BackendOptions {
  /** The broker, for backends that reply through it (`rpc://`). */
  broker?: Broker;
  /** Transport-specific options, by name. */
  transportOptions?: Record<string, unknown>;
  /** Receives errors of a connection that was up (its client reconnects by itself). */
  onError?: (error: Error) => void;
}
