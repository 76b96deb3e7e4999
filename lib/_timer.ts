/**
 * Timers of any length. `setTimeout` takes a 32-bit delay: from 2^31 ms (24.8 days) up it
 * fires at once, so a long time limit or an ETA months ahead would fire immediately. These
 * helpers chain chunks of at most {@linkcode MAX_TIMEOUT_MS} against the monotonic clock
 * (`performance.now()`), so they fire once, after the whole delay, however long it is.
 *
 * @module
 */

/** The longest delay one `setTimeout` honours: 2^31 - 1 ms (about 24.8 days). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Options of {@linkcode setLongTimeout} and {@linkcode sleep}. */
export interface LongTimeoutOptions {
  /**
   * The longest single `setTimeout` in the chain (tests shorten it to watch the chaining).
   * @default {MAX_TIMEOUT_MS}
   */
  chunkMs?: number;
}

/** A running {@linkcode setLongTimeout}; `clear()` (or `using`) cancels it. */
export interface LongTimeout extends Disposable {
  /** Cancels the timer; idempotent, and harmless after it fired. */
  clear(): void;
  /** Whether it is still waiting (not fired and not cleared). */
  readonly pending: boolean;
}

/**
 * Calls `callback` once after `ms` milliseconds, for any `ms`: past 2^31 ms the wait is made of
 * several `setTimeout`s. A negative or `NaN` delay fires on the next turn, as `setTimeout` does;
 * `Infinity` never fires (until cleared, it keeps the event loop alive, as a pending timer does).
 *
 * @param callback Called once, with no arguments.
 * @param ms The delay, in milliseconds.
 * @param options The chunk size.
 * @returns The handle, to `clear()` it.
 * @example
 * ```ts
 * import { setLongTimeout } from "./_timer.ts";
 * const limit = setLongTimeout(() => console.log("hard time limit"), 30 * 86_400_000);
 * console.assert(limit.pending);
 * limit.clear();
 * ```
 */
export function setLongTimeout(
  callback: () => void,
  ms: number,
  options: LongTimeoutOptions = {},
): LongTimeout {
  const chunk = Math.max(1, Math.min(options.chunkMs ?? MAX_TIMEOUT_MS, MAX_TIMEOUT_MS));
  const delay = Number.isNaN(ms) ? 0 : Math.max(0, ms);
  const deadline = performance.now() + delay;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending = true;
  const arm = () => {
    const left = deadline - performance.now();
    if (left <= 0) {
      pending = false;
      timer = undefined;
      callback();
      return;
    }
    // Round up: a timer may fire a fraction of a millisecond early.
    timer = setTimeout(arm, Math.min(Math.ceil(Math.max(0, left)), chunk));
  };
  // The first turn always goes through setTimeout, so the callback never runs synchronously.
  timer = setTimeout(arm, Math.min(Math.ceil(delay), chunk));
  const clear = () => {
    pending = false;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return {
    clear,
    get pending() {
      return pending;
    },
    [Symbol.dispose]: clear,
  };
}

/**
 * Resolves after `ms` milliseconds, for any `ms` (see {@linkcode setLongTimeout}), or rejects
 * with the signal's reason as soon as it aborts. The timer is always cleared.
 *
 * @param ms The delay, in milliseconds.
 * @param signal Ends the wait early.
 * @param options The chunk size.
 * @returns Nothing, after the delay.
 * @throws The signal's reason, when it aborts.
 * @example
 * ```ts
 * import { sleep } from "./_timer.ts";
 * await sleep(1);
 * ```
 */
export function sleep(
  ms: number,
  signal?: AbortSignal,
  options: LongTimeoutOptions = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      timer.clear();
      reject(signal!.reason);
    };
    const timer = setLongTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      },
      ms,
      options,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
