/**
 * Celery's builtin canvas tasks, registered on every App so a celeriac worker runs what a
 * Python client sends: `celery.map`, `celery.starmap` and `celery.chunks`.
 *
 * @module
 */

import type { AppContext } from "../app_context.ts";
import { boundedRepr } from "../protocol/repr.ts";
import { isSignatureLike, type SignatureLike, toDict } from "./signature.ts";

// The app a builtin runs with: the running task's (an eager context in `apply()`), else the
// one it is registered on.
const appOf = (self: unknown, fallback: AppContext): AppContext => {
  const app = (self as { app?: AppContext } | undefined)?.app;
  return app && typeof app.sendSignature === "function" ? app : fallback;
};

function taskName(app: AppContext, sig: unknown, builtin: string): string {
  if (!isSignatureLike(sig)) {
    throw new TypeError(`${builtin}: task must be a signature, got ${boundedRepr(sig)}`);
  }
  const name = sig.task;
  if (!app.tasks.has(name)) {
    throw new TypeError(`${builtin}: task ${name} is not registered on this worker`);
  }
  return name;
}

async function runEach(
  app: AppContext,
  builtin: string,
  task: unknown,
  it: unknown,
  star: boolean,
) {
  const name = taskName(app, task, builtin);
  if (!Array.isArray(it)) throw new TypeError(`${builtin}: it must be a list`);
  const out: unknown[] = [];
  for (const item of it) {
    if (star && !Array.isArray(item)) {
      throw new TypeError(`${builtin}: every item must be an argument list`);
    }
    out.push(await app.applyEager(name, star ? item as unknown[] : [item], {}).get());
  }
  return out;
}

/** The App as the built-ins see it: the context, plus registering a task. */
export interface BuiltinsHost extends AppContext {
  /** Registers a task. */
  task(
    name: string,
    // deno-lint-ignore no-explicit-any
    fn: (this: any, ...args: any[]) => unknown,
    options?: { params?: string[] },
  ): unknown;
}

/**
 * Registers `celery.map`, `celery.starmap` and `celery.chunks` on an app (the App
 * constructor does this).
 *
 * @param app The app.
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * console.assert(app.tasks.has("celery.map") && app.tasks.has("celery.chunks"));
 * await app.close();
 * ```
 */
export function registerBuiltins(app: BuiltinsHost): void {
  app.task(
    "celery.map",
    function (task: SignatureLike, it: unknown[]) {
      return runEach(appOf(this, app), "celery.map", task, it, false);
    },
    { params: ["task", "it"] },
  );
  app.task(
    "celery.starmap",
    function (task: SignatureLike, it: unknown[][]) {
      return runEach(appOf(this, app), "celery.starmap", task, it, true);
    },
    { params: ["task", "it"] },
  );
  app.task("celery.chunks", async function (task: SignatureLike, it: unknown[][], n: number) {
    if (!isSignatureLike(task)) throw new TypeError("celery.chunks: task must be a signature");
    const chunks = {
      task: "celery.chunks",
      args: [],
      kwargs: { task: toDict(task), it, n },
      options: {},
      subtask_type: "chunks",
      immutable: true,
    };
    const result = await appOf(this, app).sendSignature(chunks, [], {}, {});
    // Celery returns the GroupResult; as JSON, its result tuple.
    return "asTuple" in result ? result.asTuple() : result;
  }, { params: ["task", "it", "n"] });
  // Task.replace() with a group: the chord body that hands the group's results over.
  app.task("celery.accumulate", (...args: unknown[]) => {
    const options = args.at(-1);
    const index = options && typeof options === "object" && !Array.isArray(options)
      ? (options as { index?: unknown }).index
      : undefined;
    const values = typeof index === "number" ? args.slice(0, -1) : args;
    return typeof index === "number" ? values[index] : values;
  }, { params: [] });
}
