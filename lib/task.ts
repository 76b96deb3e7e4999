/**
 * Tasks: registered functions with `delay`, `applyAsync` and eager `apply`, and the context
 * a running task sees as `this`.
 *
 * @module
 */

import type { AppContext } from "./app_context.ts";
import { Ignore, MaxRetriesExceededError, Retry } from "./errors.ts";

import { isSignatureLike, Signature, type SignatureLike, toDict } from "./canvas/signature.ts";
import type { SignatureDict } from "./protocol/message.ts";
import { boundedRepr } from "./protocol/repr.ts";
import { readStamps, replacedTaskNesting } from "./protocol/stamps.ts";
import { type Chunks, chunks, type XMap, xmap, type XStarmap, xstarmap } from "./canvas/types.ts";
import type { State } from "./protocol/states.ts";
import type { AsyncResult, EagerResult } from "./result.ts";
import type { DeliveryInfo, RequestContext } from "./worker/outcome.ts";

import type { SendOptions, TaskOptions, TaskRetryOptions } from "./task_options.ts";

export {
  type ErrorClass,
  type ErrorMatcher,
  matchesError,
  type RateLimit,
  type SendOptions,
  type TaskOptions,
  type TaskRetryOptions,
} from "./task_options.ts";

/**
 * What a running task sees as `this` (use a `function`, not an arrow function, to reach it).
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * app.task("tasks.whoami", function () {
 *   return `${this.name} ${this.id} try ${this.retries}`;
 * });
 * await app.close();
 * ```
 */
export class TaskContext {
  /** Task id. */
  readonly id: string;
  /** Task name. */
  readonly name: string;
  /** Retries so far. */
  readonly retries: number;
  /** First task of the workflow. */
  readonly rootId: string;
  /** The task that sent this one. */
  readonly parentId: string | null;
  /** Group id. */
  readonly group: string | null;
  /** Position in a chord header. */
  readonly groupIndex: number | null;
  /** Earliest run time requested. */
  readonly eta: Date | null;
  /** Expiry time. */
  readonly expires: Date | null;
  /** All message headers. */
  readonly headers: Readonly<Record<string, unknown>>;
  /**
   * The Celery 5.3+ stamps the message carries, name → value (Celery's
   * `self.request.stamps`); `{}` when unstamped. Set them with `Signature.stamp()`.
   */
  readonly stamps: Readonly<Record<string, unknown>>;
  /** The stamp names, in order (Celery's `self.request.stamped_headers`); `[]` when none. */
  readonly stampedHeaders: readonly string[];
  /**
   * How many `replace()` calls led to this run (Celery's
   * `self.request.replaced_task_nesting`): 0 for a task that replaced nothing.
   */
  readonly replacedTaskNesting: number;
  /** The queue and delivery details. */
  readonly deliveryInfo: DeliveryInfo;
  /** The worker's node name. */
  readonly hostname: string;
  /** Whether the task runs eagerly. */
  readonly isEager: boolean;
  /** The positional arguments as sent. */
  readonly args: readonly unknown[];
  /** The keyword arguments as sent. */
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** Aborted on soft time limit, revoke with terminate, or cold shutdown. */
  readonly signal: AbortSignal;
  /** The app the task is registered on. */
  readonly app: AppContext;
  readonly #maxRetries: number | null;
  readonly #defaultDelay: number;
  readonly #onState: (state: State, meta: unknown) => Promise<void>;
  readonly #embed: NonNullable<RequestContext["embed"]>;
  readonly #children: { asTuple(): unknown[] }[] = [];

