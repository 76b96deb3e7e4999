/**
 * Sending canvases from their Celery dict form. The same code sends what a client builds
 * (`chain(...).applyAsync()`) and what a worker finds in a message (a callback, the next link
 * of a chain, a chord body), whether celeriac or Python Celery built it.
 *
 * It mirrors `celery/canvas.py`: signatures are first *frozen* (ids assigned, group and
 * chord membership written into the leaves' options, so that the dicts embedded in messages
 * carry them), then sent.
 *
 * @module
 */

import type { AppContext } from "../app_context.ts";
import type { SignatureDict } from "../protocol/message.ts";
import { boundedRepr } from "../protocol/repr.ts";
import { optionStamps, writeStamps } from "../protocol/stamps.ts";
import { AsyncResult, GroupResult } from "../result.ts";
import type { SendOptions } from "../task_options.ts";
import { isSignatureLike, type SignatureLike, toDict } from "./signature.ts";

/** A result handle in a canvas graph. */
export type ResultNode = AsyncResult | GroupResult;

/** Options of {@linkcode applySignature}. */
export interface ApplySignatureOptions {
  /** Arguments prepended unless the signature is immutable (the parent's result). */
  prepend?: unknown[];
  /** Keyword arguments merged unless the signature is immutable. */
  kwargs?: Record<string, unknown>;
  /** Extra send options (parent and root ids, chain, priority ...). */
  send?: SendOptions;
}

interface Ctx {
  prepend: unknown[];
  kwargs: Record<string, unknown>;
  parentId?: string | undefined;
  rootId?: string | undefined;
  priority?: number | undefined;
  chain?: SignatureDict[] | undefined;
}

interface Freeze {
  taskId?: string | undefined;
  groupId?: string | undefined;
  groupIndex?: number | undefined;
  chord?: SignatureDict | undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const list = (v: unknown): SignatureDict[] =>
  (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]).map((s) => {
    if (!isSignatureLike(s)) {
      throw new TypeError(`Cannot use ${boundedRepr(s)} as a signature: it has no task name`);
    }
    return isObject(s) && !("toJSON" in s) && isObject(s.options) ? s as SignatureDict : toDict(s);
  });

function groupDict(tasks: SignatureDict[], options: Record<string, unknown> = {}): SignatureDict {
  return {
    task: "celery.group",
    args: [],
    kwargs: { tasks },
    options,
    subtask_type: "group",
    immutable: false,
  };
}

function chordDict(header: SignatureDict, body: SignatureDict): SignatureDict {
  return {
    task: "celery.chord",
    args: [],
    kwargs: { kwargs: {}, header, body },
    options: {},
    subtask_type: "chord",
    immutable: false,
  };
}

// `celery.chunks` in dict form becomes the group of `celery.starmap` tasks it stands for.
function chunksToGroup(d: SignatureDict): SignatureDict {
  const k = d.kwargs;
  const task = k.task;
  const it = k.it;
  const n = k.n;
  if (!isSignatureLike(task) || !Array.isArray(it) || typeof n !== "number" || n < 1) {
    throw new TypeError(`Cannot send celery.chunks: kwargs must be {task, it: [...], n > 0}`);
  }
  const parts: SignatureDict[] = [];
  for (let i = 0; i < it.length; i += n) {
    parts.push({
      task: "celery.starmap",
      args: [],
      kwargs: { task, it: it.slice(i, i + n) },
      options: {},
      subtask_type: null,
      immutable: true,
    });
  }
  return groupDict(parts, { ...d.options });
}

function kindOf(d: SignatureDict): "chain" | "group" | "chord" | "task" {
  const t = d.subtask_type;
  if (t === "chain" || t === "group" || t === "chord") return t;
  return "task";
}

function normalize(d: SignatureDict): SignatureDict {
  if (d.subtask_type === "chunks" || (d.task === "celery.chunks" && d.subtask_type === null)) {
    // Python's client expands chunks itself; a chunks dict inside a canvas is a plain
    // `celery.chunks` task the worker's builtin expands. Only `subtask_type: "chunks"`
    // (never sent by Celery 5.2) is expanded here.
    return d.subtask_type === "chunks" ? chunksToGroup(d) : d;
  }
  return d;
}

