/**
 * What the modules below the App (tasks, canvas, results, remote control, the task runner)
 * need of it. The App implements this interface; they take it instead of the App class, so
 * the module graph stays acyclic and each of them can be read without the App.
 *
 * @module
 */

import type { Backend } from "./backends/backend.ts";
import type { Broker } from "./brokers/broker.ts";
import type { SignatureDict } from "./protocol/message.ts";
import type { AsyncResult, EagerResult, GroupResult, RevokeOptions } from "./result.ts";
import type { SendOptions, TaskOptions } from "./task_options.ts";

/** A registered task as the runner sees it: its name, function and options. */
export interface RegisteredTask {
  /** The registered name. */
  readonly name: string;
  /** The function (called with the task context as `this`). */
  // deno-lint-ignore no-explicit-any
  readonly fn: (...args: any[]) => unknown;
  /** The task's options. */
  readonly options: Readonly<TaskOptions>;
}

/** The App, as tasks, canvas, results and remote control see it. */
export interface AppContext {
  /** This app's id, used as the `reply_to` of rpc:// results. */
  readonly oid: string;
  /** The part of the configuration they read. */
  readonly conf: { readonly defaultQueue: string };
  /** Registered tasks by name. */
  readonly tasks: ReadonlyMap<string, RegisteredTask>;
  /** The broker, connected on first use. */
  getBroker(): Promise<Broker>;
  /** The result backend, connected on first use. */
  getBackend(): Promise<Backend>;
  /** Sends a task by name. */
  sendTask<R = unknown>(
    name: string,
    args?: readonly unknown[],
    kwargs?: Record<string, unknown>,
    options?: SendOptions,
  ): Promise<AsyncResult<R>>;
  /** Runs a task in this process now (`apply()`). */
  applyEager<R = unknown>(
    name: string,
    args: unknown[],
    kwargs: Record<string, unknown>,
    options?: Pick<SendOptions, "taskId">,
  ): EagerResult<R>;
  /**
   * Runs a signature or a whole canvas in this process now (`Signature.apply()`): every
   * step, callback, errback and chord body, as a worker would.
   */
  applyCanvasEager<R = unknown>(
    sig: SignatureDict,
    prepend: unknown[],
    kwargs: Record<string, unknown>,
    options?: Pick<SendOptions, "taskId">,
  ): EagerResult<R>;
  /** Sends a signature or canvas in Celery's dict form. */
  sendSignature(
    sig: SignatureDict,
    prepend: unknown[],
    kwargs: Record<string, unknown>,
    options: SendOptions,
  ): Promise<AsyncResult | GroupResult>;
  /** Revokes tasks by id. */
  revoke(taskId: string | string[], options?: RevokeOptions): Promise<void>;
  /** Revokes tasks by stamp (`revoke_by_stamped_headers`). */
  revokeByStampedHeaders(
    headers: Record<string, unknown>,
    options?: RevokeOptions,
  ): Promise<void>;
}
