/**
 * Eager runs: a task, or a whole canvas, run in this process as a worker would run it. One
 * task's run follows the worker's data path (`request.ts`): run the function, store the
 * outcome, send the follow-ups (callbacks, the next chain step, chord parts, errbacks) with
 * the same {@linkcode FollowUps}, and dispatch the same signals. Follow-ups are "sent"
 * through an eager context, so they run here too, recursively, until the canvas is done.
 *
 * @module
 */

import type { AppContext } from "../app_context.ts";
import type { Backend, ResultMeta } from "../backends/backend.ts";
import { MemoryBackend } from "../backends/memory.ts";
import { applySignature, type ResultNode } from "../canvas/apply.ts";
import { TimeLimitExceeded, WorkerLostError } from "../errors.ts";
import { errorToInfo, type ExceptionInfo, shapeToInfo } from "../protocol/exceptions.ts";
import {
  decodeTask,
  type Message,
  type SignatureDict,
  type TaskRequest,
} from "../protocol/message.ts";
import { makeMeta } from "../protocol/result_meta.ts";
import { PROPAGATE_STATES } from "../protocol/states.ts";
import { AsyncResult, EagerResult, GroupResult, type RevokeOptions } from "../result.ts";
import { AppEvent } from "../signals.ts";
import type { SendOptions } from "../task_options.ts";
import { execute, recordChild, sendingCanvas } from "./execute.ts";
import { FollowUps } from "./follow_ups.ts";
import type { Outcome, RequestContext } from "./outcome.ts";

/** What an eager run needs of the App: its context, signals and logger. */
export interface EagerHost extends AppContext {
  /** Dispatches signals (`taskPrerun`, `taskSuccess` ...). */
  dispatchEvent(event: Event): boolean;
  /** Logs follow-ups that could not be sent. */
  readonly logger: { error(message: string): void };
}

/** Builds the message `sendTask` would publish (its id, lineage, embed). */
export type ComposeMessage = (
  name: string,
  args: readonly unknown[],
  kwargs: Record<string, unknown>,
  options: SendOptions,
) => { id: string; message: Message };

const hostName = (): string => {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
};

/**
 * The final meta of one eager run's outcome, as the worker would store it.
 *
 * @param req The request.
 * @param outcome The outcome.
 * @returns The meta.
 */
export function eagerMeta(req: Pick<TaskRequest, "id" | "parentId" | "group">, outcome: Outcome) {
  const id = req.id;
  const lineage = { parentId: req.parentId, groupId: req.group };
  switch (outcome.kind) {
    case "success": {
      const meta = makeMeta(id, "SUCCESS", outcome.value, lineage);
      meta.children = outcome.children ?? [];
      return meta;
    }
    case "retry":
      return makeMeta(id, "RETRY", outcome.error ? shapeToInfo(outcome.error) : null, lineage);
    case "failure": {
      const meta = makeMeta(id, "FAILURE", shapeToInfo(outcome.error), {
        ...lineage,
        traceback: outcome.error.stack,
      });
      meta.children = outcome.children ?? [];
      return meta;
    }
    case "lost":
    case "reject":
      return makeMeta(id, "FAILURE", shapeToInfo(outcome.error), {
        ...lineage,
        traceback: outcome.error.stack,
      });
    case "ignore":
      return makeMeta(id, "IGNORED", null);
    case "timeout":
      return makeMeta(id, "FAILURE", errorToInfo(new TimeLimitExceeded(outcome.seconds)), lineage);
    case "unstarted":
      // Only a worker's pool hands runs back; an eager run always starts.
      return makeMeta(id, "FAILURE", errorToInfo(new WorkerLostError("not started")), lineage);
  }
}

/**
 * Runs one task request here and now: retries at once (as Celery's eager retries, without
 * waiting for the countdown), then, when `backend` is given, stores the result and sends the
 * follow-ups through `host` (which runs them eagerly in turn). Never throws for a task error.
 *
 * @param host The app (or an eager context) to run and send with.
 * @param backend Where results and chord parts go; `null` stores nothing and sends no
 * follow-ups (`Task.apply()`).
 * @param req The request, as a worker would decode it.
 * @returns The final meta.
 */
