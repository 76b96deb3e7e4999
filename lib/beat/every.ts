/**
 * Fixed-interval schedules: `every(30)`, `every("5m")`.
 *
 * @module
 */

import type { Schedule } from "./schedule.ts";

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Reads a duration: a number of seconds, or a string such as `"250ms"`, `"30s"`, `"5m"`,
 * `"1h"`, `"1d"` (a bare number string is seconds).
 *
 * @param value The duration.
 * @returns Milliseconds.
 * @throws {RangeError} When the value is not a positive finite duration.
 * @example
 * ```ts
 * import { parseDuration } from "./every.ts";
 * console.assert(parseDuration("5m") === 300_000);
 * console.assert(parseDuration(1.5) === 1_500);
 * ```
 */
export function parseDuration(value: number | string): number {
  let ms: number;
  if (typeof value === "number") ms = value * 1_000;
  else {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
    if (!match) {
      throw new RangeError(
        `Cannot read interval "${value}": use seconds or a number with ms, s, m, h or d, like "30s"`,
      );
    }
    ms = Number(match[1]) * UNITS[match[2] ?? "s"]!;
  }
  ms = Math.round(ms);
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new RangeError(`Cannot use interval ${value}: it must be a positive duration`);
  }
  return ms;
}

/** Options of {@linkcode every}. */
export interface EveryOptions {
  /**
   * The instant ticks are counted from: ticks fall at `anchor + k × interval`.
   * @default {new Date(0)}
   */
  anchor?: Date;
}

/** A fixed-interval schedule. Made by {@linkcode every}. */
export class Every implements Schedule {
  readonly kind = "every" as const;
  /** The interval in milliseconds. */
  readonly ms: number;
  /** Ticks fall at `anchor + k × ms`. */
  readonly anchor: number;

  /**
   * Creates the schedule; prefer {@linkcode every}.
   *
   * @param interval Seconds, or a duration string.
   * @param options Options.
   */
  constructor(interval: number | string, options: EveryOptions = {}) {
    this.ms = parseDuration(interval);
    this.anchor = options.anchor?.getTime() ?? 0;
  }

  next(after: Date): Date {
    const k = Math.floor((after.getTime() - this.anchor) / this.ms) + 1;
    return new Date(this.anchor + k * this.ms);
  }

  toCron(): string {
    const minutes = this.ms / 60_000;
    const fail = (why: string) =>
      new RangeError(`Cannot express ${this} as a cron schedule: ${why}`);
    if (this.anchor % this.ms !== 0) throw fail("its anchor is not a multiple of the interval");
    if (!Number.isInteger(minutes)) throw fail("cron counts whole minutes");
    // Cron steps restart every hour (or day), so only divisors keep the interval even.
    if (minutes < 60 && 60 % minutes === 0) {
      return minutes === 1 ? "* * * * *" : `*/${minutes} * * * *`;
    }
    const hours = minutes / 60;
    if (Number.isInteger(hours) && hours <= 24 && 24 % hours === 0) {
      return hours === 24 ? "0 0 * * *" : hours === 1 ? "0 * * * *" : `0 */${hours} * * *`;
    }
    throw fail(
      "cron can only repeat every N minutes with N dividing 60, or every N hours with N dividing 24",
    );
  }

  toString(): string {
    const ms = this.ms;
    if (ms % 3_600_000 === 0) return `every ${ms / 3_600_000}h`;
    if (ms % 60_000 === 0) return `every ${ms / 60_000}m`;
    if (ms % 1_000 === 0) return `every ${ms / 1_000}s`;
    return `every ${ms}ms`;
  }
}

/**
 * A schedule that ticks at a fixed interval. Ticks are aligned to the epoch (or `anchor`),
 * not to when the process started, so every replica and every restart computes the same tick
 * times: `every("5m")` ticks at :00, :05, :10... UTC. (Celery counts from the last run; the
 * scheduler's persisted last tick gives the same spacing without the drift.)
 *
 * @param interval Seconds (`30`), or a string such as `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
 * @param options Options.
 * @returns The schedule.
 * @throws {RangeError} When the interval is not a positive duration.
 * @example
 * ```ts
 * import { every } from "./every.ts";
 * const s = every("30s");
 * console.assert(s.next(new Date("2024-01-01T00:00:10Z")).toISOString() === "2024-01-01T00:00:30.000Z");
 * console.assert(every("5m").toCron() === "*\/5 * * * *");
 * ```
 */
export function every(interval: number | string, options: EveryOptions = {}): Every {
  return new Every(interval, options);
}