// Group members, with nested groups unrolled (as `group._freeze_unroll`).
function groupMembers(d: SignatureDict): SignatureDict[] {
  const out: SignatureDict[] = [];
  for (const m of list(d.kwargs.tasks).map(normalize)) {
    if (kindOf(m) === "group") out.push(...groupMembers(m));
    else out.push(m);
  }
  d.kwargs.tasks = out;
  return out;
}

// Chain steps: nested chains spliced, a group followed by a step upgraded to a chord.
function chainSteps(d: SignatureDict): SignatureDict[] {
  const flat: SignatureDict[] = [];
  const splice = (tasks: unknown) => {
    for (const t of list(tasks).map(normalize)) {
      if (kindOf(t) === "chain") {
        // A nested chain's own options (link_error) go to its steps first, and its id (a
        // replaced task's) to its last step, as Celery's `chain.freeze(id)`.
        distributeChainOptions(t);
        const own = t.options.task_id;
        const last = list(t.kwargs.tasks).at(-1);
        if (typeof own === "string" && last && typeof last.options.task_id !== "string") {
          last.options.task_id = own;
        }
        splice(t.kwargs.tasks);
      } else flat.push(t);
    }
  };
  splice(d.kwargs.tasks);
  const out: SignatureDict[] = [];
  for (let i = flat.length - 1; i >= 0; i--) {
    const t = flat[i]!;
    out.unshift(kindOf(t) === "group" && out.length ? chordDict(t, out.shift()!) : t);
  }
  d.kwargs.tasks = out;
  return out;
}

function headerOf(d: SignatureDict): SignatureDict {
  let h = d.kwargs.header;
  if (Array.isArray(h)) h = groupDict(list(h));
  else if (isSignatureLike(h)) {
    h = list(h)[0]!;
    if (kindOf(h as SignatureDict) !== "group") h = groupDict(list(h));
  } else h = groupDict([]);
  d.kwargs.header = h;
  return h as SignatureDict;
}

function bodyOf(d: SignatureDict): SignatureDict {
  const b = d.kwargs.body;
  if (!isSignatureLike(b)) throw new TypeError(`Cannot send a chord without a body`);
  const body = normalize(list(b)[0]!);
  d.kwargs.body = body;
  return body;
}

const appendList = (o: Record<string, unknown>, key: string, items: SignatureDict[]) => {
  if (items.length) o[key] = [...list(o[key]), ...items];
};

// A chain's link goes to its last step, its link_error to every step (as Celery).
function distributeChainOptions(d: SignatureDict): void {
  const o = d.options;
  const steps = list(d.kwargs.tasks);
  if (o.link !== undefined && steps.length) appendList(steps.at(-1)!.options, "link", list(o.link));
  if (o.link_error !== undefined) {
    for (const s of steps) appendList(s.options, "link_error", list(o.link_error));
  }
  d.kwargs.tasks = steps;
  delete o.link;
  delete o.link_error;
}

// A chord's link and link_error go to its body (as Celery).
function distributeChordOptions(d: SignatureDict, body: SignatureDict): void {
  const o = d.options;
  if (o.link !== undefined) appendList(body.options, "link", list(o.link));
  if (o.link_error !== undefined) appendList(body.options, "link_error", list(o.link_error));
  delete o.link;
  delete o.link_error;
}

const rootOf = (node: ResultNode): ResultNode => {
  const seen = new Set<ResultNode>();
  while (node.parent && !seen.has(node)) {
    seen.add(node);
    node = node.parent;
  }
  return node;
};

/**
 * Assigns ids to a signature and everything inside it, writes group and chord membership
 * into the leaves' options, and returns the result graph. Idempotent: ids already set are
 * kept.
 */
