/**
 * Converts errors to and from Celery's exception shape
 * `{exc_type, exc_message, exc_module}` (`celery/backends/base.py:prepare_exception`).
 *
 * @module
 */

import {
  ChordError,
  EncodeError,
  Ignore,
  MaxRetriesExceededError,
  NotRegistered,
  Reject,
  Retry,
  SoftTimeLimitExceeded,
  TaskError,
  TaskRevokedError,
  TimeLimitExceeded,
  WorkerLostError,
} from "../errors.ts";

/** An exception as Celery stores it in a result. */
export interface ExceptionInfo {
  /** The error type's name. */
  exc_type: string;
  /** The error's arguments. */
  exc_message: unknown[];
  /** The module the type comes from (`builtins` gives Python a real type). */
  exc_module: string;
}

const CELERY_ERRORS: Record<string, string> = {
  Retry: "celery.exceptions",
  Reject: "celery.exceptions",
  Ignore: "celery.exceptions",
  SoftTimeLimitExceeded: "billiard.exceptions",
  TimeLimitExceeded: "billiard.exceptions",
  WorkerLostError: "billiard.exceptions",
  TaskRevokedError: "celery.exceptions",
  NotRegistered: "celery.exceptions",
  ChordError: "celery.exceptions",
  MaxRetriesExceededError: "celery.exceptions",
  EncodeError: "kombu.exceptions",
};

// Built-in Python exception types that JavaScript errors map to by name.
const PY_BUILTINS = new Set([
  "Exception",
  "TypeError",
  "ValueError",
  "KeyError",
  "IndexError",
  "RuntimeError",
  "SyntaxError",
  "ZeroDivisionError",
  "AttributeError",
  "NotImplementedError",
  "TimeoutError",
  "AssertionError",
  "LookupError",
  "ArithmeticError",
  "OverflowError",
  "MemoryError",
  "RecursionError",
  "OSError",
  "ConnectionError",
  "PermissionError",
  "FileNotFoundError",
]);

/**
 * The Python module a user's error class names: an `excModule` on the error itself or a static
 * `excModule` on its class (or a parent class).
 *
 * @param error The error.
 * @returns The module, or `undefined` when none is named.
 * @example
 * ```ts
 * import { excModuleOf } from "./exceptions.ts";
 * class OutOfStock extends Error {
 *   static excModule = "shop.errors";
 *   override name = "OutOfStock";
 * }
 * console.assert(excModuleOf(new OutOfStock("x")) === "shop.errors");
 * ```
 */
export function excModuleOf(error: Error): string | undefined {
  const own = (error as { excModule?: unknown }).excModule;
  if (typeof own === "string" && own !== "") return own;
  const stat = (error.constructor as { excModule?: unknown } | undefined)?.excModule;
  return typeof stat === "string" && stat !== "" ? stat : undefined;
}

/**
 * Converts a thrown value to Celery's exception shape. The module is the error's `excModule`
 * (on the instance, or static on its class), else `celery.exceptions`/`billiard.exceptions`
 * for Celery's own types, `builtins` for Python's built-in names, else `celeriac`. The args are
 * the error's `excArgs` array when it has one (JSON types kept: `ValueError(3)`), else
 * `[message]`.
 *
 * @param error Anything a task threw.
 * @returns The wire shape.
 * @example
 * ```ts
 * import { errorToInfo } from "./exceptions.ts";
 * const info = errorToInfo(new TypeError("bad"));
 * console.assert(info.exc_module === "builtins" && info.exc_message[0] === "bad");
 * ```
 */
export function errorToInfo(error: unknown): ExceptionInfo {
  if (error instanceof TaskError) {
    return { exc_type: error.name, exc_message: [...error.excArgs], exc_module: error.excModule };
  }
  if (error instanceof Error) {
    const name = error.name === "Error" ? "Exception" : error.name;
    const own = excModuleOf(error);
    const module = own ?? CELERY_ERRORS[name] ?? (PY_BUILTINS.has(name) ? "builtins" : "celeriac");
    const args = (error as { excArgs?: unknown }).excArgs;
    return {
      exc_type: name,
      exc_message: Array.isArray(args) ? [...args] : [error.message],
      exc_module: module,
    };
  }
  return { exc_type: "Exception", exc_message: [String(error)], exc_module: "builtins" };
}

