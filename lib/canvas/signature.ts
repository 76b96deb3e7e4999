/**
 * {@linkcode Signature}: a serializable task call, as Celery's `celery/canvas.py:Signature`.
 * Its JSON is exactly Celery's dict `{task, args, kwargs, options, subtask_type, immutable}`,
 * so signatures travel inside messages (callbacks, chains, chord bodies) between celeriac and
 * Python Celery.
 *
 * @module
 */

import type { AppContext } from "../app_context.ts";
import type { SignatureDict } from "../protocol/message.ts";
import { boundedRepr } from "../protocol/repr.ts";
import { writeStamps } from "../protocol/stamps.ts";
import type { AsyncResult, EagerResult, GroupResult } from "../result.ts";
import type { SendOptions } from "../task_options.ts";

/** A signature object or its plain Celery dict. */
export type SignatureLike = Signature<unknown, unknown> | SignatureDict;

/** What a task handle looks like to {@linkcode signature}: a name and an app. */
export interface TaskLike {
  /** The registered name. */
  readonly name: string;
  /** The app it is registered on. */
  readonly app: AppContext;
}

/** Options of `apply()` on a signature. */
export interface CanvasApplyOptions {
  /** The id of the result (a chain's last step, a chord's body, a group). @default {a new UUID} */
  taskId?: string;
  /** The app to run with, when the signature is not bound to one. */
  app?: AppContext;
}

/** Options of `applyAsync` on a signature: the call options, plus the app to send with. */
export interface CanvasSendOptions extends SendOptions {
  /** The app to send with, when the signature is not bound to one. */
  app?: AppContext;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Whether a value has a signature's shape (`task` name and `args` list, or a canvas type).
 *
 * @param value Anything.
 * @returns The answer.
 */
export function isSignatureLike(value: unknown): value is SignatureLike {
  return isObject(value) && typeof value.task === "string" &&
    (value.args === undefined || Array.isArray(value.args));
}

function dictList(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => isSignatureLike(v) ? toDict(v) : v);
  return isSignatureLike(value) ? toDict(value) : value;
}

/**
 * Converts a signature (object or dict, nested canvases included) to a fresh plain Celery
 * dict. The input is not modified.
 *
 * @param sig The signature.
 * @returns The dict.
 * @throws {TypeError} When `sig` is not a signature.
 * @example
 * ```ts
 * import { signature, toDict } from "@celeriac/celeriac";
 * const d = toDict(signature("tasks.add", [1]));
 * console.assert(d.task === "tasks.add" && d.subtask_type === null);
 * ```
 */
export function toDict(sig: SignatureLike): SignatureDict {
  if (!isSignatureLike(sig)) {
    throw new TypeError(`Cannot use ${boundedRepr(sig)} as a signature: it has no task name`);
  }
  const options: Record<string, unknown> = { ...(isObject(sig.options) ? sig.options : {}) };
  for (const key of ["link", "link_error", "chain"]) {
    if (options[key] !== undefined && options[key] !== null) options[key] = dictList(options[key]);
  }
  if (isSignatureLike(options.chord)) options.chord = toDict(options.chord);
  const kwargs: Record<string, unknown> = { ...(isObject(sig.kwargs) ? sig.kwargs : {}) };
  const type = typeof sig.subtask_type === "string" ? sig.subtask_type : null;
  if (type !== null) {
    for (const key of ["tasks", "header", "body", "task"]) {
      if (kwargs[key] !== undefined && kwargs[key] !== null) kwargs[key] = dictList(kwargs[key]);
    }
  }
  const out: SignatureDict = {
    task: sig.task,
    args: Array.isArray(sig.args) ? [...sig.args] : [],
    kwargs,
    options,
    subtask_type: type,
    immutable: sig.immutable === true,
  };
  for (const [k, v] of Object.entries(sig)) {
    if (!(k in out) && typeof v !== "function") out[k] = v;
  }
  return out;
}

type SignatureClass = new (dict: SignatureDict, app?: AppContext) => Signature<unknown, unknown>;
const types = new Map<string, SignatureClass>();

/**
 * Registers the class that wraps dicts of a canvas type (`chain`, `group` ...).
 *
 * @param type The `subtask_type`.
 * @param cls The class.
 */
