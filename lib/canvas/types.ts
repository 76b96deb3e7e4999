/**
 * The canvas types: {@linkcode Chain}, {@linkcode Group}, {@linkcode Chord} and the map
 * family ({@linkcode XMap}, {@linkcode XStarmap}, {@linkcode Chunks}), with the builders
 * `chain()`, `group()`, `chord()`, `xmap()`, `xstarmap()`, `chunks()` and Celery's `|`
 * rules as {@linkcode pipe}. Their JSON is Celery's dict form (`celery.chain` with
 * `kwargs.tasks`, `celery.group` with `kwargs.tasks`, `celery.chord` with
 * `kwargs.header`/`kwargs.body`, `celery.chunks`/`celery.map`/`celery.starmap`).
 *
 * @module
 */

import type { AppContext } from "../app_context.ts";
import type { SignatureDict } from "../protocol/message.ts";
import type { AsyncResult, EagerResult, GroupResult } from "../result.ts";
import {
  type CanvasApplyOptions,
  type CanvasSendOptions,
  fromDict,
  registerSignatureType,
  Signature,
  type SignatureLike,
  type TaskLike,
} from "./signature.ts";

/** The value type of a signature: `R` of `Signature<R>`, `unknown` for a plain dict. */
export type ResultOf<S> = S extends Signature<infer R, infer _Res> ? R : unknown;

/** The handle `applyAsync()` gives for a signature (a `GroupResult` for a group). */
export type HandleOf<S> = S extends Signature<infer _R, infer Res> ? Res
  : AsyncResult | GroupResult;

/** The values of a list of signatures: a tuple for a tuple, an array for an array. */
export type ResultsOf<S extends readonly unknown[]> = { -readonly [K in keyof S]: ResultOf<S[K]> };

/** The last element of a tuple (or the element type of an array). */
export type LastOf<S extends readonly unknown[]> = S extends readonly [...unknown[], infer L] ? L
  : S[number];

const asSig = (s: SignatureLike): Signature<unknown, unknown> =>
  s instanceof Signature ? s : fromDict(s);

const members = (v: unknown): Signature<unknown, unknown>[] =>
  (Array.isArray(v) ? v : []).map((s) => asSig(s as SignatureLike));

/**
 * A chain: each task runs after the previous one, with its result prepended. Build with
 * {@linkcode chain} or {@linkcode pipe}.
 */
export class Chain<R = unknown, Res = AsyncResult<R>> extends Signature<R, Res> {
  /** The steps, in order. */
  get tasks(): Signature<unknown, unknown>[] {
    return members(this.kwargs.tasks);
  }
}

/**
 * A group: tasks run in parallel; `applyAsync()` gives a `GroupResult`. `T` is the list of
 * the members' values (a tuple when the members are typed).
 */
export class Group<T extends unknown[] = unknown[]>
  extends Signature<T, GroupResult<T[number], T>> {
  /** The members. */
  get tasks(): Signature<unknown, unknown>[] {
    return members(this.kwargs.tasks);
  }
}

/** A chord: a header group, and a body called with the list of the header's results. */
export class Chord<R = unknown, Res = AsyncResult<R>> extends Signature<R, Res> {
  /** The header members. */
  get header(): Signature<unknown, unknown>[] {
    const h = this.kwargs.header;
    if (Array.isArray(h)) return members(h);
    return h ? (asSig(h as SignatureLike) as Group).tasks : [];
  }

  /** The body. */
  get body(): Signature<unknown, unknown> {
    return asSig(this.kwargs.body as SignatureLike);
  }
}

registerSignatureType("chain", Chain);
registerSignatureType("group", Group);
registerSignatureType("chord", Chord);

function canvasDict(task: string, kwargs: Record<string, unknown>, type: string | null) {
  return {
    task,
    args: [],
    kwargs,
    options: {},
    subtask_type: type,
    immutable: type === null,
  } as SignatureDict;
}

const appOf = (sigs: Signature<unknown, unknown>[]): AppContext | undefined => {
  for (const s of sigs) {
    const app = s.getApp();
    if (app) return app;
  }
  return undefined;
};