/**
 * Whether a value has Celery's exception shape.
 *
 * @param value A stored result.
 * @returns `true` for `{exc_type, ...}` objects.
 * @example
 * ```ts
 * import { isExceptionInfo } from "./exceptions.ts";
 * console.assert(isExceptionInfo({ exc_type: "ValueError", exc_message: [] }));
 * ```
 */
export function isExceptionInfo(value: unknown): value is ExceptionInfo {
  return value !== null && typeof value === "object" &&
    typeof (value as { exc_type?: unknown }).exc_type === "string";
}

/**
 * Rebuilds an error from Celery's exception shape. Celery's own error types (`Retry`, `Reject`,
 * `TaskRevokedError`, ... from `celery.exceptions` or `billiard.exceptions`) come back as
 * celeriac's classes; any other type, including a same-named one from another module, comes
 * back as a {@linkcode TaskError} named after it.
 *
 * @param info The stored shape.
 * @param traceback The stored traceback.
 * @returns The error.
 * @example
 * ```ts
 * import { infoToError } from "./exceptions.ts";
 * const e = infoToError({ exc_type: "ValueError", exc_message: ["x"], exc_module: "builtins" });
 * console.assert(e.name === "ValueError");
 * ```
 */
export function infoToError(info: ExceptionInfo, traceback: string | null = null): Error {
  const args = Array.isArray(info.exc_message)
    ? info.exc_message
    : info.exc_message === undefined
    ? []
    : [info.exc_message];
  const message = String(args[0] ?? "");
  const module = info.exc_module ?? "builtins";
  const cause = new TaskError(info.exc_type, module, args, traceback);
  // Only Celery's (and billiard's) own classes map to celeriac's: a user's `myapp.Retry` must not
  // turn into control flow.
  if (CELERY_ERRORS[info.exc_type] !== module) return cause;
  switch (info.exc_type) {
    case "Retry":
      return new Retry(message, { cause });
    case "Reject":
      return new Reject(message, { cause });
    case "Ignore":
      return new Ignore(message, { cause });
    case "TaskRevokedError":
      return new TaskRevokedError(message, { cause });
    case "ChordError":
      return new ChordError(message, { cause });
    case "MaxRetriesExceededError":
      return new MaxRetriesExceededError(message, { cause });
    case "WorkerLostError":
      return new WorkerLostError(message, { cause });
    case "EncodeError":
      return new EncodeError(message, { cause });
    case "NotRegistered":
      return new NotRegistered(message.replace(/^'(.*)'$/, "$1"));
    case "SoftTimeLimitExceeded":
      return new SoftTimeLimitExceeded(Number(message.match(/\d+(\.\d+)?/)?.[0] ?? 0));
    case "TimeLimitExceeded":
      return new TimeLimitExceeded(Number(message.match(/\d+(\.\d+)?/)?.[0] ?? 0));
    default:
      return cause;
  }
}

/**
 * Converts a flattened error to the exception shape stored in a result.
 *
 * @param error The flattened error.
 * @returns `{exc_type, exc_message, exc_module}`.
 */
export function shapeToInfo(
  error: { name: string; message: string; module?: string; args?: unknown[] },
): ExceptionInfo {
  if (error.module !== undefined) {
    return {
      exc_type: error.name === "Error" ? "Exception" : error.name,
      exc_message: error.args ?? [error.message],
      exc_module: error.module,
    };
  }
  const e = new Error(error.message);
  e.name = error.name;
  const info = errorToInfo(e);
  return error.args ? { ...info, exc_message: [...error.args] } : info;
}