export function registerSignatureType(type: string, cls: SignatureClass): void {
  types.set(type, cls);
}

/**
 * Wraps a Celery signature dict (from a message, or from Python) in the class of its canvas
 * type: `Chain`, `Group`, `Chord`, `Chunks`, `XMap`, `XStarmap`, else `Signature`.
 *
 * @param dict The dict (copied).
 * @param app The app to send with.
 * @returns The signature.
 * @throws {TypeError} When `dict` is not a signature.
 * @example
 * ```ts
 * import { fromDict } from "@celeriac/celeriac";
 * const sig = fromDict({ task: "tasks.add", args: [1], kwargs: {}, options: {},
 *   subtask_type: null, immutable: false });
 * console.assert(sig.task === "tasks.add");
 * ```
 */
export function fromDict(
  dict: SignatureLike,
  app?: AppContext,
): Signature<unknown, AsyncResult | GroupResult> {
  const d = toDict(dict);
  const cls = (d.subtask_type && types.get(d.subtask_type)) || Signature;
  return new cls(d, app) as Signature<unknown, AsyncResult | GroupResult>;
}

const listOption = (value: unknown): unknown[] =>
  value === undefined || value === null ? [] : Array.isArray(value) ? [...value] : [value];

// Celery's `stamp()` walk: links and errbacks, then a canvas's tasks, or the task itself.
function stampInto(sig: SignatureLike, stamps: Record<string, unknown>): void {
  if (!isObject(sig.options)) sig.options = {};
  const o = sig.options as Record<string, unknown>;
  for (const key of ["link", "link_error"]) {
    for (const link of listOption(o[key])) if (isSignatureLike(link)) stampInto(link, stamps);
  }
  const kwargs = isObject(sig.kwargs) ? sig.kwargs : {};
  const members = (v: unknown): unknown[] =>
    isSignatureLike(v) && v.subtask_type === "group"
      ? members((isObject(v.kwargs) ? v.kwargs : {}).tasks)
      : listOption(v);
  switch (sig.subtask_type) {
    case "chain":
    case "group":
      for (const t of members(kwargs.tasks)) if (isSignatureLike(t)) stampInto(t, stamps);
      return;
    case "chord":
      for (const t of members(kwargs.header)) if (isSignatureLike(t)) stampInto(t, stamps);
      return;
    default:
      writeStamps(o, stamps);
  }
}

/**
 * A task call that can be sent later, passed to another task as a callback, or combined into
 * a canvas. Create one with {@linkcode signature}, `task.s()` or `task.si()`.
 *
 * `R` is the task's value; `Res` is the handle `applyAsync()` gives (a `GroupResult` for
 * groups).
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * await using app = new App({ broker: "memory://", backend: "memory://" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const sig = add.s(2).set({ queue: "math" });
 * console.assert(JSON.stringify(sig) ===
 *   '{"task":"tasks.add","args":[2],"kwargs":{},"options":{"queue":"math"},' +
 *   '"subtask_type":null,"immutable":false}');
 * ```
 */
export class Signature<R = unknown, Res = AsyncResult<R>> {
  /** Lets a signature stand wherever a {@linkcode SignatureDict} is expected. */
  [key: string]: unknown;
  /** Task name (`celery.chain`, `celery.group` ... for canvases). */
  task: string;
  /** Positional arguments (a parent's result is prepended unless immutable). */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** Calling options, with Celery's keys (`task_id`, `queue`, `link`, `link_error` ...). */
  options: Record<string, unknown>;
  /** `null` for a task; `chain`, `group`, `chord`, `chunks`, `xmap`, `xstarmap` for canvases. */
  subtask_type: string | null;
  /** When true, a parent's result is not prepended to `args`. */
  immutable: boolean;
  #app: AppContext | undefined;

  /**
   * Wraps a Celery signature dict. Prefer {@linkcode signature}, `task.s()`, `chain()` ...
   *
   * @param dict The dict (copied).
   * @param app The app to send with.
   */
  constructor(dict: SignatureDict, app?: AppContext) {
    const d = toDict(dict);
    this.task = d.task;
    this.args = d.args;
    this.kwargs = d.kwargs;
    this.options = d.options;
    this.subtask_type = d.subtask_type;
    this.immutable = d.immutable;
    this.#app = app;
  }

