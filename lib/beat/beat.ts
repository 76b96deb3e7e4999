/**
 * Beat for an App: a {@linkcode Scheduler} over the app's periodic tasks, sending through
 * `app.sendTask`, with its state in a store that matches the app's result backend.
 *
 * @module
 */

import type { App } from "../app.ts";
import type { SendOptions } from "../task.ts";
import type { BeatStore } from "./store.ts";
import { Scheduler } from "./scheduler.ts";

/** Options of {@linkcode startBeat}. */
export interface StartBeatOptions {
  /** Where last-run times and the leader lease live. @default {beatStoreFor(app backend URL)} */
  store?: BeatStore;
  /** Stops the scheduler. */
  signal?: AbortSignal;
}

/**
 * The beat store matching a URL: Redis for `redis://`, Deno KV for `kv://`, memory otherwise.
 *
 * @param url A result backend (or broker) URL.
 * @returns The store; closing it is the caller's job.
 * @example
 * ```ts
 * import { beatStoreFor } from "./beat.ts";
 * await using store = await beatStoreFor("memory://");
 * ```
 */
export async function beatStoreFor(url: string): Promise<BeatStore> {
  if (/^rediss?:/.test(url)) {
    const { RedisBeatStore } = await import("./store_redis.ts");
    return new RedisBeatStore(url);
  }
  if (url.startsWith("kv:")) {
    const { KvBeatStore } = await import("./store_kv.ts");
    const { kvTarget } = await import("../_kv.ts");
    const { target, local } = kvTarget(url);
    if (local) {
      await Deno.mkdir(target.replace(/\/[^/]*$/, ""), { recursive: true }).catch(() => {});
    }
    return new KvBeatStore(target);
  }
  const { MemoryBeatStore } = await import("./store_memory.ts");
  return new MemoryBeatStore();
}

/**
 * Starts beat for an app's `beatSchedule`: every due entry is sent once, however many beat
 * replicas run (they share a leader lease and claim each tick in the store).
 *
 * @param app The app with periodic tasks.
 * @param options Store and signal.
 * @returns The running scheduler and its store; `close()` both when done.
 * @example
 * ```ts
 * import { App, every, startBeat } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://beat-doc", backend: "memory://beat-doc" });
 * app.addPeriodicTask("ping", { task: "tasks.ping", schedule: every("1h") });
 * const stop = new AbortController();
 * const beat = await startBeat(app, { signal: stop.signal });
 * stop.abort();
 * await beat.close();
 * await app.close();
 * ```
 */
export async function startBeat(
  app: App,
  options: StartBeatOptions = {},
): Promise<{ scheduler: Scheduler; done: Promise<void>; close(): Promise<void> }> {
  const owned = options.store === undefined;
  const store = options.store ?? await beatStoreFor(app.conf.backendUrl);
  const scheduler = new Scheduler({
    entries: app.periodicTasks,
    store,
    send: (name, entry) => {
      app.logger.info(`Scheduler: Sending due task ${name} (${entry.task})`, {
        entry: name,
        task_name: entry.task,
      });
      return app.sendTask(
        entry.task,
        entry.args ?? [],
        entry.kwargs ?? {},
        (entry.options ?? {}) as SendOptions,
      );
    },
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const done = scheduler.run();
  let closing: Promise<void> | undefined;
  return {
    scheduler,
    done,
    close: () =>
      closing ??= (async () => {
        await scheduler.close();
        if (owned) await store.close();
      })(),
  };
}