function freeze(app: AppContext, d: SignatureDict, f: Freeze): ResultNode {
  switch (kindOf(d)) {
    case "chain": {
      distributeChainOptions(d);
      const steps = chainSteps(d);
      if (!steps.length) throw new TypeError("Cannot send an empty chain");
      const last = steps.length - 1;
      const own = typeof d.options.task_id === "string" ? d.options.task_id : undefined;
      let prev: ResultNode | undefined;
      for (let i = 0; i <= last; i++) {
        const node = freeze(app, steps[i]!, i === last ? { ...f, taskId: f.taskId ?? own } : {});
        if (prev) rootOf(node).parent ??= prev;
        prev = node;
      }
      return prev!;
    }
    case "group": {
      const o = d.options;
      const gid = typeof o.task_id === "string" ? o.task_id : f.taskId ?? crypto.randomUUID();
      o.task_id = gid;
      const results: AsyncResult[] = [];
      groupMembers(d).forEach((m, i) => {
        const node = freeze(app, m, {
          groupId: gid,
          chord: f.chord,
          groupIndex: f.chord ? i : undefined,
        });
        if (node instanceof GroupResult) results.push(...node.results);
        else results.push(node);
      });
      return new GroupResult(gid, results, app);
    }
    case "chord": {
      const header = headerOf(d);
      const body = bodyOf(d);
      distributeChordOptions(d, body);
      const own = typeof d.options.task_id === "string" ? d.options.task_id : undefined;
      const bodyResult = freeze(app, body, { ...f, taskId: f.taskId ?? own });
      const headerResult = freeze(app, header, { chord: body });
      rootOf(bodyResult).parent ??= headerResult;
      return bodyResult;
    }
    case "task": {
      const o = d.options;
      if (typeof o.task_id !== "string") o.task_id = f.taskId ?? crypto.randomUUID();
      if (typeof o.reply_to !== "string") o.reply_to = app.oid;
      if (f.groupId && typeof o.group_id !== "string") o.group_id = f.groupId;
      if (f.chord) o.chord = f.chord;
      if (f.groupIndex !== undefined) o.group_index = f.groupIndex;
      return new AsyncResult(o.task_id as string, app);
    }
  }
}

/**
 * How many header results complete a chord: one per task; a group counts its members, a
 * chain its last step, a chord its body (as Celery's `chord._descend`).
 *
 * @param d A header member.
 * @returns The count.
 */
function chordSize(d: SignatureDict): number {
  switch (kindOf(d)) {
    case "group":
      return list(d.kwargs.tasks).reduce((n, m) => n + chordSize(normalize(m)), 0);
    case "chain": {
      const steps = list(d.kwargs.tasks);
      for (let i = steps.length - 1; i >= 0; i--) {
        const n = chordSize(normalize(steps[i]!));
        if (n > 0) return n;
      }
      return 0;
    }
    case "chord":
      return chordSize(normalize(list(d.kwargs.body)[0]!));
    case "task":
      return 1;
  }
}

// Options a group or chord passes down to its members (Celery merges the call's options).
const SHARED = [
  "queue",
  "priority",
  "countdown",
  "eta",
  "expires",
  "headers",
  "time_limit",
  "soft_time_limit",
  "replaced_task_nesting",
];

function share(from: Record<string, unknown>, to: SignatureDict): void {
  for (const k of SHARED) {
    if (from[k] !== undefined && to.options[k] === undefined) to.options[k] = from[k];
  }
  // Stamps a canvas was sent with reach a member that has none of its own (Celery keeps a
  // member's `stamped_headers`, an immutable option, over the call's).
  const stamps = optionStamps(from);
  if (stamps && !Array.isArray(to.options.stamped_headers)) writeStamps(to.options, stamps);
}

// Group/chord membership given to a chain or chord as options goes to its last task (or body).
function membership(d: SignatureDict): Freeze {
  const o = d.options;
  const f: Freeze = {};
  if (typeof o.group_id === "string") f.groupId = o.group_id;
  if (typeof o.group_index === "number") f.groupIndex = o.group_index;
  if (isSignatureLike(o.chord)) f.chord = list(o.chord)[0]!;
  delete o.group_id;
  delete o.group_index;
  delete o.chord;
  return f;
}

const str = (v: unknown) => typeof v === "string" ? v : undefined;

