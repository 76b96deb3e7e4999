/**
 * Celery's builtin canvas tasks, registered on every App so a celeriac worker runs what a
 * Python client sends: `celery.map`, `celery.starmap` and `celery.chunks`.
 *
 * @module
 */

import type { AppContext } from "../app_context.ts";
import { boundedRepr } from "../protocol/repr.ts";
import { applySignature } from "./apply.ts";
import { isSignatureLike, type SignatureLike, toDict } from "./signature.ts";

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
  // deno-lint-ignore no-explicit-any
  task(name: string, fn: (...args: any[]) => unknown, options?: { params?: string[] }): unknown;
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
    (task: SignatureLike, it: unknown[]) => runEach(app, "celery.map", task, it, false),
    { params: ["task", "it"] },
  );
  app.task(
    "celery.starmap",
    (task: SignatureLike, it: unknown[][]) => runEach(app, "celery.starmap", task, it, true),
    { params: ["task", "it"] },
  );
  app.task("celery.chunks", async (task: SignatureLike, it: unknown[][], n: number) => {
    if (!isSignatureLike(task)) throw new TypeError("celery.chunks: task must be a signature");
    const chunks = {
      task: "celery.chunks",
      args: [],
      kwargs: { task: toDict(task), it, n },
      options: {},
      subtask_type: "chunks",
      immutable: true,
    };
    const result = await applySignature(app, chunks);
    // Celery returns the GroupResult; as JSON, its result tuple.
    return "asTuple" in result ? result.asTuple() : result;
  }, { params: ["task", "it", "n"] });
}
