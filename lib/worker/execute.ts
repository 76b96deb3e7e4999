/**
 * Runs one task function and turns whatever happens into an {@linkcode Outcome}. Used by the
 * inline pool, by the Web Worker entry (`worker.ts`) and by eager `apply()`.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { AppContext, RegisteredTask } from "../app_context.ts";
import { Ignore, NotRegistered, Reject, Retry } from "../errors.ts";
import type { State } from "../protocol/states.ts";
import { backoffCountdown } from "../backoff.ts";
import { matchesError, TaskContext } from "../task.ts";
import { bindArguments, parameterNames } from "./arguments.ts";
import { withHeadersContext } from "../observe/tracing.ts";
import { type Outcome, type RunRequest, toErrorShape } from "./outcome.ts";

/** The task running in the current async context, so that tasks it sends get its ids. */
export const currentTask: AsyncLocalStorage<TaskContext> = new AsyncLocalStorage<TaskContext>();

/**
 * True while a canvas is being sent (or a finished task's follow-ups): the tasks sent inside
 * it are parts of one child, not children of their own of the running task.
 */
export const sendingCanvas: AsyncLocalStorage<boolean> = new AsyncLocalStorage<boolean>();

/**
 * Records a sent task or canvas as a child of the task running in this async context, unless
 * it is a part of a canvas being sent.
 *
 * @param child The handle of what was sent.
 */
export function recordChild(child: { asTuple(): unknown[] }): void {
  if (sendingCanvas.getStore()) return;
  currentTask.getStore()?.addChild(child);
}

const paramCache = new WeakMap<object, (string | null)[]>();

function paramsOf(fn: (...args: never[]) => unknown, explicit?: string[]): (string | null)[] {
  if (explicit) return explicit;
  let names = paramCache.get(fn);
  if (!names) paramCache.set(fn, names = parameterNames(fn));
  return names;
}

/**
 * Runs a task by name and reports the outcome. Never throws.
 *
 * @param app The app whose registry holds the task.
 * @param request What to run.
 * @param signal Aborted on soft time limit, revoke or cold shutdown.
 * @param onState Stores custom states (`updateState`).
 * @returns The outcome.
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * import { execute } from "./execute.ts";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * app.task("t.add", (x: number, y: number) => x + y);
 * const context = {
 *   id: "1", name: "t.add", retries: 0, rootId: "1", parentId: null, group: null,
 *   groupIndex: null, eta: null, expires: null, headers: {}, hostname: "h", isEager: true, replyTo: null,
 *   deliveryInfo: { queue: "celery", redelivered: false, deliveryCount: 1, priority: null },
 * };
 * const outcome = await execute(app, { id: "1", name: "t.add", args: [2], kwargs: { y: 3 }, context },
 *   new AbortController().signal, () => Promise.resolve());
 * console.assert(outcome.kind === "success" && outcome.value === 5);
 * await app.close();
 * ```
 */
export async function execute(
  app: AppContext,
  request: RunRequest,
  signal: AbortSignal,
  onState: (state: State, meta: unknown) => Promise<void>,
): Promise<Outcome> {
  const started = performance.now();
  const runtime = () => (performance.now() - started) / 1000;
  const task = app.tasks.get(request.name);
  if (!task) {
    return {
      kind: "failure",
      error: toErrorShape(new NotRegistered(request.name)),
      runtime: 0,
    };
  }
  const context = new TaskContext(
    app,
    request.context,
    request.args,
    request.kwargs,
    signal,
    onState,
  );
  try {
    const fn = task.fn as (this: TaskContext, ...args: unknown[]) => unknown;
    const args = bindArguments(request.args, request.kwargs, paramsOf(fn, task.options.params));
    // In a Web Worker, the parent's CONSUMER span continues through the run's traceparent.
    const value = await withHeadersContext(
      request.context.headers,
      () => {
        const call = () => currentTask.run(context, () => fn.apply(context, args));
        // A task run from inside an eager canvas send publishes its own sends for real: reset
        // the flag there only (each AsyncLocalStorage layer costs a context switch per task).
        return sendingCanvas.getStore() ? sendingCanvas.run(false, call) : call();
      },
    );
    const children = context.childTuples();
    return children.length
      ? { kind: "success", value, runtime: runtime(), children }
      : { kind: "success", value, runtime: runtime() };
  } catch (thrown) {
    const error = autoretry(task, context, thrown);
    if (error instanceof Retry) {
      return {
        kind: "retry",
        countdown: error.countdown ?? null,
        eta: error.eta?.toISOString() ?? null,
        error: error.cause === undefined ? null : toErrorShape(error.cause),
      };
    }
    if (error instanceof Reject) {
      return { kind: "reject", requeue: error.requeue, error: toErrorShape(error) };
    }
    if (error instanceof Ignore) return { kind: "ignore" };
    const shape = toErrorShape(error);
    if (matchesError(task.options.throws, error)) shape.expected = true;
    const children = context.childTuples();
    return children.length
      ? { kind: "failure", error: shape, runtime: runtime(), children }
      : { kind: "failure", error: shape, runtime: runtime() };
  }
}

// Celery's autoretry (`celery/app/autoretry.py`): an error matching `autoretryFor` (and not
// `dontAutoretryFor`) becomes `retry({exc})`; returns what `retry()` threw (a `Retry`, or the
// error itself once retries run out).
function autoretry(task: RegisteredTask, context: TaskContext, error: unknown): unknown {
  const o = task.options;
  if (
    error instanceof Retry || error instanceof Reject || error instanceof Ignore ||
    !matchesError(o.autoretryFor, error) || matchesError(o.dontAutoretryFor, error)
  ) {
    return error;
  }
  const options: Parameters<TaskContext["retry"]>[0] = { exc: error };
  const kw = o.retryKwargs ?? {};
  if (kw.maxRetries !== undefined) options.maxRetries = kw.maxRetries;
  if (o.retryBackoff) {
    options.countdown = backoffCountdown(context.retries, {
      factor: o.retryBackoff === true ? 1 : o.retryBackoff,
      max: o.retryBackoffMax ?? 600,
      jitter: o.retryJitter ?? true,
    });
  } else if (kw.countdown !== undefined) {
    options.countdown = kw.countdown;
  }
  try {
    context.retry(options);
  } catch (retried) {
    return retried;
  }
  return error;
}
