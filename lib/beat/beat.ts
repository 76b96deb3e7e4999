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
import { createBeatStore, knownSchemes, supports } from "../transport/registry.ts";
import { redact } from "../connect.ts";

/** Options of {@linkcode startBeat}. */
export interface StartBeatOptions {
  /** Where last-run times and the leader lease live. @default {beatStoreForApp(app.conf)} */
  store?: BeatStore;
  /** Stops the scheduler. */
  signal?: AbortSignal;
}

/**
 * The beat store matching a URL: Redis for `redis://`, Deno KV for `kv://` and
 * `kv+https://`, memory for `memory://` (the one scheme registry decides).
 *
 * @param url A result backend (or broker) URL.
 * @returns The store; closing it is the caller's job.
 * @throws {TypeError} For a scheme that cannot keep beat's state (`rpc://`, `amqp://`) or an
 * unknown one.
 * @example
 * ```ts
 * import { beatStoreFor } from "./beat.ts";
 * await using store = await beatStoreFor("memory://");
 * ```
 */
export function beatStoreFor(url: string): Promise<BeatStore> {
  return createBeatStore(url);
}

/**
 * Where an app's beat keeps its state: in the result backend when it can (Redis, Deno KV,
 * memory), else in the broker (an `rpc://` backend has no shared state: beat uses a Redis or
 * KV broker's store instead).
 *
 * @param conf The app's broker and backend URLs.
 * @returns The store; closing it is the caller's job.
 * @throws {TypeError} When neither can keep beat's state (e.g. `rpc://` on `amqp://`): beat
 * never falls back to an in-memory store that replicas would not share.
 * @example
 * ```ts
 * import { beatStoreForApp } from "./beat.ts";
 * await using store = await beatStoreForApp({ backendUrl: "memory://", brokerUrl: "memory://" });
 * ```
 */
export function beatStoreForApp(
  conf: { backendUrl: string; brokerUrl: string },
): Promise<BeatStore> {
  if (supports(conf.backendUrl, "beat store")) return createBeatStore(conf.backendUrl);
  if (supports(conf.brokerUrl, "beat store")) return createBeatStore(conf.brokerUrl);
  return Promise.reject(
    new TypeError(
      `Cannot start beat: neither the result backend "${redact(conf.backendUrl)}" nor the ` +
        `broker "${redact(conf.brokerUrl)}" can keep beat's leader lease and run state ` +
        `(supported schemes: ${knownSchemes("beat store").map((s) => `${s}//`).join(", ")}); ` +
        `pass a store, e.g. startBeat(app, { store: new RedisBeatStore(url) })`,
    ),
  );
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
  const store = options.store ?? await beatStoreForApp(app.conf);
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
