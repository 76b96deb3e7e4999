/**
 * The shape every beat schedule has.
 *
 * @module
 */

/**
 * When a periodic task runs. Implementations: {@linkcode every}, {@linkcode crontab},
 * {@linkcode clocked}. Schedules are pure: the same `after` always gives the same answer, so
 * every replica computes the same tick times, which is what lets them agree on a tick.
 */
export interface Schedule {
  /** The kind of schedule, for messages and serialisation. */
  readonly kind: "every" | "crontab" | "clocked";
  /**
   * The first tick strictly after `after`.
   *
   * @param after A point in time.
   * @returns The next tick, or `null` when there is none (a one-off that is past).
   */
  next(after: Date): Date | null;
  /**
   * The schedule as a 5-field UTC cron string (`minute hour day-of-month month day-of-week`,
   * day names for the day of week), as `Deno.cron` takes it.
   *
   * @returns The cron string.
   * @throws {RangeError} When cron cannot express the schedule.
   */
  toCron(): string;
  /** A short human description, e.g. `every 30s` or `crontab(0 9 * * MON-FRI, Europe/Paris)`. */
  toString(): string;
}

/**
 * Whether a value is a {@linkcode Schedule}.
 *
 * @param value Anything.
 * @returns `true` when it has `next` and `toCron`.
 * @example
 * ```ts
 * import { isSchedule } from "./schedule.ts";
 * import { every } from "./every.ts";
 * console.assert(isSchedule(every(5)));
 * ```
 */
export function isSchedule(value: unknown): value is Schedule {
  return typeof value === "object" && value !== null &&
    typeof (value as Schedule).next === "function" &&
    typeof (value as Schedule).toCron === "function";
}
