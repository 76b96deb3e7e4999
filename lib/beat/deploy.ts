/**
 * Beat on `Deno.cron`: Deno Deploy runs the schedule, celeriac sends the task.
 *
 * @module
 */

import { claimDue } from "./_tick.ts";
import { type BeatEntries, type BeatEntry, type BeatSend, entryList } from "./entry.ts";
import type { BeatStore } from "./store.ts";

/** Options of {@linkcode registerCron}. */
export interface RegisterCronOptions {
  /** Where ticks are claimed, shared by every process that registers the same entries. */
  store: BeatStore;
  /** Sends one due entry: the app wires it to `app.sendTask(entry.task, ...)`. */
  send: BeatSend;
  /** Unregisters the crons when aborted. */
  signal?: AbortSignal;
  /**
   * The clock the handlers read.
   * @default {() => new Date()}
   */
  now?: () => Date;
  /**
   * Retry delays (ms) `Deno.cron` uses when a handler throws (a failed `send`).
   * @default {[1000, 5000, 10000]}
   */
  backoffSchedule?: number[];
}

/** One entry registered with `Deno.cron`. */
export interface RegisteredCron {
  /** The beat entry name. */
  name: string;
  /** The name given to `Deno.cron` (the entry name with characters it refuses replaced). */
  cronName: string;
  /** The UTC cron string. */
  schedule: string;
  /** What `Deno.cron` calls; call it yourself to test. Resolves `true` when it sent. */
  handler: () => Promise<boolean>;
  /** Settles when the cron is unregistered (the signal aborted). */
  done: Promise<void>;
}

/** Options of {@linkcode cronHandler}. */
export interface CronHandlerOptions {
  /** Where ticks are claimed. */
  store: BeatStore;
  /** Sends one due entry. */
  send: BeatSend;
  /**
   * The clock.
   * @default {() => new Date()}
   */
  now?: () => Date;
}

/**
 * The handler {@linkcode registerCron} gives `Deno.cron` for one entry: claims the latest due
 * tick in the store (compare-and-set, so concurrent fires in several processes send it once)
 * and sends it. On first sight of the entry, the tick of the last minute is owed, since the
 * fire itself says one is due. When `send` throws, the tick is given back and the error
 * rethrown, so `Deno.cron`'s backoff retries it.
 *
 * @param name The entry name (the key of its state in the store).
 * @param entry The entry.
 * @param options The store, the send callback and the clock.
 * @returns The handler; it resolves `true` when it sent.
 * @example
 * ```ts
 * import { cronHandler } from "./deploy.ts";
 * import { every } from "./every.ts";
 * import { MemoryBeatStore } from "./store_memory.ts";
 * const store = new MemoryBeatStore();
 * const fire = cronHandler("ping", { task: "t.ping", schedule: every("1m") }, {
 *   store,
 *   send: () => {},
 *   now: () => new Date("2024-01-01T00:01:00.050Z"),
 * });
 * console.assert(await fire() === true);
 * console.assert(await fire() === false);
 * ```
 */
export function cronHandler(
  name: string,
  entry: BeatEntry,
  options: CronHandlerOptions,
): () => Promise<boolean> {
  const { store, send } = options;
  const now = options.now ?? (() => new Date());
  return async () => {
    const t = now().getTime();
    // Deno.cron fires once a minute at most: on first sight the tick that fired is owed.
    const { claim } = await claimDue(store, name, entry.schedule, t, t - 60_000);
    if (!claim) return false;
    try {
      await send(name, entry, {
        scheduledAt: new Date(claim.tick),
        runCount: claim.next.totalRunCount,
      });
    } catch (error) {
      await store.compareAndSet(name, claim.next, claim.prev).catch(() => false);
      throw error;
    }
    return true;
  };
}

type CronFn = (
  name: string,
  schedule: string,
  options: { backoffSchedule?: number[]; signal?: AbortSignal },
  handler: () => Promise<void>,
) => Promise<void>;

/**
 * Registers every entry with `Deno.cron`, so Deno Deploy (or a local `deno run` with the
 * `cron` unstable flag) fires it. Call it at the top level of your main module, with no
 * `await` before it: Deno Deploy only discovers crons registered while the module loads.
 *
 * `Deno.cron` fires in every process that registers it when run locally (once per deployment
 * on Deno Deploy); each handler claims its tick in `store` with the same compare-and-set as the
 * `Scheduler`, so a tick is sent once however many processes fire it.
 *
 * @param entries Entries by name; each schedule must be expressible as UTC cron
 * (`every("5m")`, `every("2h")`, a UTC `crontab()`).
 * @param options The store and the send callback.
 * @returns The registrations.
 * @throws {RangeError} For a schedule cron cannot express (`every(45)`, `every("90m")`, a
 * crontab in another time zone, a clocked one-off), naming the entry.
 * @throws {Error} When `Deno.cron` is not available.
 * @example
 * ```ts ignore
 * import { every, KvBeatStore, registerCron } from "@celeriac/celeriac";
 * registerCron({ cleanup: { task: "tasks.cleanup", schedule: every("5m") } }, {
 *   store: new KvBeatStore(),
 *   send: (name, entry) => app.sendTask(entry.task, entry.args, entry.kwargs),
 * });
 * ```
 */
export function registerCron(entries: BeatEntries, options: RegisterCronOptions): RegisteredCron[] {
  const cron = (Deno as unknown as { cron?: CronFn }).cron;
  if (typeof cron !== "function") {
    throw new Error(
      'Cannot register beat entries: Deno.cron is not available; run with --unstable-cron or add "cron" to "unstable" in deno.json',
    );
  }
  const { store, send, signal } = options;
  const now = options.now ?? (() => new Date());
  const backoffSchedule = options.backoffSchedule ?? [1_000, 5_000, 10_000];
  const planned = entryList(entries).map(([name, entry]) => {
    let schedule: string;
    try {
      schedule = entry.schedule.toCron();
    } catch (cause) {
      throw new RangeError(
        `Cannot register beat entry "${name}" with Deno.cron: ${(cause as Error).message}`,
        { cause },
      );
    }
    const cronName = name.replace(/[^A-Za-z0-9\s_-]/g, "_").slice(0, 64);
    return { name, entry, schedule, cronName };
  });
  const seen = new Map<string, string>();
  for (const p of planned) {
    const other = seen.get(p.cronName);
    if (other !== undefined) {
      throw new RangeError(
        `Cannot register beat entries "${other}" and "${p.name}": both become the Deno.cron name "${p.cronName}"`,
      );
    }
    seen.set(p.cronName, p.name);
  }
  return planned.map(({ name, entry, schedule, cronName }) => {
    const handler = cronHandler(name, entry, { store, send, now });
    const cronOptions = signal ? { backoffSchedule, signal } : { backoffSchedule };
    const done = cron(cronName, schedule, cronOptions, async () => void await handler());
    return { name, cronName, schedule, handler, done };
  });
}