  /**
   * Made by the worker for each run.
   *
   * @param app The app.
   * @param request The request's plain data.
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param signal The task's signal.
   * @param onState Stores a custom state.
   */
  constructor(
    app: AppContext,
    request: RequestContext,
    args: readonly unknown[],
    kwargs: Record<string, unknown>,
    signal: AbortSignal,
    onState: (state: State, meta: unknown) => Promise<void>,
  ) {
    this.app = app;
    this.id = request.id;
    this.name = request.name;
    this.retries = request.retries;
    this.rootId = request.rootId;
    this.parentId = request.parentId;
    this.group = request.group;
    this.groupIndex = request.groupIndex;
    this.eta = request.eta ? new Date(request.eta) : null;
    this.expires = request.expires ? new Date(request.expires) : null;
    this.headers = request.headers;
    const { stampedHeaders, stamps } = readStamps(request.headers);
    this.stamps = stamps;
    this.stampedHeaders = stampedHeaders;
    this.replacedTaskNesting = replacedTaskNesting(request.headers);
    this.deliveryInfo = request.deliveryInfo;
    this.hostname = request.hostname;
    this.isEager = request.isEager;
    this.args = args;
    this.kwargs = kwargs;
    this.signal = signal;
    const options = app.tasks.get(request.name)?.options ?? {};
    this.#maxRetries = options.maxRetries === undefined ? 3 : options.maxRetries;
    this.#defaultDelay = options.defaultRetryDelay ?? 180;
    this.#onState = onState;
    this.#embed = request.embed ?? { callbacks: null, errbacks: null, chain: null, chord: null };
  }

  /**
   * Records a task (or canvas) this run sent from its body; the App calls it. They are
   * stored as the result's `children`, as Celery does, so `AsyncResult.children()` and
   * `collect()` find them.
   *
   * @param child The handle of what was sent.
   */
  addChild(child: { asTuple(): unknown[] }): void {
    this.#children.push(child);
  }

  /**
   * The result tuples of the tasks sent from the body so far.
   *
   * @returns Celery's result tuples.
   */
  childTuples(): unknown[] {
    return this.#children.map((c) => c.asTuple());
  }

  /**
   * Replaces this task by a signature, a chain or a group (Celery's `Task.replace`): the
   * replacement takes over this task's id, so a client waiting on it gets the
   * replacement's result; this task's callbacks, errbacks, the rest of its chain and its
   * chord membership move to the replacement, and this run ends without storing a result.
   * A group is replaced by a chord of the group and `celery.accumulate`, so the id's value
   * is the list of the group's results.
   *
   * On a worker the promise rejects with `Ignore` (that is how the run ends: write
   * `return this.replace(sig)`). In eager mode the replacement runs here and the promise
   * gives its value, which becomes this task's value.
   *
   * @param sig The replacement.
   * @returns Never resolves on a worker; the replacement's value in eager mode.
   * @throws {TypeError} When `sig` is not a signature, is part of a chord, or is an empty
   * chain.
   * @example
   * ```ts
   * import { App } from "@celeriac/celeriac";
   * await using app = new App({ broker: "memory://", backend: "memory://" });
   * const add = app.task("tasks.add", (x: number, y: number) => x + y);
   * const later = app.task("tasks.later", function (x: number) {
   *   return this.replace(add.s(x, 1));
   * });
   * console.assert((await later.apply([1]).get()) === 2);
   * ```
   */
  async replace<T = unknown>(sig: Signature<T, unknown> | SignatureLike): Promise<T> {
    if (!isSignatureLike(sig)) {
      throw new TypeError(`Cannot replace ${this.name}[${this.id}]: not a signature`);
    }
    let d = toDict(sig);
    if (d.options.chord !== undefined && d.options.chord !== null) {
      throw new TypeError(
        "Cannot replace a task: a replacing signature must not be part of a chord",
      );
    }
    if (d.subtask_type === "chain" && !(Array.isArray(d.kwargs.tasks) && d.kwargs.tasks.length)) {
      throw new TypeError("Cannot replace a task with an empty chain");
    }
    if (d.subtask_type === "group") {
      // Uplifted to a chord, so that the group's results have one id to land on.
      d = canvasDict("celery.chord", "chord", {
        kwargs: {},
        header: d,
        body: signatureDict("celery.accumulate", [], { index: 0 }),
      });
    }
    if (this.isEager) {
      // The task's own follow-ups run once, after it returns the replacement's value.
      return await this.app.applyCanvasEager<T>(d, [], {}, {}).get();
    }
    const e = this.#embed;
    const o = d.options;
    for (const cb of e.callbacks ?? []) o.link = [...asList(o.link), cb];
    for (const eb of e.errbacks ?? []) o.link_error = [...asList(o.link_error), eb];
    o.task_id = this.id;
    if (isSignatureLike(e.chord)) {
      o.chord = e.chord;
      if (this.group) o.group_id = this.group;
      if (this.groupIndex !== null) o.group_index = this.groupIndex;
    }
    // As Celery's `replace()`: the replacement, each step of a replacing chain and each
    // step of this task's chain carry the nesting (signature options, so the steps a worker
    // sends later carry it too).
    const nesting = this.replacedTaskNesting + 1;
    o.replaced_task_nesting = nesting;
    if (d.subtask_type === "chain") {
      for (const t of (d.kwargs.tasks as unknown[]).filter(isSignatureLike)) {
        t.options = { ...t.options, replaced_task_nesting: nesting };
      }
    }
    const rest = (e.chain ?? []).filter(isSignatureLike).reverse().map((t) => ({
      ...t,
      options: { ...t.options, replaced_task_nesting: nesting },
    }));
    if (rest.length) d = canvasDict("celery.chain", "chain", { tasks: [d, ...rest] });
    await this.app.sendSignature(d, [], {}, { rootId: this.rootId, parentId: this.id });
    throw new Ignore("Replaced by new task");
  }

