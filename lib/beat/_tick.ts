/**
 * Claiming a tick: the one step the scheduler and the `Deno.cron` adapter share.
 *
 * @module
 */

import type { Schedule } from "./schedule.ts";
import type { BeatStore, EntryState } from "./store.ts";

/** A tick that this caller, and no one else, now owns. */
export interface Claim {
  /** The scheduled time of the tick, ms. */
  tick: number;
  /** The state before the claim (to give the tick back if sending fails). */
  prev: EntryState;
  /** The state the claim wrote. */
  next: EntryState;
}

const EARLIEST = -8.64e15;
const WINDOWS = [1_000, 60_000, 3_600_000, 86_400_000, 32 * 86_400_000, 367 * 86_400_000];

/**
 * The latest tick in `(from, now]`, given that `first = next(from)` is in it. The catch-up
 * rule lives here: however many ticks were missed, only the latest one is owed.
 */
function latestDue(schedule: Schedule, from: number, first: number, now: number): number {
  let cur = first;
  for (const w of WINDOWS) {
    const start = Math.max(from, now - w);
    if (start <= from) break;
    const t = schedule.next(new Date(start))?.getTime();
    if (t !== undefined && t <= now) {
      cur = Math.max(cur, t);
      break;
    }
  }
  for (;;) {
    const n = schedule.next(new Date(cur))?.getTime();
    if (n === undefined || n > now) return cur;
    cur = n;
  }
}

/**
 * Reads an entry's state (creating it the first time), and if a tick is due at `now`,
 * claims it with a compare-and-set on the state, so that of several callers racing for the
 * same tick exactly one gets it.
 *
 * @param store The store.
 * @param name The entry name.
 * @param schedule The entry's schedule.
 * @param now The current time, ms.
 * @param since For an entry seen for the first time: ticks after this are owed.
 * @returns The claim (or `null` when nothing is due or another caller won) and the time of
 * the next tick after it (or `null` when the schedule has no more ticks).
 */
export async function claimDue(
  store: BeatStore,
  name: string,
  schedule: Schedule,
  now: number,
  since: number = now,
): Promise<{ claim: Claim | null; nextAt: number | null }> {
  for (let attempt = 0;; attempt++) {
    let state = await store.getState(name);
    if (!state) {
      const init: EntryState = { lastRunAt: null, totalRunCount: 0, since };
      if (!(await store.compareAndSet(name, null, init))) continue;
      state = init;
    }
    // A one-off whose time passed before beat first saw it is still owed.
    const from = state.lastRunAt ?? (schedule.kind === "clocked" ? EARLIEST : state.since);
    const first = schedule.next(new Date(from))?.getTime() ?? null;
    if (first === null || first > now) return { claim: null, nextAt: first };
    const tick = latestDue(schedule, from, first, now);
    const next: EntryState = {
      lastRunAt: tick,
      totalRunCount: state.totalRunCount + 1,
      since: state.since,
    };
    const nextAt = schedule.next(new Date(tick))?.getTime() ?? null;
    if (await store.compareAndSet(name, state, next)) {
      return { claim: { tick, prev: state, next }, nextAt };
    }
    // Someone claimed first. Read again: usually the tick is now taken and nothing is due.
    if (attempt >= 3) return { claim: null, nextAt };
  }
}