function makeChain(tasks: Signature<unknown, unknown>[]): Chain {
  return new Chain(canvasDict("celery.chain", { tasks }, "chain"), appOf(tasks));
}

function unrollGroup(g: Group): Signature<unknown, unknown> {
  const tasks = g.tasks;
  return tasks.length === 1 ? tasks[0]! : g;
}

/**
 * Combines two signatures as Celery's `a | b` does: task | task gives a chain, chain | task
 * extends it, group | task (or a chain ending in a group, then a task) gives a chord, chord |
 * task extends the chord's body.
 *
 * @param a The left side.
 * @param b The right side.
 * @returns The combined canvas.
 * @example
 * ```ts
 * import { pipe, signature } from "@celeriac/celeriac";
 * const c = pipe(signature("tasks.add", [1, 1]), signature("tasks.add", [2]));
 * console.assert(c.subtask_type === "chain");
 * ```
 */
export function pipe(
  a: SignatureLike,
  b: SignatureLike,
): Signature<unknown, AsyncResult | GroupResult> {
  return pipeAny(a, b) as Signature<unknown, AsyncResult | GroupResult>;
}

function pipeAny(a: SignatureLike, b: SignatureLike): Signature<unknown, unknown> {
  const left = asSig(a);
  const right = asSig(b);
  const out = pipeSigs(left, right);
  // Nested members are kept as dicts: keep the first app found on either side.
  const app = out.getApp() ?? left.getApp() ?? right.getApp();
  return app ? out.bind(app) : out;
}

function pipeSigs(
  left: Signature<unknown, unknown>,
  right: Signature<unknown, unknown>,
): Signature<unknown, unknown> {
  if (left instanceof Chain) {
    const tasks = left.tasks;
    if (right instanceof Group) {
      const other = unrollGroup(right);
      return tasks.length ? makeChain([...tasks, other]) : other;
    }
    if (right instanceof Chain) return makeChain([...tasks, ...right.tasks]);
    const last = tasks.at(-1);
    if (last instanceof Group) return makeChain([...tasks.slice(0, -1), chord(last, right)]);
    if (last instanceof Chord) {
      return makeChain([...tasks.slice(0, -1), chord(last.header, pipeAny(last.body, right))]);
    }
    return makeChain([...tasks, right]);
  }
  if (left instanceof Group) return chord(left, right);
  if (left instanceof Chord && !(right instanceof Group) && !(right instanceof Chain)) {
    const c = chord(left.header, pipeAny(left.body, right));
    c.options = { ...left.options };
    return c;
  }
  if (right instanceof Chain) return makeChain([left, ...right.tasks]);
  if (right instanceof Group) return makeChain([left, unrollGroup(right)]);
  return makeChain([left, right]);
}

/**
 * Chains signatures: each runs after the previous one succeeds, with its result prepended
 * (unless immutable). As in Celery, `chain(group, task)` becomes a chord.
 *
 * The handle `applyAsync()` gives is the last task's, with `parent` links to the earlier
 * ones.
 *
 * @param tasks The steps (signatures, dicts, or one array of them).
 * @returns The chain (or chord).
 * @example
 * ```ts
 * import { chain, signature } from "@celeriac/celeriac";
 * const c = chain(signature("tasks.add", [1, 2]), signature("tasks.mul", [10]));
 * console.assert(c.subtask_type === "chain" && (c.kwargs.tasks as unknown[]).length === 2);
 * ```
 */
export function chain<const S extends readonly SignatureLike[]>(
  tasks: S,
): Signature<ResultOf<LastOf<S>>, HandleOf<LastOf<S>>>;
/**
 * Chains signatures given one by one; the result type is the last step's.
 *
 * @param tasks The steps.
 * @returns The chain (or chord).
 */
export function chain<S extends SignatureLike[]>(
  ...tasks: S
): Signature<ResultOf<LastOf<S>>, HandleOf<LastOf<S>>>;
/**
 * Chains signatures, some given as lists.
 *
 * @param tasks The steps.
 * @returns The chain (or chord).
 */
