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
  /**
   * Called once when the run starts: on the `inline` pool just before its code runs, on the
   * `workers` pool when its Web Worker reports that it took the run (which may have waited
   * there, sent ahead). Not called for a run that never starts.
   */
  onStart?: (() => void) | undefined;
  /**
   * Stops this run (revoke with terminate) when aborted: the run resolves at once with outcome
   * `lost`. On the `workers` pool a run sent ahead that has not started is taken back and its
   * Web Worker left alone; a started one has its Web Worker terminated and respawned; with
   * `childConcurrency` 1 no other task is touched, with more the tasks sharing that Web Worker
   * end `lost` too. On the `inline` pool the task's own signal aborts with `TaskRevokedError`
   * and its promise is abandoned.
   */
  signal?: AbortSignal;
}

/** Runs tasks. */
export interface Pool {
  /** How many tasks it runs at once. */
  readonly capacity: number;
  /**
   * Runs it takes beyond `capacity`, to keep its places fed (the `workers` pool sends them
   * ahead to its Web Workers); the consumer hands it up to `capacity + lookahead` runs.
   */
  readonly lookahead?: number;
  /** Starts the pool (spawns Web Workers and waits until they loaded the app). */
  start(): Promise<void>;
  /**
   * Runs one task; never rejects. The slot is chosen when `run()` is called; when none is free
   * the run waits its turn (first in, first out). Each call is its own run, even when two
   * requests carry the same task id.
   */
  run(request: RunRequest, options?: PoolRunOptions): Promise<Outcome>;
  /**
   * Warm shutdown: runs taken but not started (sent ahead, or waiting for a place) end at once
   * with outcome `unstarted`, so that their messages go back to the queue.
   */
  handBack?(): void;
  /** Grows by `n` slots. */
  grow(n: number): Promise<void>;
  /** Shrinks by `n` slots (idle ones go first; busy ones finish their tasks). */
  shrink(n: number): Promise<void>;
  /** Stops everything now: running tasks end with outcome `lost`. Idempotent. */
  close(): Promise<void>;
}