  /**
   * Ends this run and schedules the task again with the same id and `retries + 1`.
   * When retries are used up, the task fails with `exc` (or a `MaxRetriesExceededError`).
   *
   * @param options When, and why.
   * @throws {Retry} Always: that is how the run ends.
   */
  retry(options: TaskRetryOptions = {}): never {
    const max = options.maxRetries === undefined ? this.#maxRetries : options.maxRetries;
    if (max !== null && this.retries >= max) {
      if (options.exc !== undefined) throw options.exc;
      throw new MaxRetriesExceededError(
        `Can't retry ${this.name}[${this.id}] args:${
          boundedRepr(this.args, { tuple: true })
        } kwargs:${boundedRepr(this.kwargs)}`,
      );
    }
    const retryOptions: { countdown?: number; eta?: Date; cause?: unknown } = {};
    if (options.eta) retryOptions.eta = options.eta;
    else retryOptions.countdown = options.countdown ?? this.#defaultDelay;
    if (options.exc !== undefined) retryOptions.cause = options.exc;
    throw new Retry(
      options.exc instanceof Error ? options.exc.message : "Retry in the future",
      retryOptions,
    );
  }

  /**
   * Stores a custom state (e.g. `PROGRESS`) for this task; waiting clients see it stream.
   *
   * @param state The state name.
   * @param meta Data stored as the result.
   * @returns When stored.
   */
  updateState(state: State, meta: unknown = null): Promise<void> {
    return this.#onState(state, meta);
  }
}

const asList = (v: unknown): unknown[] =>
  v === undefined || v === null ? [] : Array.isArray(v) ? v : [v];

function signatureDict(
  task: string,
  args: unknown[],
  kwargs: Record<string, unknown>,
): SignatureDict {
  return { task, args, kwargs, options: {}, subtask_type: null, immutable: false };
}

function canvasDict(task: string, type: string, kwargs: Record<string, unknown>): SignatureDict {
  return { task, args: [], kwargs, options: {}, subtask_type: type, immutable: false };
}

/**
 * The argument lists `task.s()` accepts: any trailing part of the task's parameters (a
 * parent's result fills the leading ones), the whole list included.
 */
export type PartialArgs<A extends unknown[]> = number extends A["length"] ? A
  : A extends [] ? []
  : A | (A extends [unknown?, ...infer Rest] ? PartialArgs<Rest> : never);

/** A task function; `this` is its {@linkcode TaskContext}. */
export type TaskFunction<A extends unknown[], R> = (this: TaskContext, ...args: A) => R;

/**
 * A registered task.
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * console.assert((await add.apply([2, 2]).get()) === 4);
 * await app.close();
 * ```
 */
export class Task<A extends unknown[] = unknown[], R = unknown> {
  /** The registered name. */
  readonly name: string;
  /** The function. */
  readonly fn: TaskFunction<A, R | Promise<R>>;
  /** The task's options. */
  readonly options: Readonly<TaskOptions>;
  /** The app it is registered on. */
  readonly app: AppContext;