  /**
   * The app this signature sends with: its own, or the first one found among nested members.
   *
   * @returns The app, if any.
   */
  getApp(): AppContext | undefined {
    if (this.#app) return this.#app;
    for (const key of ["tasks", "header", "body", "task"]) {
      const v = this.kwargs[key];
      for (const member of Array.isArray(v) ? v : [v]) {
        if (member instanceof Signature) {
          const app = member.getApp();
          if (app) return app;
        }
      }
    }
    return undefined;
  }

  /**
   * Binds the signature to an app.
   *
   * @param app The app.
   * @returns This signature.
   */
  bind(app: AppContext): this {
    this.#app = app;
    return this;
  }

  /** The task id, once set (`set({task_id})` or sent). */
  get id(): string | undefined {
    const id = this.options.task_id;
    return typeof id === "string" ? id : undefined;
  }

  /**
   * Celery's dict form; `JSON.stringify(sig)` uses it.
   *
   * @returns The dict.
   */
  toJSON(): SignatureDict {
    return toDict(this as unknown as SignatureDict);
  }

  /**
   * Merges calling options (Celery's names: `queue`, `countdown`, `priority`, `task_id` ...),
   * and `immutable`.
   *
   * @param options The options.
   * @returns This signature.
   */
  set(options: Record<string, unknown> & { immutable?: boolean }): this {
    const { immutable, ...rest } = options;
    if (immutable !== undefined) this.immutable = immutable;
    Object.assign(this.options, rest);
    return this;
  }

  /**
   * Stamps the signature (Celery 5.3+ `Signature.stamp(**headers)`): each stamp is written
   * into the options of every task it reaches, named by `stamped_headers`, and goes out in
   * the `stamped_headers`/`stamps` headers of each message sent from them, so a worker sees
   * it as `this.stamps` and the follow-ups sent from stamped signatures (the next chain step,
   * links, errbacks) carry it too. As Celery: a chain or group stamps its tasks, a task its
   * links and errbacks as well; a chord stamps its header tasks and links but not its body
   * (Celery stamps a chord body only through a visitor: stamp the body yourself). A stamp
   * already set is replaced, except that a list stamp is extended by the list already there.
   * Visitors (`StampingVisitor`) are not supported.
   *
   * @param stamps Stamp name → JSON value.
   * @returns This signature.
   * @throws {TypeError} When `stamps` is not a plain object.
   * @example
   * ```ts
   * import { signature } from "@celeriac/celeriac";
   * const sig = signature("tasks.add", [1, 2]).stamp({ monitoring_id: "m-1" });
   * console.assert(sig.options.monitoring_id === "m-1");
   * console.assert(JSON.stringify(sig.options.stamped_headers) === '["monitoring_id"]');
   * ```
   */
  stamp(stamps: Record<string, unknown>): this {
    if (!isObject(stamps)) {
      throw new TypeError(`Cannot stamp ${this.task}: stamps must be an object of name → value`);
    }
    stampInto(this, stamps);
    return this;
  }

  /**
   * Makes the signature immutable or not.
   *
   * @param immutable Whether a parent's result is ignored.
   * @returns This signature.
   */
  setImmutable(immutable: boolean): this {
    this.immutable = immutable;
    return this;
  }

  /**
   * A copy, optionally with partial arguments: `args` are prepended and `kwargs` merged
   * (unless immutable), `options` merged.
   *
   * @param args Arguments to prepend.
   * @param kwargs Keyword arguments to merge.
   * @param options Options to merge.
   * @returns The copy, of the same canvas type.
   */
  clone(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: Record<string, unknown> = {},
  ): this {
    const d = this.toJSON();
    if (!d.immutable) {
      d.args = [...args, ...d.args];
      d.kwargs = { ...d.kwargs, ...kwargs };
    }
    d.options = { ...d.options, ...options };
    return fromDict(d, this.#app) as this;
  }

  /**
   * Adds a callback: sent with this task's result prepended when it succeeds.
   *
   * @param callback The callback signature.
   * @returns This signature.
   */
  link(callback: SignatureLike): this {
    this.options.link = [...listOption(this.options.link), callback];
    return this;
  }

  /**
   * Adds an errback: sent with the failed task's id prepended when it fails.
   *
   * @param errback The errback signature.
   * @returns This signature.
   */
  linkError(errback: SignatureLike): this {
    this.options.link_error = [...listOption(this.options.link_error), errback];
    return this;
  }

  /**
   * Same as {@linkcode Signature.linkError}.
   *
   * @param errback The errback signature.
   * @returns This signature.
   */
  onError(errback: SignatureLike): this {
    return this.linkError(errback);
  }

  /**
   * Sends with positional arguments (prepended to the stored ones).
   *
   * @param args Partial arguments.
   * @returns The result handle.
   */
  delay(...args: unknown[]): Promise<Res> {
    return this.applyAsync(args);
  }

  /**
   * Runs the signature, or the whole canvas, in this process now (Celery's `apply()`):
   * every step of a chain, every member of a group, a chord's header then its body,
   * callbacks and errbacks, with the signals a worker gives. Nothing is published.
   *
   * @param args Partial arguments, prepended unless immutable.
   * @param kwargs Keyword arguments merged into the stored ones.
   * @param options The result's id, and `app`.
   * @returns The eager result: `get()` gives the task's (the chain's last, the chord body's)
   * value, or the group's list of values; `handle()` the result graph.
   * @throws {TypeError} When no app is bound or given.
   * @example
   * ```ts
   * import { App, chain } from "@celeriac/celeriac";
   * await using app = new App({ broker: "memory://", backend: "memory://" });
   * const add = app.task("tasks.add", (x: number, y: number) => x + y);
   * console.assert((await chain(add.s(1, 2), add.s(10)).apply().get()) === 13);
   * ```
   */
  apply(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: CanvasApplyOptions = {},
  ): EagerResult<R> {
    const app = options.app ?? this.getApp();
    if (!app) {
      throw new TypeError(`Cannot run ${this.task}: the signature has no app (pass options.app)`);
    }
    const run = options.taskId === undefined ? {} : { taskId: options.taskId };
    return app.applyCanvasEager<R>(this.toJSON(), args, kwargs, run);
  }

  /**
   * Sends the signature (a task, or a whole canvas).
   *
   * @param args Partial arguments, prepended unless immutable.
   * @param kwargs Keyword arguments merged into the stored ones.
   * @param options Call options (`taskId`, `queue`, `countdown` ...) and `app`.
   * @returns The result handle: for a chain the last task's (with `parent` links), for a
   * chord the body's, for a group a `GroupResult`.
   * @throws {TypeError} When no app is bound or given.
   */
  applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: CanvasSendOptions = {},
  ): Promise<Res> {
    const { app: given, ...send } = options;
    const app = given ?? this.getApp();
    if (!app) {
      return Promise.reject(
        new TypeError(`Cannot send ${this.task}: the signature has no app (pass options.app)`),
      );
    }
    return app.sendSignature(this.toJSON(), args, kwargs, send) as Promise<Res>;
  }
}

/**
 * Builds a signature, as Celery's `signature()`.
 *
 * @param task A task (binds its app) or a task name.
 * @param args Positional arguments.
 * @param kwargs Keyword arguments.
 * @param options Calling options with Celery's keys (`task_id`, `queue`, `countdown` ...).
 * @returns The signature.
 * @example
 * ```ts
 * import { signature } from "@celeriac/celeriac";
 * const sig = signature("tasks.add", [2]);
 * console.assert(sig.task === "tasks.add" && sig.immutable === false);
 * ```
 */
export function signature<R = unknown>(
  task: string | TaskLike,
  args: unknown[] = [],
  kwargs: Record<string, unknown> = {},
  options: Record<string, unknown> = {},
): Signature<R> {
  const name = typeof task === "string" ? task : task.name;
  if (typeof name !== "string" || name === "") {
    throw new TypeError(`Cannot build a signature: the task name must be a non-empty string`);
  }
  if (!Array.isArray(args)) {
    throw new TypeError(`Cannot build a signature of ${name}: args must be an array`);
  }
  return new Signature<R>(
    { task: name, args, kwargs, options, subtask_type: null, immutable: false },
    typeof task === "string" ? undefined : task.app,
  );
}
