/**
 * The `Pool` seam: where tasks run. Two kinds: `workers` (Web Workers, the default) and
 * `inline` (the main isolate).
 *
 * @module
 */

import type { State } from "../protocol/states.ts";
import type { Outcome, RunRequest } from "./outcome.ts";

/** Options of {@linkcode Pool.run}. */
export interface PoolRunOptions {
  /** Soft time limit in seconds: the task's signal aborts with `SoftTimeLimitExceeded`. */
  softLimit?: number | null;
  /** Hard time limit in seconds: the task is stopped and its outcome is `timeout`. */
  hardLimit?: number | null;
  /** Stores a custom state the task reports (`updateState`). */
  onState?: (state: State, meta: unknown) => Promise<void>;
  /** Aborting it stops this run (revoke with terminate); its outcome is then `lost`. */
  signal?: AbortSignal;
}

/** Runs tasks. */
export interface Pool {
  /** How many tasks it runs at once. */
  readonly capacity: number;
  /** Starts the pool (spawns Web Workers and waits until they loaded the app). */
  start(): Promise<void>;
  /** Runs one task; never rejects. */
  run(request: RunRequest, options?: PoolRunOptions): Promise<Outcome>;
  /** Stops a running task (revoke with terminate); its outcome becomes `failure` revoked. */
  terminate(taskId: string): void;
  /** Grows by `n` slots. */
  grow(n: number): Promise<void>;
  /** Shrinks by `n` slots (idle ones go first; busy ones finish their tasks). */
  shrink(n: number): Promise<void>;
  /** Stops everything now: running tasks end with outcome `lost`. Idempotent. */
  close(): Promise<void>;
}
