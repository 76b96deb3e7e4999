/**
 * Result handles: {@linkcode AsyncResult} for a sent task, {@linkcode EagerResult} for one run
 * with `apply()`, {@linkcode GroupResult} for several.
 *
 * @module
 */

import type { Backend } from "./backends/backend.ts";
import type { ResultMeta } from "./backends/backend.ts";
import { ResultTimeoutError } from "./errors.ts";
import { infoToError, isExceptionInfo } from "./protocol/exceptions.ts";
import { PROPAGATE_STATES, READY_STATES, type State } from "./protocol/states.ts";

/** Options of `get()`. */
export interface GetOptions {
  /** Most milliseconds to wait; `ResultTimeoutError` after. @default {Infinity} */
  timeout?: number;
  /** Stops waiting, throwing the signal's reason. */
  signal?: AbortSignal;
  /**
   * Throw the task's error when it failed or was revoked (instead of returning it).
   * @default {true}
   */
  propagate?: boolean;
  /**
   * When the task failed (with `propagate` on), first throw the error of its oldest failed
   * parent known to this handle (`parent`, set by chain and chord sends): for a chord body,
   * the first failed header member's own error instead of the body's `ChordError`, as
   * Celery's `get(follow_parents=True)`. Parents are read only when the task failed; a
   * successful `get()` reads nothing more. `false` throws the task's own stored error.
   * @default {true}
   */
  followParents?: boolean;
  /**
   * Called with every meta stored for the task while waiting (STARTED, PROGRESS ... and the
   * final one), as Celery's `on_message`. For a group, with each member's final meta.
   */
  onMessage?: (meta: ResultMeta) => void;
}

/** Options of `join()` on a group or result set. */
export interface JoinOptions extends GetOptions {
  /**
   * Called with each member's id and value as it finishes (completion order), as Celery's
   * `callback` of `join()`. When given, the values are still returned.
   */
  callback?: (taskId: string, value: unknown) => void;
}

/** What results need of the App: its backend, and revoke. The App implements it. */
export interface ResultContext {
  /** The result backend. */
  getBackend(): Promise<Backend>;
  /** Revokes tasks by id. */
  revoke(taskId: string | string[], options?: RevokeOptions): Promise<void>;
  /** Revokes tasks by stamp (`revoke_by_stamped_headers`). */
  revokeByStampedHeaders(
    headers: Record<string, unknown>,
    options?: RevokeOptions,
  ): Promise<void>;
}

/** Options of `revoke()`. */
export interface RevokeOptions {
  /** Also stop the task if it is running. @default {false} */
  terminate?: boolean;
  /** The signal name Celery sends with terminate. @default {"SIGTERM"} */
  signal?: string;
}

/**
 * Runs `fn` with a signal that aborts on `options.signal` or after `options.timeout` ms.
 *
 * @param taskId For the timeout error.
 * @param options Timeout and signal.
 * @param fn The wait.
 * @returns What `fn` returns.
 */
