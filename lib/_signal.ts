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
 *
 * A Notifier adds one abort listener to each signal it is given, the first time, and keeps it
 * (adding and removing one per wait was a hot spot of the worker loop); so give it signals that
 * live no longer than it does, or that end (abort or are collected) with the operation.
 */
export class Notifier {
  #pending = false;
  #waiters: { resolve: () => void; signal: AbortSignal | undefined }[] = [];
  #watched = new WeakSet<AbortSignal>();

  /** Wakes every current waiter (or the next one to wait). */
  notify(): void {
    this.#pending = true;
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
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
    const waiter = { resolve, signal };
    this.#waiters.push(waiter);
    if (signal && !this.#watched.has(signal)) {
      this.#watched.add(signal);
      signal.addEventListener("abort", () => this.#wake(signal), { once: true });
    }
    const timer = timeout === undefined ? undefined : setTimeout(resolve, timeout);
    try {
      await promise;
    } finally {
      clearTimeout(timer);
      const i = this.#waiters.indexOf(waiter);
      if (i >= 0) this.#waiters.splice(i, 1);
      this.#pending = false;
    }
  }

  #wake(signal: AbortSignal): void {
    const waiters = this.#waiters;
    this.#waiters = waiters.filter((w) => w.signal !== signal);
    for (const w of waiters) if (w.signal === signal) w.resolve();
  }
}
