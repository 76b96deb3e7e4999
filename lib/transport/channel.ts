/**
 * The push-to-pull channel: callbacks (an AMQP consumer, a Redis pub/sub listener, a backend's
 * store notifications) push items, and one async reader pulls them in order, waiting with an
 * `AbortSignal`. Every broker and backend that turns a push API into an async iterator uses
 * this one helper instead of its own buffer and wake-up flag.
 *
 * @module
 */

import { Notifier } from "../_signal.ts";

/**
 * An unbounded FIFO with one async reader.
 *
 * @example
 * ```ts
 * import { PushChannel } from "./channel.ts";
 * const channel = new PushChannel<number>();
 * channel.push(1);
 * channel.push(2);
 * channel.close();
 * const got: number[] = [];
 * for await (const n of channel.stream()) got.push(n);
 * console.assert(got.join() === "1,2");
 * ```
 */
export class PushChannel<T> {
  #items: T[] = [];
  #head = 0;
  #closed = false;
  #notifier = new Notifier();

  /** How many items wait to be pulled. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Whether {@linkcode PushChannel.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Adds an item and wakes the reader. Ignored once the channel is closed.
   *
   * @param item The item.
   */
  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#notifier.notify();
  }

  /** Ends the stream once the items already pushed are pulled; wakes the reader. */
  close(): void {
    this.#closed = true;
    this.#notifier.notify();
  }

  /**
   * Wakes the reader without an item (e.g. a connection broke and the reader must look
   * around).
   */
  wake(): void {
    this.#notifier.notify();
  }

  /**
   * Takes the next item without waiting.
   *
   * @returns The item, or `undefined` when none waits.
   */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as T;
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /**
   * Takes up to `max` items without waiting.
   *
   * @param max Most items.
   * @returns The items, oldest first (maybe none).
   */
  take(max = Infinity): T[] {
    const out: T[] = [];
    while (out.length < max && this.#head < this.#items.length) out.push(this.shift()!);
    return out;
  }

  /**
   * Removes and returns every waiting item.
   *
   * @returns The items, oldest first.
   */
  drain(): T[] {
    return this.take();
  }

  /**
   * Waits until an item is there, the channel is closed or woken, the signal aborts or
   * `timeout` ms pass. Never throws.
   *
   * @param signal Ends the wait early.
   * @param timeout Most milliseconds to wait.
   * @returns Nothing.
   */
  async wait(signal?: AbortSignal, timeout?: number): Promise<void> {
    if (this.size > 0 || this.#closed) return;
    await this.#notifier.wait(signal, timeout);
  }

  /**
   * Yields items as they come, until the channel is closed and drained or the signal aborts.
   *
   * @param signal Ends the stream.
   * @param options `onAbort`: `"return"` ends the stream at once (items still waiting are
   * left); `"throw"` yields what waits first, then throws the signal's reason (the result
   * backends' `waitFor` contract).
   * @returns The items.
   * @throws The signal's reason, with `onAbort: "throw"`.
   */
  async *stream(
    signal?: AbortSignal,
    options: { onAbort?: "return" | "throw" } = {},
  ): AsyncGenerator<T> {
    const drainFirst = options.onAbort === "throw";
    while (true) {
      if (signal?.aborted && !drainFirst) return;
      if (this.size > 0) {
        yield this.shift()!;
        continue;
      }
      if (signal?.aborted) throw signal.reason;
      if (this.#closed) return;
      await this.#notifier.wait(signal);
    }
  }
}
