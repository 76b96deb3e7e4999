// Rate-limit measurements. A rate limit is a ceiling: the measured rate must not pass it (10 %
// for timer jitter), and on a loaded machine it may fall below it (a late wake-up delays every
// later task), so the floor is loose.
import assert from "node:assert/strict";

/** Tasks per second over the span of `times` (ms stamps, any order). */
export function rateOf(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return (sorted.length - 1) / ((sorted.at(-1)! - sorted[0]!) / 1000);
}

/** Asserts `measured` is at most 10 % over `limit` per second and at least half of it. */
export function assertRate(measured: number, limit: number): void {
  assert.ok(
    measured <= limit * 1.1 && measured >= limit * 0.5,
    `measured ${measured.toFixed(2)}/s for a limit of ${limit}/s`,
  );
}