export async function withTimeout<T>(
  taskId: string,
  options: GetOptions,
  fn: (signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (options.timeout === undefined || options.timeout === Infinity) return fn(options.signal);
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new ResultTimeoutError(taskId, options.timeout!)),
    options.timeout,
  );
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  try {
    return await fn(signal);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Celery's `_maybe_reraise_parent_error`: walks `result.parent` oldest first and throws the
 * first failed node's error; a group parent throws its first failed member's (call order).
 * Parents still pending or successful are passed over.
 */
async function throwParentError(result: AsyncResult | GroupResult): Promise<void> {
  const parents: (AsyncResult | GroupResult)[] = [];
  for (let node = result.parent; node && !parents.includes(node); node = node.parent) {
    parents.push(node);
  }
  for (const node of parents.reverse()) {
    const backend = await node.app.getBackend();
    const members = node instanceof GroupResult ? node.results : [node];
    const metas = await Promise.all(members.map((m) => backend.get(m.id)));
    for (const meta of metas) if (meta) valueOf(meta, true);
  }
}

/**
 * The value of a finished task for `get()`: when it failed, a failed parent's error first
 * (unless `followParents` or `propagate` is off), then its own.
 */
async function finalValue<R>(
  result: AsyncResult | GroupResult | undefined,
  meta: ResultMeta,
  options: Pick<GetOptions, "propagate" | "followParents">,
): Promise<R> {
  const propagate = options.propagate ?? true;
  if (
    result?.parent && propagate && (options.followParents ?? true) &&
    PROPAGATE_STATES.has(meta.status)
  ) await throwParentError(result);
  return valueOf<R>(meta, propagate);
}

function valueOf<R>(meta: ResultMeta, propagate: boolean): R {
  if (PROPAGATE_STATES.has(meta.status) && isExceptionInfo(meta.result)) {
    const error = infoToError(meta.result, meta.traceback);
    if (propagate) throw error;
    return error as R;
  }
  return meta.result as R;
}

/**
 * The handle of a sent task. PENDING means no result has been stored yet.
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * const r = app.asyncResult("some-id");
 * console.assert((await r.state()) === "PENDING");
 * await app.close();
 * ```
 */
export class AsyncResult<R = unknown> {
  /** The task id. */
  readonly id: string;
  /** The app whose backend holds the result. */
  readonly app: ResultContext;
  /**
   * The previous step, for a chain's results (kept client-side, as Celery); for a chord's
   * body, the header's `GroupResult`.
   */
  parent: AsyncResult | GroupResult | undefined;

  /**
   * Use `app.asyncResult(id)` or the value of `delay()`.
   *
   * @param id The task id.
   * @param app The app.
   */
  constructor(id: string, app: ResultContext) {
    this.id = id;
    this.app = app;
  }

  /**
   * The stored meta, or `null` while PENDING.
   *
   * @returns The meta.
   */
  async meta(): Promise<ResultMeta | null> {
    return await (await this.app.getBackend()).get(this.id);
  }

  /**
   * The current state.
   *
   * @returns `PENDING`, `STARTED`, `SUCCESS`, `FAILURE`, ...
   */
  async state(): Promise<State> {
    return (await this.meta())?.status ?? "PENDING";
  }

  /**
   * Whether the task finished (SUCCESS, FAILURE or REVOKED).
   *
   * @returns The answer.
   */
  async ready(): Promise<boolean> {
    return READY_STATES.has(await this.state());
  }

  /**
   * Whether the task succeeded.
   *
   * @returns The answer.
   */
  async successful(): Promise<boolean> {
    return (await this.state()) === "SUCCESS";
  }

  /**
   * Whether the task failed.
   *
   * @returns The answer.
   */
  async failed(): Promise<boolean> {
    return (await this.state()) === "FAILURE";
  }

  /**
   * Waits for the task to finish and returns its value.
   *
   * @param options Timeout (ms), signal, propagate, followParents.
   * @returns The task's return value.
   * @throws {ResultTimeoutError} When the timeout passes first.
   * @throws {Error} The task's error, when it failed and `propagate` is on; with
   * `followParents` (default), a failed parent's error first, as Celery's `get()`: a failed
   * chord's `get()` throws the failing header member's own error, not the body's
   * `ChordError` (which stays its stored result, see `meta()`).
   * @example A failed chord throws its failing member's error
   * ```ts
   * import { App, chord } from "@celeriac/celeriac";
   * await using app = new App({ broker: "memory://", backend: "memory://" });
   * const ok = app.task("t.ok", () => 1);
   * const bad = app.task("t.bad", () => {
   *   throw new TypeError("x");
   * });
   * const total = app.task("t.total", (xs: number[]) => xs.length);
   * const r = chord([ok.s(), bad.s()], total.s()).apply();
   * const error = await r.get().catch((e: Error) => e);
   * console.assert(error instanceof Error && error.name === "TypeError" && error.message === "x");
   * const stored = (await r.meta()).result as { exc_type: string };
   * console.assert(stored.exc_type === "ChordError");
   * ```
   */
  async get(options: GetOptions = {}): Promise<R> {
    const backend = await this.app.getBackend();
    const { onMessage } = options;
    const meta = await withTimeout(this.id, options, async (signal) => {
      const wait = signal ? { signal } : {};
      if (onMessage) {
        for await (const meta of backend.watch(this.id, wait)) {
          onMessage(meta);
          if (READY_STATES.has(meta.status)) return meta;
        }
      } else {
        for await (const meta of backend.waitFor([this.id], wait)) return meta;
      }
      throw new Error(`Result backend ended without a result for ${this.id}`);
    });
    return await finalValue<R>(this, meta, options);
  }

  /**
   * Calls `onValue` with the value once the task finishes, or `onError` with its error (a
   * callback-style `get()`, as Celery's `AsyncResult.then`; not named `then`, so that
   * awaiting a handle stays a handle).
   *
   * @param onValue Called with the value.
   * @param onError Called with the error (the task's, or a timeout).
   * @param options Timeout (ms), signal.
   * @returns When the callback has run.
   */
  async onReady(
    onValue: (value: R) => void | Promise<void>,
    onError?: (error: unknown) => void | Promise<void>,
    options: Omit<GetOptions, "propagate"> = {},
  ): Promise<void> {
    let value: R;
    try {
      value = await this.get(options);
    } catch (error) {
      if (!onError) throw error;
      await onError(error);
      return;
    }
    await onValue(value);
  }

  /**
   * Waits for the whole graph from this task (through `children`) and gives the value of
   * the last node reached, as Celery's `get_leaf()`: for a task whose callback sent
   * another task, that task's value.
   *
   * @param options Timeout (ms, per node), signal, propagate.
   * @returns The leaf's value.
   */
  async getLeaf(options: GetOptions = {}): Promise<unknown> {
    let value: unknown;
    for await (const [, v] of this.collect(options)) value = v;
    return value;
  }

  /**
   * Streams every state stored for the task (STARTED, custom progress states, RETRY ...)
   * until it is ready.
   *
   * @param options A signal to stop early.
   * @returns The metas, as they are stored.
   */
  async *updates(options: { signal?: AbortSignal } = {}): AsyncGenerator<ResultMeta> {
    const backend = await this.app.getBackend();
    yield* backend.watch(this.id, options);
  }

  /**
   * Same as {@linkcode AsyncResult.updates}.
   *
   * @returns The metas.
   */
  [Symbol.asyncIterator](): AsyncGenerator<ResultMeta> {
    return this.updates();
  }

  /**
   * Deletes the stored result.
   *
   * @returns When deleted.
   */
  async forget(): Promise<void> {
    await (await this.app.getBackend()).forget(this.id);
  }

  /**
   * The tasks this one sent (callbacks, the next link of a chain, tasks sent from inside
   * it), read from the stored meta's `children`.
   *
   * @returns Their handles; empty while PENDING.
   */
  async children(): Promise<(AsyncResult | GroupResult)[]> {
    const meta = await this.meta();
    const children = Array.isArray(meta?.children) ? meta.children : [];
    return children.flatMap((c) => {
      const r = resultFromTuple(this.app, c);
      return r ? [r] : [];
    });
  }

  /**
   * Walks the result graph breadth first from this task through `children`, waiting for
   * each node and yielding it with its value (Celery's `collect()`).
   *
   * @param options Timeout (ms, per node), signal, propagate.
   * @returns `[handle, value]` pairs.
   */
  collect(
    options: GetOptions = {},
  ): AsyncGenerator<[AsyncResult | GroupResult, unknown]> {
    return collectGraph(this, options);
  }

  /**
   * Celery's result tuple `[[id, parent tuple], null]`, as stored in `children`.
   *
   * @returns The tuple.
   */
  asTuple(): unknown[] {
    return [[this.id, this.parent ? this.parent.asTuple() : null], null];
  }

  /**
   * Asks every worker not to run the task (and to stop it with `terminate`).
   *
   * @param options Terminate or not.
   * @returns When the request is sent.
   */
  revoke(options: RevokeOptions = {}): Promise<void> {
    return this.app.revoke(this.id, options);
  }

  /**
   * Asks every worker not to run tasks carrying these stamps (and to stop them with
   * `terminate`), as Celery's `AsyncResult.revoke_by_stamped_headers`: the stamps are what
   * is matched, not this result's id.
   *
   * @param headers Stamp name → value or list of values.
   * @param options Terminate or not.
   * @returns When the request is sent.
   */
  revokeByStampedHeaders(
    headers: Record<string, unknown>,
    options: RevokeOptions = {},
  ): Promise<void> {
    return this.app.revokeByStampedHeaders(headers, options);
  }
}

/**
 * The result of a task run in-process with `apply()`.
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * const double = app.task("t.double", (x: number) => x * 2);
 * const r = double.apply([21]);
 * console.assert((await r.get()) === 42 && (await r.state()) === "SUCCESS");
 * await app.close();
 * ```
 */
export class EagerResult<R = unknown> {
  /** The task id (a chain's last step's, a chord body's, a group's id). */
  readonly id: string;
  readonly #meta: Promise<ResultMeta>;
  readonly #node: Promise<AsyncResult | GroupResult> | undefined;

  /**
   * Made by `apply()`.
   *
   * @param id The task id.
   * @param meta The run's final meta.
   * @param node For a canvas: the result graph, in the eager run's own backend.
   */
  constructor(id: string, meta: Promise<ResultMeta>, node?: Promise<AsyncResult | GroupResult>) {
    this.id = id;
    this.#meta = meta;
    this.#node = node;
    // A failed run is reported by get()/meta(), not as an unhandled rejection.
    node?.catch(() => {});
  }

  /**
   * For an eager canvas (`signature.apply()`), the handle of its result graph: `parent`
   * links, `children()`, `collect()`, a group's members. `null` for `task.apply()`.
   *
   * @returns The handle.
   */
  async handle(): Promise<AsyncResult | GroupResult | null> {
    return this.#node ? await this.#node : null;
  }

  /**
   * The final meta.
   *
   * @returns The meta.
   */
  meta(): Promise<ResultMeta> {
    return this.#meta;
  }

  /**
   * The final state.
   *
   * @returns The state.
   */
  async state(): Promise<State> {
    return (await this.#meta).status;
  }

  /**
   * The value, or the error thrown: for a failed canvas, its oldest failed parent's error
   * first, as {@linkcode AsyncResult.get} (a failed chord throws its failing header
   * member's error; `followParents: false` throws the body's own `ChordError`).
   *
   * @param options `propagate`, `followParents`.
   * @returns The value.
   */
  async get(options: Pick<GetOptions, "propagate" | "followParents"> = {}): Promise<R> {
    const meta = await this.#meta;
    return await finalValue<R>(this.#node ? await this.#node : undefined, meta, options);
  }
}

/**
 * Several results handled as one (Celery's `ResultSet`): wait for all, count, revoke,
 * forget. {@linkcode GroupResult} is a result set with an id.
 *
 * @example
 * ```ts
 * import { App, ResultSet } from "@celeriac/celeriac";
 * await using app = new App({ broker: "memory://", backend: "memory://" });
 * const set = new ResultSet([app.asyncResult("a"), app.asyncResult("b")], app);
 * console.assert((await set.completedCount()) === 0 && (await set.waiting()));
 * ```
 */
export class ResultSet<R = unknown, T extends unknown[] = R[]> {
  /** The members, in call order. */
  readonly results: AsyncResult<R>[];
  /** The app. */
  readonly app: ResultContext;

  /**
   * Creates the set.
   *
   * @param results The members.
   * @param app The app.
   */
  constructor(results: readonly AsyncResult<R>[], app: ResultContext) {
    this.results = [...results];
    this.app = app;
  }

  /** What a timeout error names: the first member's id. */
  protected get label(): string {
    return this.results[0]?.id ?? "result set";
  }

  /**
   * Adds a member (Celery's `add`); a member already in the set is not added twice.
   *
   * @param result The member.
   */
  add(result: AsyncResult<R>): void {
    if (!this.results.some((r) => r.id === result.id)) this.results.push(result);
  }

  /**
   * Removes a member by handle or id (Celery's `discard`).
   *
   * @param result The member or its id.
   * @returns Whether it was there.
   */
  discard(result: AsyncResult<R> | string): boolean {
    const id = typeof result === "string" ? result : result.id;
    const i = this.results.findIndex((r) => r.id === id);
    if (i >= 0) this.results.splice(i, 1);
    return i >= 0;
  }

  /**
   * Yields each member's final meta in the order they finish.
   *
   * @param options Timeout (ms) and signal.
   * @returns The metas.
   */
  async *completed(options: GetOptions = {}): AsyncGenerator<ResultMeta> {
    const backend = await this.app.getBackend();
    const ids = this.results.map((r) => r.id);
    const controller = new AbortController();
    const timer = options.timeout === undefined ? undefined : setTimeout(
      () => controller.abort(new ResultTimeoutError(this.label, options.timeout!)),
      options.timeout,
    );
    const signal = options.signal
      ? AbortSignal.any([options.signal, controller.signal])
      : controller.signal;
    try {
      yield* backend.waitFor(ids, { signal });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Same as {@linkcode ResultSet.completed}: each member's final meta as it finishes
   * (Celery's `iter_native`, which yields `(id, meta)`; the id is `meta.task_id`).
   *
   * @param options Timeout (ms) and signal.
   * @returns The metas, in completion order.
   */
  iterNative(options: GetOptions = {}): AsyncGenerator<ResultMeta> {
    return this.completed(options);
  }

  /**
   * Same as {@linkcode ResultSet.completed}.
   *
   * @returns The metas, in completion order.
   */
  [Symbol.asyncIterator](): AsyncGenerator<ResultMeta> {
    return this.completed();
  }

  /**
   * Waits for every member; returns their values in call order. `callback` and
   * `onMessage` see each member as it finishes.
   *
   * @param options Timeout (ms), signal, propagate, callback, onMessage.
   * @returns The values.
   * @throws {Error} The first failed member's error (in call order) when `propagate` is on.
   */
  async join(options: JoinOptions = {}): Promise<T> {
    const metas = new Map<string, ResultMeta>();
    const propagate = options.propagate ?? true;
    for await (const meta of this.completed(options)) {
      metas.set(meta.task_id, meta);
      options.onMessage?.(meta);
      if (options.callback) options.callback(meta.task_id, valueOf(meta, false));
    }
    return this.results.map((r) => valueOf<R>(metas.get(r.id)!, propagate)) as T;
  }

  /**
   * Same as {@linkcode ResultSet.join} (Celery's `join_native`: the backend pushes results,
   * no polling, on every backend here).
   *
   * @param options Timeout (ms), signal, propagate, callback, onMessage.
   * @returns The values.
   */
  joinNative(options: JoinOptions = {}): Promise<T> {
    return this.join(options);
  }

  /**
   * Same as {@linkcode ResultSet.join}.
   *
   * @param options Timeout (ms), signal, propagate, callback, onMessage.
   * @returns The values.
   */
  get(options: JoinOptions = {}): Promise<T> {
    return this.join(options);
  }

  async #states(): Promise<State[]> {
    return await Promise.all(this.results.map((r) => r.state()));
  }

  /**
   * How many members have finished (SUCCESS, FAILURE or REVOKED).
   *
   * @returns The count.
   */
  async completedCount(): Promise<number> {
    return (await this.#states()).filter((s) => READY_STATES.has(s)).length;
  }

  /**
   * Whether every member finished.
   *
   * @returns The answer.
   */
  async ready(): Promise<boolean> {
    return (await this.completedCount()) === this.results.length;
  }

  /**
   * Whether some member has not finished yet (Celery's `waiting`).
   *
   * @returns The answer.
   */
  async waiting(): Promise<boolean> {
    return !(await this.ready());
  }

  /**
   * Whether every member succeeded.
   *
   * @returns The answer.
   */
  async successful(): Promise<boolean> {
    return (await this.#states()).every((s) => s === "SUCCESS");
  }

  /**
   * Whether any member failed.
   *
   * @returns The answer.
   */
  async failed(): Promise<boolean> {
    return (await this.#states()).some((s) => s === "FAILURE");
  }

  /**
   * Deletes every member's result.
   *
   * @returns When deleted.
   */
  async forget(): Promise<void> {
    await Promise.all(this.results.map((r) => r.forget()));
  }

  /**
   * Asks every worker not to run any member (one broadcast for all), and to stop the
   * running ones with `terminate`.
   *
   * @param options Terminate or not.
   * @returns When the request is sent.
   */
  revoke(options: RevokeOptions = {}): Promise<void> {
    return this.app.revoke(this.results.map((r) => r.id), options);
  }
}

/**
 * The handle of several sent tasks: a {@linkcode ResultSet} with the group's id, that can
 * be saved and restored. `T` is the list of values (a tuple for a typed group).
 *
 * @example
 * ```ts
 * import { App, GroupResult } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * const g = new GroupResult("gid", [app.asyncResult("a"), app.asyncResult("b")], app);
 * console.assert((await g.completedCount()) === 0);
 * await app.close();
 * ```
 */
export class GroupResult<R = unknown, T extends unknown[] = R[]> extends ResultSet<R, T> {
  /** The group id. */
  readonly id: string;
  /** The previous step, when the group is part of a chain. */
  parent: AsyncResult | GroupResult | undefined;

  /**
   * Reads a group saved with {@linkcode GroupResult.save}.
   *
   * @param app The app whose backend holds it.
   * @param id The group id.
   * @returns The group, or `null` when none is saved.
   */
  static async restore<R = unknown>(
    app: ResultContext,
    id: string,
  ): Promise<GroupResult<R> | null> {
    const ids = await (await app.getBackend()).restoreGroup(id);
    return ids ? new GroupResult<R>(id, ids.map((i) => new AsyncResult<R>(i, app)), app) : null;
  }

  /**
   * Creates the handle.
   *
   * @param id The group id.
   * @param results The members.
   * @param app The app.
   */
  constructor(id: string, results: readonly AsyncResult<R>[], app: ResultContext) {
    super(results, app);
    this.id = id;
  }

  /** What a timeout error names: the group id. */
  protected override get label(): string {
    return this.id;
  }

  /**
   * Saves the group's member ids in the backend.
   *
   * @returns When saved.
   */
  async save(): Promise<void> {
    await (await this.app.getBackend()).saveGroup(this.id, this.results.map((r) => r.id));
  }

  /**
   * Deletes the saved group (not the members' results).
   *
   * @returns When deleted.
   */
  async delete(): Promise<void> {
    await (await this.app.getBackend()).deleteGroup(this.id);
  }

  /**
   * The members (Celery's `GroupResult.children`).
   *
   * @returns The members.
   */
  children(): Promise<(AsyncResult | GroupResult)[]> {
    return Promise.resolve([...this.results]);
  }

  /**
   * Walks the graph from this group: the group with its values, then each member and its
   * children.
   *
   * @param options Timeout (ms, per node), signal, propagate.
   * @returns `[handle, value]` pairs.
   */
  collect(
    options: GetOptions = {},
  ): AsyncGenerator<[AsyncResult | GroupResult, unknown]> {
    return collectGraph(this, options);
  }

  /**
   * Celery's result tuple `[[id, parent tuple], [member tuples]]`.
   *
   * @returns The tuple.
   */
  asTuple(): unknown[] {
    return [
      [this.id, this.parent ? this.parent.asTuple() : null],
      this.results.map((r) => r.asTuple()),
    ];
  }
}

async function* collectGraph(
  start: AsyncResult | GroupResult,
  options: GetOptions,
): AsyncGenerator<[AsyncResult | GroupResult, unknown]> {
  const queue: (AsyncResult | GroupResult)[] = [start];
  const seen = new Set<string>();
  while (queue.length) {
    const node = queue.shift()!;
    const key = `${node instanceof GroupResult ? "g" : "t"}:${node.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    yield [node, await node.get(options)];
    queue.push(...await node.children());
  }
}

/**
 * Rebuilds a result handle from Celery's result tuple (`[[id, parent], null]` for a task,
 * `[[id, parent], [members...]]` for a group), as stored in a meta's `children`.
 *
 * @param app The app.
 * @param tuple The tuple.
 * @returns The handle, or `null` when the tuple is malformed.
 * @example
 * ```ts
 * import { App, resultFromTuple } from "@celeriac/celeriac";
 * await using app = new App({ broker: "memory://", backend: "memory://" });
 * console.assert(resultFromTuple(app, [["abc", null], null])?.id === "abc");
 * ```
 */
export function resultFromTuple(
  app: ResultContext,
  tuple: unknown,
): AsyncResult | GroupResult | null {
  if (!Array.isArray(tuple)) return typeof tuple === "string" ? new AsyncResult(tuple, app) : null;
  const [head, nodes] = tuple;
  const [id, parentTuple] = Array.isArray(head) ? head : [head, null];
  if (typeof id !== "string") return null;
  const parent = parentTuple ? resultFromTuple(app, parentTuple) ?? undefined : undefined;
  let result: AsyncResult | GroupResult;
  if (Array.isArray(nodes)) {
    const members = nodes.map((n) => resultFromTuple(app, n)).filter((r) =>
      r instanceof AsyncResult
    ) as AsyncResult[];
    result = new GroupResult(id, members, app);
  } else result = new AsyncResult(id, app);
  result.parent = parent;
  return result;
}
