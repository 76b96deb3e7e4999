/**
 * Cron-like schedules in any IANA time zone: `crontab({ minute: 0, hour: "9-17" })`.
 *
 * @module
 */

import type { Schedule } from "./schedule.ts";
import { checkTimeZone, fromWall, toWall } from "./_tz.ts";

/** One crontab field: `"*"`, `"1-5"`, `"*\/15"`, `"10-50/5"`, `"1,2,3"`, names, a number or a list. */
export type CronField = string | number | readonly number[];

/** Options of {@linkcode crontab}. Unset fields mean every value (`"*"`). */
export interface CrontabOptions {
  /** Minutes, 0-59. @default {"*"} */
  minute?: CronField;
  /** Hours, 0-23. @default {"*"} */
  hour?: CronField;
  /** Days of the week, 0-7 where both 0 and 7 are Sunday, or names `sun`..`sat`. @default {"*"} */
  dayOfWeek?: CronField;
  /** Days of the month, 1-31. @default {"*"} */
  dayOfMonth?: CronField;
  /** Months, 1-12, or names `jan`..`dec`. @default {"*"} */
  monthOfYear?: CronField;
  /** The IANA time zone the fields are read in. @default {"UTC"} */
  timezone?: string;
  /**
   * How `dayOfMonth` and `dayOfWeek` combine when both are restricted: `"and"` (Celery: the
   * day must match both, so `dayOfMonth: "1-7", dayOfWeek: "mon"` is the first Monday) or
   * `"or"` (POSIX/Vixie cron: either matches). When one of them is `"*"` the two agree.
   * @default {"and"}
   */
  dayMatch?: "and" | "or";
}

const DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const MONTH_NAMES = [
  "jan",
  "feb",
  "mar",
  "apr",
  "may",
  "jun",
  "jul",
  "aug",
  "sep",
  "oct",
  "nov",
  "dec",
];
const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  namesFrom?: number;
}

const SPECS = {
  minute: { name: "minute", min: 0, max: 59 },
  hour: { name: "hour", min: 0, max: 23 },
  dayOfWeek: { name: "dayOfWeek", min: 0, max: 7, names: DAY_NAMES, namesFrom: 0 },
  dayOfMonth: { name: "dayOfMonth", min: 1, max: 31 },
  monthOfYear: { name: "monthOfYear", min: 1, max: 12, names: MONTH_NAMES, namesFrom: 1 },
} satisfies Record<string, FieldSpec>;

function parseField(value: CronField, spec: FieldSpec): number[] {
  const bad = (why: string) =>
    new RangeError(`Cannot read crontab ${spec.name} ${JSON.stringify(value)}: ${why}`);
  const out = new Set<number>();
  const check = (n: number) => {
    if (!Number.isInteger(n) || n < spec.min || n > spec.max) {
      throw bad(`${n} is outside ${spec.min}-${spec.max}`);
    }
    return n;
  };
  const num = (token: string): number => {
    const t = token.trim().toLowerCase();
    if (/^\d+$/.test(t)) return check(Number(t));
    const names = spec.names;
    if (names) {
      const i = names.findIndex((n) => t.length >= 3 && n === t.slice(0, 3));
      if (i >= 0) return i + spec.namesFrom!;
    }
    throw bad(`"${token}" is not a number${names ? " or a name" : ""}`);
  };
  const top = spec.name === "dayOfWeek" ? 6 : spec.max;
  if (typeof value === "number") out.add(check(value));
  else if (typeof value !== "string") {
    if (!Array.isArray(value) || value.length === 0) throw bad("expected a string, number or list");
    for (const n of value) out.add(check(n));
  } else {
    if (value.trim() === "") throw bad("it is empty");
    for (const part of value.split(",")) {
      const [range, stepText, extra] = part.split("/");
      if (extra !== undefined) throw bad(`"${part}" has two steps`);
      const step = stepText === undefined ? 1 : Number(stepText.trim());
      if (!Number.isInteger(step) || step < 1) {
        throw bad(`step "${stepText}" is not a positive integer`);
      }
      let from: number;
      let to: number;
      let extraSunday = false;
      const r = range!.trim();
      if (r === "*") [from, to] = [spec.min, top];
      else if (r.includes("-")) {
        const [a, b, c] = r.split("-");
        if (c !== undefined) throw bad(`"${r}" is not a range`);
        [from, to] = [num(a!), num(b!)];
        // `1-7` on the day of week means Monday to Sunday.
        if (spec.name === "dayOfWeek" && to === 7 && from !== 7) [to, extraSunday] = [6, true];
      } else {
        from = num(r);
        to = stepText === undefined ? from : top;
      }
      // A range that runs past the end wraps around (`fri-mon`, `22-2`), as in Celery.
      const span = spec.name === "dayOfWeek" ? 7 : spec.max - spec.min + 1;
      const length = (to - from + span) % span;
      for (let i = 0; i <= length; i += step) {
        out.add(spec.min + (from - spec.min + i) % span);
      }
      if (extraSunday && (7 - from) % step === 0) out.add(0);
    }
  }
  if (spec.name === "dayOfWeek" && out.delete(7)) out.add(0);
  return [...out].sort((a, b) => a - b);
}

