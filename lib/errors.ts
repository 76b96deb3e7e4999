/**
 * Errors raised by celeriac, named as Celery names them so that a Python peer reads the same
 * `exc_type` and `exc_module` on the wire.
 *
 * @module
 */

import { boundedRepr } from "./protocol/repr.ts";

/** Base class of every celeriac error. */
export class CeleriacError extends Error {
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   * @param options The `cause`, when there is one.
   * @example
   * ```ts
   * import { CeleriacError } from "@celeriac/celeriac";
   * const e = new CeleriacError("broken", { cause: new Error("inner") });
   * console.assert(e.name === "CeleriacError");
   * ```
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CeleriacError";
  }
}

/** Options of {@linkcode Retry}. */
export interface RetryOptions extends ErrorOptions {
  /** When the retry runs, in seconds from now. */
  countdown?: number;
  /** When the retry runs, as an absolute time. */
  eta?: Date;
}

/**
 * Thrown by `ctx.retry()`: the task will run again. Celery: `celery.exceptions.Retry`.
 *
 * @example
 * ```ts
 * import { Retry } from "@celeriac/celeriac";
 * const e = new Retry("later", { countdown: 5 });
 * console.assert(e.countdown === 5);
 * ```
 */
export class Retry extends CeleriacError {
  /** Seconds until the retry. */
  readonly countdown: number | undefined;
  /** Absolute time of the retry. */
  readonly eta: Date | undefined;
  /**
   * Creates the error.
   *
   * @param message Why the task is retried.
   * @param options When, and the original error as `cause`.
   */
  constructor(message = "Retry in the future", options: RetryOptions = {}) {
    super(message, options);
    this.name = "Retry";
    this.countdown = options.countdown;
    this.eta = options.eta;
  }
}

/** Options of {@linkcode Reject}. */
export interface RejectOptions extends ErrorOptions {
  /**
   * Put the message back on its queue instead of dropping it.
   * @default {false}
   */
  requeue?: boolean;
}

/**
 * Throw from a task to reject its message (dropped, or requeued with `requeue: true`).
 *
 * @example
 * ```ts
 * import { Reject } from "@celeriac/celeriac";
 * console.assert(new Reject("bad input").requeue === false);
 * ```
 */
export class Reject extends CeleriacError {
  /** Whether the message goes back to its queue. */
  readonly requeue: boolean;
  /**
   * Creates the error.
   *
   * @param message Why the message is rejected.
   * @param options Whether to requeue.
   */
  constructor(message = "Rejected", options: RejectOptions = {}) {
    super(message, options);
    this.name = "Reject";
    this.requeue = options.requeue ?? false;
  }
}

/**
 * Throw from a task to end it without storing a result (state IGNORED).
 *
 * @example
 * ```ts
 * import { Ignore } from "@celeriac/celeriac";
 * console.assert(new Ignore().name === "Ignore");
 * ```
 */
export class Ignore extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message Why the task is ignored.
   * @param options The cause.
   */
  constructor(message = "Ignored", options?: ErrorOptions) {
    super(message, options);
    this.name = "Ignore";
  }
}

/**
 * The reason a task's `signal` aborts when its soft time limit passes.
 *
 * @example
 * ```ts
 * import { SoftTimeLimitExceeded } from "@celeriac/celeriac";
 * console.assert(new SoftTimeLimitExceeded(2).name === "SoftTimeLimitExceeded");
 * ```
 */
export class SoftTimeLimitExceeded extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param seconds The soft limit that passed.
   */
  constructor(seconds: number) {
    super(`SoftTimeLimitExceeded(${seconds})`);
    this.name = "SoftTimeLimitExceeded";
  }
}

/**
 * Stored as the FAILURE of a task that was killed at its hard time limit.
 *
 * @example
 * ```ts
 * import { TimeLimitExceeded } from "@celeriac/celeriac";
 * console.assert(new TimeLimitExceeded(5).message.includes("5"));
 * ```
 */
export class TimeLimitExceeded extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param seconds The hard limit that passed.
   */
  constructor(seconds: number) {
    super(`TimeLimitExceeded(${seconds})`);
    this.name = "TimeLimitExceeded";
  }
}

/**
 * A task was revoked (or expired) and did not run, or was terminated.
 *
 * @example
 * ```ts
 * import { TaskRevokedError } from "@celeriac/celeriac";
 * console.assert(new TaskRevokedError("expired").message === "expired");
 * ```
 */
export class TaskRevokedError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message `"revoked"`, `"expired"` or `"terminated"`.
   * @param options The cause.
   */
  constructor(message = "revoked", options?: ErrorOptions) {
    super(message, options);
    this.name = "TaskRevokedError";
  }
}

/**
 * A message named a task that this worker does not know.
 *
 * @example
 * ```ts
 * import { NotRegistered } from "@celeriac/celeriac";
 * console.assert(new NotRegistered("tasks.nope").taskName === "tasks.nope");
 * ```
 */
export class NotRegistered extends CeleriacError {
  /** The unknown task name. */
  readonly taskName: string;
  /**
   * Creates the error.
   *
   * @param taskName The unknown task name.
   */
  constructor(taskName: string) {
    super(`'${taskName}'`);
    this.name = "NotRegistered";
    this.taskName = taskName;
  }
}