export function chain(...tasks: (SignatureLike | SignatureLike[])[]): Signature;
export function chain(...tasks: (SignatureLike | readonly SignatureLike[])[]): Signature {
  const flat = tasks.length === 1 && Array.isArray(tasks[0])
    ? tasks[0] as SignatureLike[]
    : (tasks as SignatureLike[]).flat();
  let acc: Signature<unknown, unknown> = makeChain([]);
  for (const t of flat) acc = pipeAny(acc, t);
  return acc as Signature;
}

/**
 * Groups signatures to run in parallel. Every member's message carries the group id
 * (`group` header). `applyAsync()` gives a `GroupResult`.
 *
 * @param tasks The members (signatures, dicts, or one array of them).
 * @returns The group.
 * @example
 * ```ts
 * import { group, signature } from "@celeriac/celeriac";
 * const g = group(signature("tasks.add", [1, 1]), signature("tasks.add", [2, 2]));
 * console.assert(g.subtask_type === "group" && g.tasks.length === 2);
 * ```
 */
export function group<const S extends readonly SignatureLike[]>(tasks: S): Group<ResultsOf<S>>;
/**
 * Groups signatures given one by one; the values are a tuple of the members' types.
 *
 * @param tasks The members.
 * @returns The group.
 */
export function group<S extends SignatureLike[]>(...tasks: S): Group<ResultsOf<S>>;
/**
 * Groups signatures, some given as lists.
 *
 * @param tasks The members.
 * @returns The group.
 */
export function group(...tasks: (SignatureLike | SignatureLike[])[]): Group;
export function group(...tasks: (SignatureLike | readonly SignatureLike[])[]): Group {
  const list =
    (tasks.length === 1 && Array.isArray(tasks[0])
      ? tasks[0] as SignatureLike[]
      : (tasks as SignatureLike[]).flat()).map(asSig);
  return new Group(canvasDict("celery.group", { tasks: list }, "group"), appOf(list));
}

/**
 * A chord: the header tasks run in parallel; when the last one finishes, the body is sent
 * once with the list of their results, in header order. If a header task fails, the body is
 * marked FAILURE with a `ChordError` and its errbacks run; the body's `get()` throws the
 * failing header task's own error, as Celery's (`followParents: false` for the `ChordError`).
 *
 * @param header The header: a group, or a list of signatures.
 * @param body The body.
 * @returns The chord; `applyAsync()` gives the body's handle (its `parent` is the header's
 * `GroupResult`).
 * @example
 * ```ts
 * import { chord, signature } from "@celeriac/celeriac";
 * const c = chord([signature("tasks.add", [1, 1])], signature("tasks.tsum"));
 * console.assert(c.subtask_type === "chord" && c.task === "celery.chord");
 * ```
 */
export function chord<B extends SignatureLike>(
  header: SignatureLike | readonly SignatureLike[],
  body: B,
): Chord<ResultOf<B>, HandleOf<B>> {
  let list: Signature<unknown, unknown>[];
  if (Array.isArray(header)) list = (header as SignatureLike[]).map(asSig);
  else {
    const h = asSig(header as SignatureLike);
    list = h instanceof Group || h instanceof Chain ? h.tasks : [h];
  }
  const b = asSig(body);
  return new Chord(
    canvasDict("celery.chord", { kwargs: {}, header: list, body: b }, "chord"),
    appOf([...list, b]),
  ) as Chord<ResultOf<B>, HandleOf<B>>;
}

function mapDict(name: string, task: SignatureLike | TaskLike, it: unknown[], n?: number) {
  const t = "task" in task && typeof task.task === "string"
    ? asSig(task as SignatureLike)
    : new Signature({
      task: (task as TaskLike).name,
      args: [],
      kwargs: {},
      options: {},
      subtask_type: null,
      immutable: false,
    }, (task as TaskLike).app);
  if (!Array.isArray(it)) throw new TypeError(`Cannot build ${name}: it must be an array`);
  const kwargs: Record<string, unknown> = { task: t, it: [...it] };
  if (n !== undefined) kwargs.n = n;
  return { dict: canvasDict(name, kwargs, null), app: t.getApp() };
}

/** `celery.map`: one task that calls `task(item)` for each item, in one worker. */
export class XMap<R = unknown> extends Signature<R[]> {}

