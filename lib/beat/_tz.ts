/**
 * Wall-clock arithmetic in an IANA time zone with nothing but `Intl.DateTimeFormat`.
 *
 * @module
 */

/** A local wall-clock time, to the minute. `month` is 1-12. */
export interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

const MINUTE = 60_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

/**
 * The formatter for a zone, cached. Throws a `RangeError` naming the zone when it is unknown.
 */
function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
      });
    } catch (cause) {
      throw new RangeError(
        `Cannot use time zone "${timeZone}": it is not an IANA time zone this runtime knows`,
        { cause },
      );
    }
    formatters.set(timeZone, f);
  }
  return f;
}

/** Throws a `RangeError` if the zone is unknown. */
export function checkTimeZone(timeZone: string): void {
  formatter(timeZone);
}

function isUtc(timeZone: string): boolean {
  return timeZone === "UTC" || timeZone === "Etc/UTC" || timeZone === "GMT";
}

/** The wall-clock time at instant `t` (ms) in `timeZone`, seconds dropped. */
export function toWall(t: number, timeZone: string): WallTime {
  if (isUtc(timeZone)) {
    const d = new Date(t);
    return {
      year: d.getUTCFullYear(),
      month: d.getUTCMonth() + 1,
      day: d.getUTCDate(),
      hour: d.getUTCHours(),
      minute: d.getUTCMinutes(),
    };
  }
  const w: WallTime = { year: 0, month: 0, day: 0, hour: 0, minute: 0 };
  for (const p of formatter(timeZone).formatToParts(t)) {
    if (p.type === "year") w.year = Number(p.value);
    else if (p.type === "month") w.month = Number(p.value);
    else if (p.type === "day") w.day = Number(p.value);
    else if (p.type === "hour") w.hour = Number(p.value);
    else if (p.type === "minute") w.minute = Number(p.value);
  }
  return w;
}

/** A wall time read as if it were UTC, in ms: handy for ordering and offsets. */
export function wallMs(w: WallTime): number {
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute);
}

/** The zone's UTC offset at instant `t`, in ms (local minus UTC), to the minute. */
function offsetAt(t: number, timeZone: string): number {
  const floored = Math.floor(t / MINUTE) * MINUTE;
  return wallMs(toWall(floored, timeZone)) - floored;
}

/**
 * The instant a beat fires for a wall-clock time: the earliest instant that reads as `w`
 * (so a time repeated by a fall-back overlap maps to its first occurrence only), or, when
 * `w` falls in a spring-forward gap, the first instant after the gap (02:30 on the day
 * New York springs forward maps to 03:00 EDT).
 *
 * @param w The wall-clock time.
 * @param timeZone The IANA zone.
 * @returns Milliseconds since the epoch.
 */
export function fromWall(w: WallTime, timeZone: string): number {
  const local = wallMs(w);
  if (isUtc(timeZone)) return local;
  // Offsets a day either side bracket any transition near `local`.
  const before = offsetAt(local - 86_400_000, timeZone);
  const after = offsetAt(local + 86_400_000, timeZone);
  const candidates = [local - Math.max(before, after), local - Math.min(before, after)];
  for (const t of candidates) {
    if (offsetAt(t, timeZone) === local - t) return t;
  }
  // In the gap: the transition lies between the two candidates; find the first minute that
  // already uses the new offset.
  let lo = candidates[0]!;
  let hi = candidates[1]!;
  const target = offsetAt(hi, timeZone);
  lo = Math.floor(lo / MINUTE);
  hi = Math.ceil(hi / MINUTE);
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetAt(mid * MINUTE, timeZone) === target) hi = mid;
    else lo = mid + 1;
  }
  return lo * MINUTE;
}
