/**
 * One-off schedules: `clocked(new Date("2025-01-01T09:00:00Z"))`.
 *
 * @module
 */

import type { Schedule } from "./schedule.ts";

/** A schedule that fires once. Made by {@linkcode clocked}. */
export class Clocked implements Schedule {
  readonly kind = "clocked" as const;
  /** When it fires. */
  readonly at: Date;

  /**
   * Creates the schedule; prefer {@linkcode clocked}.
   *
   * @param at When it fires.
   */
  constructor(at: Date | string | number) {
    const date = new Date(at);
    if (Number.isNaN(date.getTime())) {
      throw new RangeError(`Cannot use clocked(${String(at)}): it is not a valid date`);
    }
    this.at = date;
  }

  next(after: Date): Date | null {
    return this.at.getTime() > after.getTime() ? new Date(this.at) : null;
  }

  toCron(): string {
    throw new RangeError(
      `Cannot express ${this} as a cron schedule: cron repeats, a clocked schedule fires once`,
    );
  }

  toString(): string {
    return `clocked(${this.at.toISOString()})`;
  }
}

/**
 * A schedule that fires once, at `at`. Like django-celery-beat's clocked schedule, an entry
 * whose time passed before beat first saw it still fires once, at once.
 *
 * @param at A `Date`, an ISO string or epoch milliseconds.
 * @returns The schedule.
 * @throws {RangeError} When `at` is not a valid date.
 * @example
 * ```ts
 * import { clocked } from "./clocked.ts";
 * const once = clocked("2030-01-01T00:00:00Z");
 * console.assert(once.next(new Date("2029-12-31T00:00:00Z"))?.getUTCFullYear() === 2030);
 * console.assert(once.next(new Date("2030-01-01T00:00:00Z")) === null);
 * ```
 */
export function clocked(at: Date | string | number): Clocked {
  return new Clocked(at);
}
