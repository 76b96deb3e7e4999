/**
 * Celery's task states (`celery/states.py`).
 *
 * @module
 */

/** A task state. Custom states (from `updateState`) are any other string. */
export type State =
  | "PENDING"
  | "RECEIVED"
  | "STARTED"
  | "SUCCESS"
  | "FAILURE"
  | "RETRY"
  | "REVOKED"
  | "REJECTED"
  | "IGNORED"
  | (string & Record<never, never>);

/** States after which a task's result will not change. */
export const READY_STATES: ReadonlySet<string> = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
/** States whose result is an error that `get()` throws. */
export const PROPAGATE_STATES: ReadonlySet<string> = new Set(["FAILURE", "REVOKED"]);
/** States whose result holds an exception. */
export const EXCEPTION_STATES: ReadonlySet<string> = new Set(["RETRY", "FAILURE", "REVOKED"]);