/** `celery.starmap`: one task that calls `task(...item)` for each item, in one worker. */
export class XStarmap<R = unknown> extends Signature<R[]> {}

/** `celery.chunks`: the items split into `n`-sized `celery.starmap` tasks, sent as a group. */
export class Chunks<R = unknown> extends Signature<R[], GroupResult<R[]>> {
  /**
   * The group of `celery.starmap` tasks this sends.
   *
   * @returns The group.
   */
  group(): Group<R[][]> {
    const { task, it, n } = this.kwargs as { task: SignatureLike; it: unknown[]; n: number };
    const parts: Signature<unknown, unknown>[] = [];
    for (let i = 0; i < it.length; i += n) {
      parts.push(xstarmap(asSig(task), it.slice(i, i + n) as unknown[][]));
    }
    const g = group(parts) as Group<R[][]>;
    g.options = { ...this.options };
    const app = this.getApp();
    if (app) g.bind(app);
    return g;
  }

  /**
   * Sends the chunks as a group.
   *
   * @param args Partial arguments (ignored: chunks are immutable).
   * @param kwargs Keyword arguments (ignored).
   * @param options Call options.
   * @returns The group's handle.
   */
  override applyAsync(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: CanvasSendOptions = {},
  ): Promise<GroupResult<R[]>> {
    return this.group().applyAsync(args, kwargs, options);
  }

  /**
   * Runs the chunks as a group, in this process.
   *
   * @param args Partial arguments (ignored: chunks are immutable).
   * @param kwargs Keyword arguments (ignored).
   * @param options The group's id, and `app`.
   * @returns The eager result: one list of values per chunk.
   */
  override apply(
    args: unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: CanvasApplyOptions = {},
  ): EagerResult<R[]> {
    return this.group().apply(args, kwargs, options) as unknown as EagerResult<R[]>;
  }
}

/**
 * `celery.map`: calls `task(item)` for every item inside one worker task.
 *
 * @param task The task (or its signature).
 * @param it The items.
 * @returns The signature; its value is the list of results.
 * @example
 * ```ts
 * import { signature, xmap } from "@celeriac/celeriac";
 * console.assert(xmap(signature("tasks.double"), [1, 2]).task === "celery.map");
 * ```
 */
export function xmap<R = unknown>(task: SignatureLike | TaskLike, it: unknown[]): XMap<R> {
  const { dict, app } = mapDict("celery.map", task, it);
  return new XMap<R>(dict, app);
}

/**
 * `celery.starmap`: calls `task(...item)` for every item inside one worker task.
 *
 * @param task The task (or its signature).
 * @param it The argument lists.
 * @returns The signature; its value is the list of results.
 * @example
 * ```ts
 * import { signature, xstarmap } from "@celeriac/celeriac";
 * console.assert(xstarmap(signature("tasks.add"), [[1, 2]]).task === "celery.starmap");
 * ```
 */
export function xstarmap<R = unknown>(
  task: SignatureLike | TaskLike,
  it: unknown[][],
): XStarmap<R> {
  const { dict, app } = mapDict("celery.starmap", task, it);
  return new XStarmap<R>(dict, app);
}

/**
 * `celery.chunks`: splits the argument lists into `n`-sized `celery.starmap` tasks, sent as a
 * group.
 *
 * @param task The task (or its signature).
 * @param it The argument lists.
 * @param n Items per chunk.
 * @returns The signature; `applyAsync()` gives a `GroupResult` of lists.
 * @throws {RangeError} When `n` is not a positive integer.
 * @example
 * ```ts
 * import { chunks, signature } from "@celeriac/celeriac";
 * const c = chunks(signature("tasks.add"), [[1, 2], [3, 4], [5, 6]], 2);
 * console.assert(c.group().tasks.length === 2);
 * ```
 */
export function chunks<R = unknown>(
  task: SignatureLike | TaskLike,
  it: unknown[][],
  n: number,
): Chunks<R> {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`Cannot split into chunks: n must be a positive integer, got ${n}`);
  }
  const { dict, app } = mapDict("celery.chunks", task, it, n);
  return new Chunks<R>(dict, app);
}
