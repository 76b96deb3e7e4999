/**
 * Beat: periodic tasks, safe with several replicas, and a `Deno.cron` adapter.
 *
 * ```ts
 * import { crontab, every, MemoryBeatStore, Scheduler } from "./mod.ts";
 * await using store = new MemoryBeatStore();
 * await using beat = new Scheduler({
 *   entries: {
 *     "ping-every-30s": { task: "tasks.ping", schedule: every("30s") },
 *     "report-9am": { task: "tasks.report", schedule: crontab({ minute: 0, hour: 9 }) },
 *   },
 *   store,
 *   send: () => {},
 * });
 * console.assert(beat.owner.length > 0);
 * ```
 *
 * @module
 */

export { type Schedule } from "./schedule.ts";
export { Every, every, type EveryOptions, parseDuration } from "./every.ts";
export { type CronField, Crontab, crontab, type CrontabOptions } from "./crontab.ts";
export { Clocked, clocked } from "./clocked.ts";
export { type BeatEntries, type BeatEntry, type BeatSend, type BeatTick } from "./entry.ts";
export { type BeatStore, type EntryState } from "./store.ts";
export { MemoryBeatStore, type MemoryBeatStoreOptions } from "./store_memory.ts";
export { Scheduler, type SchedulerOptions } from "./scheduler.ts";
export { KvBeatStore, type KvBeatStoreOptions } from "./store_kv.ts";
export { RedisBeatStore, type RedisBeatStoreOptions } from "./store_redis.ts";
export { registerCron, type RegisterCronOptions, type RegisteredCron } from "./deploy.ts";