export async function runEager(
  host: EagerHost,
  backend: Backend | null,
  req: TaskRequest,
): Promise<ResultMeta> {
  const { id, name, args, kwargs } = req;
  const hostname = hostName();
  const signal = new AbortController().signal;
  const event = (type: string, detail: Record<string, unknown>) =>
    host.dispatchEvent(new AppEvent(type as "taskPrerun", detail as never));
  const followUps = backend ? new FollowUps({ app: host, backend, logger: host.logger }) : null;
  const options = host.tasks.get(name)?.options ?? {};
  const ignoreResult = req.ignoreResult || (options.ignoreResult ?? false);
  const storeErrors = !ignoreResult || (options.storeErrorsEvenIfIgnored ?? false);
  const store = async (meta: ResultMeta) => {
    const wanted = meta.status === "FAILURE" ? storeErrors : !ignoreResult;
    if (backend && wanted) await backend.store(id, meta, { replyTo: req.replyTo });
  };
  for (let retries = req.retries;; retries++) {
    const context: RequestContext = {
      id,
      name,
      retries,
      rootId: req.rootId,
      parentId: req.parentId,
      group: req.group,
      groupIndex: req.groupIndex,
      eta: null,
      expires: null,
      headers: req.headers,
      deliveryInfo: { queue: "", redelivered: false, deliveryCount: 1, priority: req.priority },
      hostname,
      isEager: true,
      replyTo: req.replyTo,
      embed: req.embed,
    };
    event("taskPrerun", { id, name, hostname, args, kwargs });
    const outcome = await execute(
      host,
      { id, name, args, kwargs, context },
      signal,
      (state, meta) => store(makeMeta(id, state, meta)),
    );
    let meta = eagerMeta(req, outcome);
    const base = { id, name, hostname };
    if (outcome.kind === "retry") {
      const reason = outcome.error ? shapeToInfo(outcome.error) : null;
      const eta = new Date(Date.now() + (outcome.countdown ?? 0) * 1000);
      const traceback = outcome.error?.stack ?? null;
      event("taskRetry", { ...base, eta, retries, reason, traceback });
      event("taskPostrun", { ...base, state: "RETRY" });
      continue;
    }
    if (outcome.kind === "success") {
      if (followUps) {
        // Sent before the result is stored, as the worker does, so `children` lists them.
        const sent = await sendingCanvas.run(true, () => followUps.succeeded(req, outcome.value));
        meta.children = [...meta.children, ...sent];
      }
      try {
        await store(meta);
      } catch (error) {
        const exc: ExceptionInfo = {
          exc_type: "EncodeError",
          exc_message: [(error as Error).message],
          exc_module: "kombu.exceptions",
        };
        meta = makeMeta(id, "FAILURE", exc, { parentId: req.parentId, groupId: req.group });
      }
    }
    if (meta.status === "SUCCESS") {
      if (followUps) {
        await sendingCanvas.run(true, () => followUps.chordPart(req, "SUCCESS", meta.result));
      }
      event("taskSuccess", {
        ...base,
        result: meta.result,
        runtime: outcome.kind === "success" ? outcome.runtime : 0,
      });
    } else if (meta.status === "FAILURE") {
      if (outcome.kind !== "success") await store(meta).catch(() => {});
      event("taskFailure", { ...base, exception: meta.result, traceback: meta.traceback });
      if (followUps) {
        const exc = meta.result as ExceptionInfo;
        await sendingCanvas.run(true, async () => {
          await followUps.chordPart(req, "FAILURE", exc);
          await followUps.failed(req, exc, meta.traceback);
        });
      }
    }
    event("taskPostrun", { ...base, state: meta.status });
    return meta;
  }
}

/**
 * An {@linkcode AppContext} whose `sendTask` runs the task here, storing results in its own
 * backend (by default a private in-memory one), so a canvas sent through it runs to the end
 * in this process. `Signature.apply()` uses one per call.
 */
export class EagerContext implements EagerHost {
  readonly #host: EagerHost;
  readonly #backend: Backend;
  readonly #compose: ComposeMessage;

  /**
   * Creates the context.
   *
   * @param host The app: its tasks, configuration and signals.
   * @param compose Builds a task message as the app's `sendTask` would.
   * @param backend Where results go.
   */
  constructor(
    host: EagerHost,
    compose: ComposeMessage,
    backend: Backend = new MemoryBackend(`memory://eager-${crypto.randomUUID()}`),
  ) {
    this.#host = host;
    this.#compose = compose;
    this.#backend = backend;
  }

  /** The app's id. */
  get oid(): string {
    return this.#host.oid;
  }

  /** The app's configuration. */
  get conf(): AppContext["conf"] {
    return this.#host.conf;
  }

  /** The app's tasks. */
  get tasks(): AppContext["tasks"] {
    return this.#host.tasks;
  }

  /** The app's logger. */
  get logger(): EagerHost["logger"] {
    return this.#host.logger;
  }

  /**
   * Dispatches a signal on the app.
   *
   * @param event The signal.
   * @returns As `EventTarget.dispatchEvent`.
   */
  dispatchEvent(event: Event): boolean {
    return this.#host.dispatchEvent(event);
  }

  /**
   * The app's broker (nothing is published through it here).
   *
   * @returns The broker.
   */
  getBroker(): ReturnType<AppContext["getBroker"]> {
    return this.#host.getBroker();
  }