async function sendTask(app: AppContext, d: SignatureDict, ctx: Ctx): Promise<AsyncResult> {
  const o = d.options;
  const args = d.immutable ? [...d.args] : [...ctx.prepend, ...d.args];
  const kwargs = d.immutable ? { ...d.kwargs } : { ...d.kwargs, ...ctx.kwargs };
  const send: SendOptions = {};
  const id = str(o.task_id);
  if (id) send.taskId = id;
  if (str(o.queue)) send.queue = o.queue as string;
  if (typeof o.countdown === "number") send.countdown = o.countdown;
  if (typeof o.eta === "string" || o.eta instanceof Date) send.eta = o.eta;
  if (typeof o.expires === "number" || typeof o.expires === "string" || o.expires instanceof Date) {
    send.expires = o.expires;
  }
  const priority = typeof o.priority === "number" ? o.priority : ctx.priority;
  if (priority !== undefined) send.priority = priority;
  if (isObject(o.headers)) send.headers = o.headers;
  if (typeof o.time_limit === "number") send.timeLimit = o.time_limit;
  if (typeof o.soft_time_limit === "number") send.softTimeLimit = o.soft_time_limit;
  if (o.ignore_result === true) send.ignoreResult = true;
  if (str(o.shadow)) send.shadow = o.shadow as string;
  const link = list(o.link);
  if (link.length) send.link = link;
  const linkError = list(o.link_error);
  if (linkError.length) send.linkError = linkError;
  if (isSignatureLike(o.chord)) send.chord = list(o.chord)[0]!;
  if (str(o.group_id)) send.group = o.group_id as string;
  if (typeof o.group_index === "number") send.groupIndex = o.group_index;
  const chain = ctx.chain ?? (o.chain ? list(o.chain) : undefined);
  if (chain?.length) send.chain = chain;
  const parentId = ctx.parentId ?? str(o.parent_id);
  if (parentId) send.parentId = parentId;
  const rootId = ctx.rootId ?? str(o.root_id);
  if (rootId) send.rootId = rootId;
  // Stamps and the replace nesting travel in the signature's options, as Celery's: so the
  // next step of a stamped chain, a stamped link or chord body is sent with them.
  const stamps = optionStamps(o);
  if (stamps) send.stamps = stamps;
  const nesting = o.replaced_task_nesting;
  if (typeof nesting === "number" && Number.isSafeInteger(nesting) && nesting > 0) {
    send.replacedTaskNesting = nesting;
  }
  return await app.sendTask(d.task, args, kwargs, send);
}

async function send(app: AppContext, d: SignatureDict, ctx: Ctx): Promise<ResultNode> {
  d = normalize(d);
  const lineage = { parentId: ctx.parentId, rootId: ctx.rootId, priority: ctx.priority };
  switch (kindOf(d)) {
    case "task":
      return await sendTask(app, d, ctx);
    case "chain": {
      const node = freeze(app, d, membership(d));
      const steps = list(d.kwargs.tasks);
      const first = steps[0]!;
      share(d.options, first);
      const outer = ctx.chain ?? (d.options.chain ? list(d.options.chain) : []);
      await send(app, first, {
        ...lineage,
        prepend: d.immutable ? [...d.args] : [...ctx.prepend, ...d.args],
        kwargs: ctx.kwargs,
        chain: [...outer, ...steps.slice(1).reverse()],
      });
      return node;
    }
    case "group": {
      const rest = ctx.chain ?? (d.options.chain ? list(d.options.chain) : []);
      if (rest.length) {
        // A group with steps after it is a chord whose body is the next step.
        delete d.options.chain;
        const c = chordDict(d, rest.at(-1)!);
        return await send(app, c, { ...ctx, chain: rest.slice(0, -1) });
      }
      const node = freeze(app, d, {}) as GroupResult;
      for (const m of list(d.kwargs.tasks)) {
        share(d.options, m);
        await send(app, m, { ...lineage, prepend: ctx.prepend, kwargs: ctx.kwargs });
      }
      return node;
    }
    case "chord": {
      const body = bodyOf(d);
      const rest = ctx.chain ?? (d.options.chain ? list(d.options.chain) : []);
      // Steps after a chord follow its body.
      if (rest.length) body.options.chain = rest;
      delete d.options.chain;
      share(d.options, body);
      const node = freeze(app, d, membership(d));
      const header = d.kwargs.header as SignatureDict;
      const members = list(header.kwargs.tasks);
      const gid = header.options.task_id as string;
      const backend = await app.getBackend();
      if (!members.length) {
        await send(app, body, { ...lineage, prepend: [[]], kwargs: {} });
        return node;
      }
      await backend.setChordSize(gid, members.reduce((n, m) => n + chordSize(m), 0));
      const prepend = d.immutable ? [...d.args] : [...ctx.prepend, ...d.args];
      for (const m of members) {
        share(d.options, m);
        await send(app, m, { ...lineage, prepend, kwargs: ctx.kwargs });
      }
      return node;
    }
  }
}

