/**
 * A beat entry: which task to send, on which schedule, with what arguments.
 *
 * @module
 */

import { isSchedule, type Schedule } from "./schedule.ts";

/** One periodic task, as in Celery's `beat_schedule` values. */
export interface BeatEntry {
  /** The registered task name to send, e.g. `"tasks.add"`. */
  task: string;
  /** When to send it. */
  schedule: Schedule;
  /** Positional arguments. */
  args?: unknown[];
  /** Keyword arguments. */
  kwargs?: Record<string, unknown>;
  /** Send options (queue, priority, expires...), passed through to `send`. */
  options?: Record<string, unknown>;
}

/** What a tick was, passed to `send` after the entry. */
export interface BeatTick {
  /** The scheduled time of the tick (not the time it was sent). */
  scheduledAt: Date;
  /** The run number of this tick, 1 for the first. */
  runCount: number;
}

/** The callback that actually sends a due entry; the app wires it to `app.sendTask`. */
export type BeatSend = (name: string, entry: BeatEntry, tick: BeatTick) => unknown;

/** Entries keyed by name: a plain object (Celery's `beat_schedule`) or a `Map`. */
export type BeatEntries = Record<string, BeatEntry> | ReadonlyMap<string, BeatEntry>;

/**
 * Checks entries and returns them as `[name, entry]` pairs.
 *
 * @param entries Entries by name.
 * @returns The pairs.
 * @throws {TypeError} When an entry has no task name or no schedule.
 * @example
 * ```ts
 * import { entryList } from "./entry.ts";
 * import { every } from "./every.ts";
 * console.assert(entryList({ ping: { task: "ping", schedule: every(5) } }).length === 1);
 * ```
 */
export function entryList(entries: BeatEntries): [string, BeatEntry][] {
  const list = entries instanceof Map
    ? [...(entries as ReadonlyMap<string, BeatEntry>)]
    : Object.entries(entries as Record<string, BeatEntry>);
  for (const [name, entry] of list) {
    if (!name) throw new TypeError("Cannot use a beat entry with an empty name");
    if (typeof entry?.task !== "string" || entry.task === "") {
      throw new TypeError(`Cannot use beat entry "${name}": it needs a task name`);
    }
    if (!isSchedule(entry.schedule)) {
      throw new TypeError(
        `Cannot use beat entry "${name}": schedule must come from every(), crontab() or clocked()`,
      );
    }
  }
  return list;
}
