/**
 * A Lamport clock, as kombu's `LamportClock`: events and pidbox messages carry its value in a
 * `clock` field so monitors can order what happened across nodes.
 *
 * @module
 */

/** A Lamport logical clock. */
export class LamportClock {
  #value = 0;

  /** The current value. */
  get value(): number {
    return this.#value;
  }

  /**
   * Ticks for a local event.
   *
   * @returns The new value.
   */
  forward(): number {
    return ++this.#value;
  }

  /**
   * Merges a value seen on a message: the clock moves past it.
   *
   * @param other The value received (ignored unless a finite number).
   * @returns The new value.
   */
  adjust(other: unknown): number {
    const n = typeof other === "number" && Number.isFinite(other) ? other : 0;
    this.#value = Math.max(this.#value, Math.trunc(n)) + 1;
    return this.#value;
  }
}

const clocks = new WeakMap<object, LamportClock>();

/**
 * The clock shared by everything that works for one app in this process.
 *
 * @param owner The app.
 * @returns Its clock.
 */
export function clockOf(owner: object): LamportClock {
  let clock = clocks.get(owner);
  if (!clock) clocks.set(owner, clock = new LamportClock());
  return clock;
}