/**
 * A chord header task failed, so the chord body cannot run.
 *
 * @example
 * ```ts
 * import { ChordError } from "@celeriac/celeriac";
 * console.assert(new ChordError("Dependency x raised y").name === "ChordError");
 * ```
 */
export class ChordError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message Which dependency failed.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ChordError";
  }
}

/**
 * The Web Worker running a task died (crashed, or was terminated) before the task finished.
 *
 * @example
 * ```ts
 * import { WorkerLostError } from "@celeriac/celeriac";
 * console.assert(new WorkerLostError("gone").name === "WorkerLostError");
 * ```
 */
export class WorkerLostError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message What happened to the Web Worker.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WorkerLostError";
  }
}

/**
 * `AsyncResult.get()` waited longer than its timeout.
 *
 * @example
 * ```ts
 * import { ResultTimeoutError } from "@celeriac/celeriac";
 * console.assert(new ResultTimeoutError("abc", 10).taskId === "abc");
 * ```
 */
export class ResultTimeoutError extends CeleriacError {
  /** The task waited for. */
  readonly taskId: string;
  /**
   * Creates the error.
   *
   * @param taskId The task waited for.
   * @param timeout How long, in milliseconds.
   */
  constructor(taskId: string, timeout: number) {
    super(`Timed out after ${timeout} ms waiting for the result of task ${taskId}`);
    this.name = "ResultTimeoutError";
    this.taskId = taskId;
  }
}

/**
 * A message could not be decoded as a Celery task message.
 *
 * @example
 * ```ts
 * import { MessageDecodeError } from "@celeriac/celeriac";
 * console.assert(new MessageDecodeError("bad").name === "MessageDecodeError");
 * ```
 */
export class MessageDecodeError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message What is wrong with the message.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MessageDecodeError";
  }
}

/** Options of {@linkcode EncodeError}. */
export interface EncodeErrorOptions extends ErrorOptions {
  /** Where the offending value is, e.g. `result[2].foo`. */
  path?: string;
}

/**
 * A value cannot be written as JSON by celeriac's rule (a `Map`, `Set`, function, class
 * instance, `NaN`, a cycle, ...). Celery: `kombu.exceptions.EncodeError`, as a Python task
 * returning an unserializable value fails.
 *
 * @example
 * ```ts
 * import { EncodeError } from "@celeriac/celeriac";
 * const e = new EncodeError("result.foo is a Map", { path: "result.foo" });
 * console.assert(e.name === "EncodeError" && e.path === "result.foo");
 * ```
 */
export class EncodeError extends CeleriacError {
  /** Where the offending value is, e.g. `result[2].foo`; `""` when unknown. */
  readonly path: string;
  /**
   * Creates the error.
   *
   * @param message What cannot be encoded, and where.
   * @param options The path and the cause.
   */
  constructor(message: string, options: EncodeErrorOptions = {}) {
    super(message, options);
    this.name = "EncodeError";
    this.path = options.path ?? "";
  }
}

// One remote error argument as message text. Arguments come from the wire: an int beyond 2^53
// arrives as a bigint, which JSON.stringify refuses.
function argText(arg: unknown): string {
  if (typeof arg === "string") return arg;
  try {
    return JSON.stringify(arg) ?? String(arg);
  } catch {
    return boundedRepr(arg, { maxLength: 200 });
  }
}

/**
 * A task that failed remotely, rebuilt from Celery's `{exc_type, exc_message, exc_module}`
 * shape. `name` is the remote `exc_type`.
 *
 * @example
 * ```ts
 * import { TaskError } from "@celeriac/celeriac";
 * const e = new TaskError("ValueError", "builtins", ["boom"]);
 * console.assert(e.name === "ValueError" && e.message === "boom");
 * ```
 */
export class TaskError extends CeleriacError {
  /** The Python module (or `celeriac`) the error type came from. */
  readonly excModule: string;
  /** The remote error's arguments. */
  readonly excArgs: readonly unknown[];
  /** The remote traceback, when one was stored. */
  readonly traceback: string | null;
  /**
   * Creates the error.
   *
   * @param excType The remote error type (`exc_type`).
   * @param excModule The remote module (`exc_module`).
   * @param excArgs The remote arguments (`exc_message`).
   * @param traceback The remote traceback.
   */
  constructor(
    excType: string,
    excModule: string,
    excArgs: readonly unknown[],
    traceback: string | null = null,
  ) {
    super(excArgs.map(argText).join(", "));
    this.name = excType;
    this.excModule = excModule;
    this.excArgs = excArgs;
    this.traceback = traceback;
  }
}

/**
 * A task called `retry()` without an error after using up its retries. Celery:
 * `celery.exceptions.MaxRetriesExceededError`.
 *
 * @example
 * ```ts
 * import { MaxRetriesExceededError } from "@celeriac/celeriac";
 * const e = new MaxRetriesExceededError("Can't retry tasks.x[1]");
 * console.assert(e.name === "MaxRetriesExceededError");
 * ```
 */
export class MaxRetriesExceededError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message Which task could not retry.
   * @param options The `cause`, when there is one.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MaxRetriesExceededError";
  }
}