function renderField(values: number[], spec: FieldSpec, names?: string[]): string {
  const top = spec.name === "dayOfWeek" ? 6 : spec.max;
  if (values.length === top - spec.min + 1) return "*";
  const label = (n: number) => names ? names[n]!.toUpperCase() : String(n);
  const parts: string[] = [];
  for (let i = 0; i < values.length;) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j]! + 1) j++;
    if (j - i >= 2) parts.push(`${label(values[i]!)}-${label(values[j]!)}`);
    else for (let k = i; k <= j; k++) parts.push(label(values[k]!));
    i = j + 1;
  }
  return parts.join(",");
}

/** A crontab schedule. Made by {@linkcode crontab}. */
export class Crontab implements Schedule {
  readonly kind = "crontab" as const;
  /** Sorted minutes. */
  readonly minutes: readonly number[];
  /** Sorted hours. */
  readonly hours: readonly number[];
  /** Sorted days of the week, 0 = Sunday. */
  readonly daysOfWeek: readonly number[];
  /** Sorted days of the month. */
  readonly daysOfMonth: readonly number[];
  /** Sorted months, 1-12. */
  readonly months: readonly number[];
  /** The IANA time zone. */
  readonly timezone: string;
  /** How day of month and day of week combine. */
  readonly dayMatch: "and" | "or";
  #dow: Set<number>;
  #dom: Set<number>;
  #moy: Set<number>;
  #domAll: boolean;
  #dowAll: boolean;