/**
 * Sends a signature or canvas, from its object or Celery dict form.
 *
 * @param app The app to send with.
 * @param sig The signature (task, chain, group, chord, chunks, map, starmap).
 * @param options What to prepend (a parent's result) and extra send options.
 * @returns The result handle: a task's or chain's or chord's `AsyncResult`, a group's
 * `GroupResult`.
 * @throws {TypeError} For a malformed signature.
 * @example
 * ```ts
 * import { App, applySignature, signature } from "@celeriac/celeriac";
 * await using app = new App({ broker: "memory://", backend: "memory://" });
 * const r = await applySignature(app, signature("tasks.add", [2]), { prepend: [1] });
 * console.assert(typeof r.id === "string");
 * ```
 */
export function applySignature(
  app: AppContext,
  sig: SignatureLike,
  options: ApplySignatureOptions = {},
): Promise<ResultNode> {
  const s = options.send ?? {};
  const d = toDict(sig);
  const o = d.options;
  // Options a follow-up is sent with, as Celery's tracer passes them (not signature options).
  const ctx: Ctx = {
    prepend: options.prepend ?? [],
    kwargs: options.kwargs ?? {},
    parentId: s.parentId,
    rootId: s.rootId,
    priority: s.priority,
    chain: s.chain ? list(s.chain) : undefined,
  };
  if (s.taskId) o.task_id = s.taskId;
  if (s.queue) o.queue = s.queue;
  if (s.countdown !== undefined) o.countdown = s.countdown;
  if (s.eta !== undefined) o.eta = s.eta;
  if (s.expires !== undefined) o.expires = s.expires;
  if (s.headers) o.headers = { ...(isObject(o.headers) ? o.headers : {}), ...s.headers };
  if (s.timeLimit !== undefined) o.time_limit = s.timeLimit;
  if (s.softTimeLimit !== undefined) o.soft_time_limit = s.softTimeLimit;
  if (s.ignoreResult !== undefined) o.ignore_result = s.ignoreResult;
  if (s.shadow) o.shadow = s.shadow;
  if (s.link) o.link = [...list(o.link), ...list(s.link)];
  if (s.linkError) o.link_error = [...list(o.link_error), ...list(s.linkError)];
  if (s.group) o.group_id = s.group;
  if (s.groupIndex !== undefined) o.group_index = s.groupIndex;
  if (s.chord) o.chord = s.chord;
  if (s.replacedTaskNesting !== undefined) o.replaced_task_nesting = s.replacedTaskNesting;
  if (s.stamps) {
    // The signature's own stamps win over the call's, as Celery's immutable stamp options.
    const own = optionStamps(o) ?? {};
    const added = Object.keys(s.stamps).filter((k) => !(k in own));
    for (const k of added) o[k] = s.stamps[k];
    o.stamped_headers = [...Object.keys(own), ...added];
  }
  if (kindOf(d) === "group" && (o.link !== undefined || o.link_error !== undefined)) {
    return Promise.reject(
      new TypeError("Cannot add link to group: use a chord, or link the members"),
    );
  }
  return send(app, d, ctx);
}

/**
 * The ids a client may wait on for a signature: a task's id, every step of a chain, every
 * member of a group, a chord's body. Only ids already assigned are returned.
 *
 * @param sig The signature.
 * @returns The leaf task dicts that have an id.
 */
export function leafTasks(sig: SignatureLike): SignatureDict[] {
  const d = normalize(toDict(sig));
  switch (kindOf(d)) {
    case "chain":
      return list(d.kwargs.tasks).flatMap(leafTasks);
    case "group":
      return list(d.kwargs.tasks).flatMap(leafTasks);
    case "chord":
      return isSignatureLike(d.kwargs.body) ? leafTasks(d.kwargs.body) : [];
    case "task":
      return typeof d.options.task_id === "string" ? [d] : [];
  }
}