  /**
   * Use `app.task()` instead.
   *
   * @param app The app.
   * @param name The name.
   * @param fn The function.
   * @param options Options.
   */
  constructor(
    app: AppContext,
    name: string,
    fn: TaskFunction<A, R | Promise<R>>,
    options: TaskOptions = {},
  ) {
    this.app = app;
    this.name = name;
    this.fn = fn;
    this.options = options;
  }

  /**
   * Sends the task with positional arguments.
   *
   * @param args The function's arguments.
   * @returns The result handle.
   */
  delay(...args: A): Promise<AsyncResult<R>> {
    return this.applyAsync(args);
  }

  /**
   * Sends the task with arguments, keyword arguments and call options.
   *
   * @param args Positional arguments.
   * @param kwargs Keyword arguments (bound by parameter name).
   * @param options Call options.
   * @returns The result handle.
   */
  applyAsync(
    args: A | [] = [],
    kwargs: Record<string, unknown> = {},
    options: SendOptions = {},
  ): Promise<AsyncResult<R>> {
    const merged: SendOptions = { ...options };
    if (merged.queue === undefined && this.options.queue) merged.queue = this.options.queue;
    if (merged.priority === undefined && this.options.priority !== undefined) {
      merged.priority = this.options.priority;
    }
    if (merged.timeLimit === undefined && this.options.timeLimit !== undefined) {
      merged.timeLimit = this.options.timeLimit;
    }
    if (merged.softTimeLimit === undefined && this.options.softTimeLimit !== undefined) {
      merged.softTimeLimit = this.options.softTimeLimit;
    }
    if (merged.ignoreResult === undefined && this.options.ignoreResult) {
      merged.ignoreResult = true;
    }
    if (merged.expires === undefined && this.options.expires !== undefined) {
      merged.expires = this.options.expires;
    }
    return this.app.sendTask<R>(this.name, args, kwargs, merged);
  }

  /**
   * Runs the task here and now (eager), with retries, and returns its result.
   *
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param options `taskId`.
   * @returns The eager result.
   */
  apply(
    args: A | [] = [],
    kwargs: Record<string, unknown> = {},
    options: Pick<SendOptions, "taskId"> = {},
  ): EagerResult<R> {
    return this.app.applyEager<R>(this.name, args, kwargs, options);
  }

  /**
   * A signature of this task (partial: a parent's result is prepended). The arguments are
   * type-checked as the trailing part of the task's parameters: for `add(x, y)`, `add.s(1,
   * 2)` and `add.s(2)` compile, `add.s("a", 2)` does not.
   *
   * @param args Positional arguments.
   * @returns The signature; its JSON is Celery's dict.
   */
  s(...args: PartialArgs<A>): Signature<R> {
    return this.signature(args);
  }

  /**
   * An immutable signature of this task (the parent's result is not prepended), with the
   * arguments type-checked as `delay()` checks them.
   *
   * @param args Positional arguments.
   * @returns The signature; its JSON is Celery's dict.
   */
  si(...args: A): Signature<R> {
    return this.signature(args, {}, {}, true);
  }

  /**
   * A signature with keyword arguments and options (Celery's option names).
   *
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param options Calling options (`queue`, `countdown`, `task_id` ...).
   * @param immutable Whether a parent's result is ignored.
   * @returns The signature.
   */
  signature(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: Record<string, unknown> = {},
    immutable = false,
  ): Signature<R> {
    return new Signature<R>(
      { task: this.name, args, kwargs, options, subtask_type: null, immutable },
      this.app,
    );
  }

  /**
   * `celery.map`: one task calling this task for each item.
   *
   * @param it The items.
   * @returns The signature.
   */
  map(it: unknown[]): XMap<R> {
    return xmap<R>(this, it);
  }

  /**
   * `celery.starmap`: one task calling this task with each argument list.
   *
   * @param it The argument lists.
   * @returns The signature.
   */
  starmap(it: unknown[][]): XStarmap<R> {
    return xstarmap<R>(this, it);
  }

  /**
   * `celery.chunks`: the argument lists in `n`-sized starmap tasks, sent as a group.
   *
   * @param it The argument lists.
   * @param n Items per chunk.
   * @returns The signature.
   */
  chunks(it: unknown[][], n: number): Chunks<R> {
    return chunks<R>(this, it, n);
  }
}