  /**
   * Creates the schedule; prefer {@linkcode crontab}.
   *
   * @param options The fields.
   */
  constructor(options: CrontabOptions = {}) {
    this.minutes = parseField(options.minute ?? "*", SPECS.minute);
    this.hours = parseField(options.hour ?? "*", SPECS.hour);
    this.daysOfWeek = parseField(options.dayOfWeek ?? "*", SPECS.dayOfWeek);
    this.daysOfMonth = parseField(options.dayOfMonth ?? "*", SPECS.dayOfMonth);
    this.months = parseField(options.monthOfYear ?? "*", SPECS.monthOfYear);
    this.timezone = options.timezone ?? "UTC";
    checkTimeZone(this.timezone);
    this.dayMatch = options.dayMatch ?? "and";
    if (this.dayMatch !== "and" && this.dayMatch !== "or") {
      throw new RangeError(`Cannot use dayMatch "${this.dayMatch}": use "and" or "or"`);
    }
    this.#dow = new Set(this.daysOfWeek);
    this.#dom = new Set(this.daysOfMonth);
    this.#moy = new Set(this.months);
    this.#domAll = this.daysOfMonth.length === 31;
    this.#dowAll = this.daysOfWeek.length === 7;
    const possible = this.months.some((m) => this.daysOfMonth.some((d) => d <= MONTH_DAYS[m - 1]!));
    if (!possible && (this.dayMatch === "and" || this.#dowAll)) {
      throw new RangeError(`Cannot use ${this}: no month has those days`);
    }
  }

  #dayMatches(year: number, month: number, day: number): boolean {
    if (!this.#moy.has(month)) return false;
    const dow = new Date(Date.UTC(year, month - 1, day)).getUTCDay();
    const domOk = this.#dom.has(day);
    const dowOk = this.#dow.has(dow);
    if (this.dayMatch === "or" && !this.#domAll && !this.#dowAll) return domOk || dowOk;
    return domOk && dowOk;
  }

  /**
   * The first tick strictly after `after`. Wall-clock rules: a time that a spring-forward
   * gap skips fires once, at the first instant after the gap (02:30 on the day New York
   * springs forward fires at 03:00 EDT); a time that a fall-back overlap repeats fires once,
   * at its first occurrence. So `minute: "*\/15"` pauses through the repeated hour: use
   * {@linkcode every} for intervals in real time.
   *
   * @param after A point in time.
   * @returns The next tick, or `null` if none within 400 years.
   */
  next(after: Date): Date | null {
    const t0 = after.getTime();
    const start = toWall(t0, this.timezone);
    for (let i = 0; i < 146_100; i++) {
      const date = new Date(Date.UTC(start.year, start.month - 1, start.day + i));
      const year = date.getUTCFullYear();
      const month = date.getUTCMonth() + 1;
      const day = date.getUTCDate();
      if (!this.#dayMatches(year, month, day)) continue;
      for (const hour of this.hours) {
        if (i === 0 && hour < start.hour) continue;
        for (const minute of this.minutes) {
          if (i === 0 && hour === start.hour && minute < start.minute) continue;
          const t = fromWall({ year, month, day, hour, minute }, this.timezone);
          if (t > t0) return new Date(t);
        }
      }
    }
    return null;
  }

  toCron(): string {
    const utc = ["UTC", "Etc/UTC", "GMT"].includes(this.timezone);
    if (!utc) {
      throw new RangeError(
        `Cannot express ${this} as a cron schedule: Deno.cron reads cron in UTC only`,
      );
    }
    if (this.dayMatch === "and" && !this.#domAll && !this.#dowAll) {
      throw new RangeError(
        `Cannot express ${this} as a cron schedule: cron fires when either the day of month ` +
          `or the day of week matches, not both (use dayMatch: "or" for cron's rule)`,
      );
    }
    return this.#fields();
  }

  #fields(): string {
    return [
      renderField([...this.minutes], SPECS.minute),
      renderField([...this.hours], SPECS.hour),
      renderField([...this.daysOfMonth], SPECS.dayOfMonth),
      renderField([...this.months], SPECS.monthOfYear),
      // Day names: cron dialects disagree on numbers (Deno.cron counts 1 = Sunday).
      renderField([...this.daysOfWeek], SPECS.dayOfWeek, DAY_NAMES),
    ].join(" ");
  }

  toString(): string {
    return `crontab(${this.#fields()}${this.timezone === "UTC" ? "" : `, ${this.timezone}`})`;
  }
}

/**
 * A schedule from cron-style fields, read as wall-clock time in `timezone` (any IANA zone,
 * resolved with `Intl.DateTimeFormat`). Field syntax: `*`, `5`, `1-5`, `*\/15`, `10-50/5`,
 * `1,2,3`, day and month names; day of week counts 0 or 7 as Sunday, as Celery does. When
 * both `dayOfMonth` and `dayOfWeek` are restricted, a day must match both (Celery's rule);
 * pass `dayMatch: "or"` for cron's rule. See {@linkcode Crontab.next} for DST.
 *
 * @param options The fields; unset fields are `"*"`.
 * @returns The schedule.
 * @throws {RangeError} On a malformed field, an unknown time zone, or a date that never
 * exists (`dayOfMonth: 30, monthOfYear: 2`).
 * @example
 * ```ts
 * import { crontab } from "./crontab.ts";
 * const weekdays = crontab({ minute: 0, hour: 9, dayOfWeek: "mon-fri", timezone: "Europe/Paris" });
 * const next = weekdays.next(new Date("2024-07-05T08:00:00Z")); // a Friday, 10:00 in Paris
 * console.assert(next?.toISOString() === "2024-07-08T07:00:00.000Z"); // Monday 09:00 CEST
 * console.assert(crontab({ minute: "*\/15" }).toCron() === "0,15,30,45 * * * *");
 * ```
 */
export function crontab(options: CrontabOptions = {}): Crontab {
  return new Crontab(options);
}