  /**
   * This context's backend.
   *
   * @returns The backend.
   */
  getBackend(): Promise<Backend> {
    return Promise.resolve(this.#backend);
  }

  /**
   * Runs a task here, with its follow-ups.
   *
   * @param name Task name.
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param options Call options.
   * @returns The handle, already ready.
   */
  async sendTask<R = unknown>(
    name: string,
    args: readonly unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SendOptions = {},
  ): Promise<AsyncResult<R>> {
    const { id, message } = this.#compose(name, args, kwargs, options);
    const result = new AsyncResult<R>(id, this);
    recordChild(result);
    await runEager(this, this.#backend, decodeTask(message));
    return result;
  }

  /**
   * Runs a task here without storing anything.
   *
   * @param name Task name.
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param options `taskId`.
   * @returns The eager result.
   */
  applyEager<R = unknown>(
    name: string,
    args: unknown[],
    kwargs: Record<string, unknown>,
    options: Pick<SendOptions, "taskId"> = {},
  ): EagerResult<R> {
    return this.#host.applyEager<R>(name, args, kwargs, options);
  }

  /**
   * Runs a canvas here, in this context.
   *
   * @param sig The canvas.
   * @param prepend Arguments put first.
   * @param kwargs Keyword arguments merged.
   * @param options `taskId`.
   * @returns The eager result.
   */
  applyCanvasEager<R = unknown>(
    sig: SignatureDict,
    prepend: unknown[],
    kwargs: Record<string, unknown>,
    options: Pick<SendOptions, "taskId"> = {},
  ): EagerResult<R> {
    return applyCanvasEager<R>(this, sig, prepend, kwargs, options);
  }

  /**
   * Runs a canvas here (what `applyAsync()` of a signature calls).
   *
   * @param sig The canvas.
   * @param prepend Arguments put first.
   * @param kwargs Keyword arguments merged.
   * @param options Call options.
   * @returns The handle.
   */
  sendSignature(
    sig: SignatureDict,
    prepend: unknown[],
    kwargs: Record<string, unknown>,
    options: SendOptions,
  ): Promise<AsyncResult | GroupResult> {
    return sendSignatureAsChild(this, sig, prepend, kwargs, options);
  }

  /**
   * Nothing to revoke: eager tasks have run already.
   *
   * @param _taskId The task.
   * @param _options Unused.
   * @returns At once.
   */
  revoke(_taskId: string | string[], _options?: RevokeOptions): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Nothing to revoke: eager tasks have run already.
   *
   * @param _headers The stamps.
   * @param _options Unused.
   * @returns At once.
   */
  revokeByStampedHeaders(
    _headers: Record<string, unknown>,
    _options?: RevokeOptions,
  ): Promise<void> {
    return Promise.resolve();
  }
}

// The meta an eager canvas ends with: a task's (or a chain's last, or a chord body's) stored
// meta; for a group, the list of its members' values, or the first failure among them.
async function finalMeta(ctx: AppContext, node: ResultNode): Promise<ResultMeta> {
  const backend = await ctx.getBackend();
  if (node instanceof GroupResult) {
    const metas = await Promise.all(node.results.map((r) => backend.get(r.id)));
    const failed = metas.find((m) => m && PROPAGATE_STATES.has(m.status));
    if (failed) return failed;
    const meta = makeMeta(node.id, "SUCCESS", metas.map((m) => m?.result ?? null));
    meta.children = node.results.map((r) => r.asTuple());
    return meta;
  }
  return await backend.get(node.id) ?? makeMeta(node.id, "PENDING", null);
}

/**
 * Runs a signature or a whole canvas in `ctx` (an eager context, or an app with
 * `taskAlwaysEager`), and returns its eager result. The id is known at once: the task's,
 * the chain's last step's, the chord body's, or the group's.
 *
 * @param ctx The context whose `sendTask` runs tasks here.
 * @param sig The canvas, in dict form.
 * @param prepend Arguments put first (unless immutable).
 * @param kwargs Keyword arguments merged.
 * @param options `taskId`.
 * @returns The eager result; `handle()` gives the result graph.
 */
export function applyCanvasEager<R = unknown>(
  ctx: AppContext,
  sig: SignatureDict,
  prepend: unknown[],
  kwargs: Record<string, unknown>,
  options: Pick<SendOptions, "taskId"> = {},
): EagerResult<R> {
  const own = sig.options?.task_id;
  const id = options.taskId ?? (typeof own === "string" ? own : crypto.randomUUID());
  const node = sendingCanvas.run(
    true,
    () => applySignature(ctx, sig, { prepend, kwargs, send: { taskId: id } }),
  );
  return new EagerResult<R>(id, node.then((n) => finalMeta(ctx, n)), node);
}

/**
 * Sends a canvas for an {@linkcode AppContext} (the App's and the eager context's
 * `sendSignature`): a canvas send, recorded as a child of the running task.
 *
 * @param ctx The context that sends.
 * @param sig The canvas.
 * @param prepend Arguments put first.
 * @param kwargs Keyword arguments merged.
 * @param options Call options.
 * @returns The handle.
 */
export async function sendSignatureAsChild(
  ctx: AppContext,
  sig: SignatureDict,
  prepend: unknown[],
  kwargs: Record<string, unknown>,
  options: SendOptions,
): Promise<AsyncResult | GroupResult> {
  const node = await sendingCanvas.run(
    true,
    () => applySignature(ctx, sig, { prepend, kwargs, send: options }),
  );
  recordChild(node);
  return node;
}
