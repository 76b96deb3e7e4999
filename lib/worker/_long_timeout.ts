/**
 * A timeout that may be longer than `setTimeout` allows. `setTimeout` stores its delay as a
 * signed 32-bit integer, so 2^31 ms (24.8 days) or more fires at once; this helper waits in
 * steps below that bound. Private to the pools (the lead may merge it with lib/_timer.ts).
 *
 * @module
 */

/** The largest delay `setTimeout` honours. */
const MAX_DELAY = 2 ** 31 - 1;

/** A pending long timeout; `clear()` cancels it and is idempotent. */
export interface LongTimeout {
  /** Cancels the timeout. */
  clear(): void;
}

/**
 * Calls `fn` once after `ms` milliseconds, however large `ms` is.
 *
 * @param fn What to call.
 * @param ms The delay in milliseconds; `Infinity` never fires.
 * @returns A handle to cancel it.
 * @example
 * ```ts
 * import { setLongTimeout } from "./_long_timeout.ts";
 * let fired = false;
 * const t = setLongTimeout(() => fired = true, 2 ** 31 + 1000);
 * await new Promise((r) => setTimeout(r, 10));
 * console.assert(!fired);
 * t.clear();
 * ```
 */
export function setLongTimeout(fn: () => void, ms: number): LongTimeout {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let cleared = false;
  if (Number.isNaN(ms) || ms === Infinity) return { clear() {} };
  const due = Date.now() + Math.max(0, ms);
  const arm = () => {
    const left = due - Date.now();
    if (left > MAX_DELAY) {
      timer = setTimeout(arm, MAX_DELAY);
      return;
    }
    timer = setTimeout(() => {
      if (!cleared) fn();
    }, Math.max(0, left));
  };
  arm();
  return {
    clear() {
      cleared = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
