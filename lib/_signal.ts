/**
 * Small helpers for waiting with an `AbortSignal`.
 *
 * @module
 */

/**
 * Resolves after `ms`, or rejects with the signal's reason once it aborts. The timer is
 * always cleared, so tests' op sanitizers stay quiet.
 *
 * @param ms Milliseconds.
 * @param signal Stops the wait early.
 * @returns Nothing.
 * @example
 * ```ts
 * import { delay } from "./_signal.ts";
 * await delay(1);
 * ```
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Resolves once the signal aborts (never rejects).
 *
 * @param signal The signal.
 * @returns A promise and a function that detaches the listener.
 * @example
 * ```ts
 * import { aborted } from "./_signal.ts";
 * const c = new AbortController();
 * const { promise } = aborted(c.signal);
 * c.abort();
 * await promise;
 * ```
 */
export function aborted(signal?: AbortSignal): { promise: Promise<void>; dispose: () => void } {
  if (!signal) return { promise: new Promise(() => {}), dispose: () => {} };
  if (signal.aborted) return { promise: Promise.resolve(), dispose: () => {} };
  const { promise, resolve } = Promise.withResolvers<void>();
  const onAbort = () => resolve();
  signal.addEventListener("abort", onAbort, { once: true });
  return { promise, dispose: () => signal.removeEventListener("abort", onAbort) };
}

/**
 * A wake-up flag: `wait()` resolves at the next `notify()` (or at once if one happened since
 * the last wait), or when the signal aborts, or after `timeout` ms.
 */
export class Notifier {
  #pending = false;
  #waiters: (() => void)[] = [];

  /** Wakes every current waiter (or the next one to wait). */
  notify(): void {
    this.#pending = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /**
   * Waits for a notification.
   *
   * @param signal Ends the wait early (resolves, does not throw).
   * @param timeout Most milliseconds to wait.
   * @returns Nothing.
   */
  async wait(signal?: AbortSignal, timeout?: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return;
    }
    if (signal?.aborted) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push(resolve);
    const abort = aborted(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timed = timeout === undefined
      ? undefined
      : new Promise<void>((r) => timer = setTimeout(r, timeout));
    try {
      await Promise.race([promise, abort.promise, ...(timed ? [timed] : [])]);
    } finally {
      clearTimeout(timer);
      abort.dispose();
      this.#waiters = this.#waiters.filter((w) => w !== resolve);
      this.#pending = false;
    }
  }
}
