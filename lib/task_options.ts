/**
 * Task and call options (leaf module: everything below the App imports these types).
 *
 * @module
 */

import type { SignatureDict } from "./protocol/message.ts";

/** An error class, for `autoretryFor`, `dontAutoretryFor` and `throws`. */
// deno-lint-ignore no-explicit-any
export type ErrorClass = abstract new (...args: any[]) => Error;

/** Which errors match: a list of error classes (`instanceof`) or a predicate. */
export type ErrorMatcher = readonly ErrorClass[] | ((error: unknown) => boolean);

/**
 * A rate: `"10/s"`, `"100/m"`, `"1/h"`, or a number of tasks per second.
 * `0`, `"0"` and `""` mean no limit.
 */
export type RateLimit = string | number;

/** Per-task options, as Celery's task attributes. */
export interface TaskOptions {
  /** Queue the task is sent to unless the call or a route says otherwise. */
  queue?: string;
  /**
   * Most retries; `null` retries forever.
   * @default {3}
   */
  maxRetries?: number | null;
  /**
   * Seconds before a retry when `retry()` gives no countdown.
   * @default {180}
   */
  defaultRetryDelay?: number;
  /**
   * Ack after the task finishes instead of just before it starts.
   * @default {false}
   */
  acksLate?: boolean;
  /**
   * With `acksLate`: on failure or timeout ack (`true`) or reject without requeue (`false`).
   * @default {true}
   */
  acksOnFailureOrTimeout?: boolean;
  /**
   * With `acksLate`: requeue the message when the Web Worker running it dies.
   * @default {false}
   */
  rejectOnWorkerLost?: boolean;
  /**
   * Do not store the result.
   * @default {false}
   */
  ignoreResult?: boolean;
  /**
   * Store STARTED when the task starts.
   * @default {false}
   */
  trackStarted?: boolean;
  /** Hard time limit in seconds: the Web Worker is terminated. */
  timeLimit?: number;
  /** Soft time limit in seconds: the task's `signal` aborts. */
  softTimeLimit?: number;
  /** Default priority, 0–9. */
  priority?: number;
  /** Parameter names, for binding Python keyword arguments; read from the source if absent. */
  params?: string[];
  /**
   * Errors that retry the task automatically (Celery `autoretry_for`): error classes, or a
   * predicate. The retry uses `retryKwargs`, `retryBackoff` and `maxRetries`; once retries
   * run out the task fails with the last error.
   */
  autoretryFor?: ErrorMatcher;
  /**
   * Errors that never retry automatically, even when `autoretryFor` matches them (Celery
   * `dont_autoretry_for`): mark unrecoverable failures here.
   */
  dontAutoretryFor?: ErrorMatcher;
  /** Options of automatic retries (Celery `retry_kwargs`). */
  retryKwargs?: { countdown?: number; maxRetries?: number | null };
  /**
   * Exponential backoff for automatic retries: `factor * 2 ** retries` seconds; `true` means
   * factor 1 (Celery `retry_backoff`).
   * @default {false}
   */
  retryBackoff?: boolean | number;
  /**
   * Cap of the backoff, seconds (Celery `retry_backoff_max`).
   * @default {600}
   */
  retryBackoffMax?: number;
  /**
   * Full jitter on the backoff: a random countdown between 0 and the computed one
   * (Celery `retry_jitter`).
   * @default {true}
   */
  retryJitter?: boolean;
  /** Expected errors (Celery `throws`): logged as info without a traceback. */
  throws?: ErrorMatcher;
  /**
   * Store failures even when `ignoreResult` is set (Celery `store_errors_even_if_ignored`).
   * @default {false}
   */
  storeErrorsEvenIfIgnored?: boolean;
  /**
   * Most runs of this task per worker (Celery `rate_limit`): `"10/s"`, `"100/m"`, `"1/h"`.
   * Tasks over the rate wait, they are not dropped.
   */
  rateLimit?: RateLimit;
  /**
   * Most runs of this task across every worker sharing the broker (Redis, Deno KV; on
   * `memory://` every worker of the process). Celery has no equivalent.
   */
  globalRateLimit?: RateLimit;
  /** Default expiry of a call, seconds from sending (Celery `expires`). */
  expires?: number;
}

/**
 * Whether an error matches a list of classes or a predicate.
 *
 * @param matcher Classes or a predicate.
 * @param error The error.
 * @returns `true` on a match.
 * @example
 * ```ts
 * import { matchesError } from "./task.ts";
 * console.assert(matchesError([TypeError], new TypeError("x")));
 * console.assert(!matchesError([TypeError], new RangeError("x")));
 * ```
 */
export function matchesError(matcher: ErrorMatcher | undefined, error: unknown): boolean {
  if (!matcher) return false;
  if (typeof matcher === "function") return matcher(error);
  return matcher.some((cls) => error instanceof cls);
}

/** Options of a single call (`applyAsync`, `sendTask`). Times are in seconds, as Celery. */
export interface SendOptions {
  /** The task id. @default {crypto.randomUUID()} */
  taskId?: string;
  /** Run no sooner than this many seconds from now. */
  countdown?: number;
  /** Run no sooner than this time. */
  eta?: Date | string;
  /** Seconds from now, or a time, after which the task is revoked instead of run. */
  expires?: number | Date | string;
  /** Target queue. */
  queue?: string;
  /** Priority 0–9. */
  priority?: number;
  /** Extra message headers. */
  headers?: Record<string, unknown>;
  /** Do not store the result. */
  ignoreResult?: boolean;
  /** Hard time limit, seconds. */
  timeLimit?: number;
  /** Soft time limit, seconds. */
  softTimeLimit?: number;
  /** Signatures called with the result on success. */
  link?: SignatureDict | SignatureDict[];
  /** Signatures called with the task id on failure. */
  linkError?: SignatureDict | SignatureDict[];
  /** The task that sends this one (set for you inside a task). */
  parentId?: string;
  /** The first task of the workflow (set for you inside a task). */
  rootId?: string;
  /** Group id. */
  group?: string;
  /** Position inside a chord header. */
  groupIndex?: number;
  /** Reversed rest of a chain. */
  chain?: SignatureDict[];
  /** Chord body. */
  chord?: SignatureDict;
  /** Display name. */
  shadow?: string;
  /** Retries so far (used by retry). @default {0} */
  retries?: number;
  /**
   * Celery 5.3+ stamps, name → value (the `stamped_headers` and `stamps` headers). On a
   * signature's `applyAsync`, they are added to the signature's own stamps (which win, as in
   * Celery); `Signature.stamp()` is the usual way to set them.
   */
  stamps?: Record<string, unknown>;
  /** How many `replace()` calls led here (`replaced_task_nesting`; set by `replace()`). */
  replacedTaskNesting?: number;
}

/** Options of {@linkcode TaskContext.retry}. */
export interface TaskRetryOptions {
  /** Seconds until the retry. @default {the task's defaultRetryDelay} */
  countdown?: number;
  /** Absolute time of the retry. */
  eta?: Date;
  /** The error that caused the retry; stored with RETRY and raised when retries run out. */
  exc?: unknown;
  /** Override the task's maxRetries for this retry. */
  maxRetries?: number | null;
}
