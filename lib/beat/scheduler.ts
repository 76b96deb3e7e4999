/**
 * The beat loop: sends periodic tasks on time, once, even with several replicas.
 *
 * @module
 */

import { delay } from "../_signal.ts";
import { claimDue } from "./_tick.ts";
import { type BeatEntries, type BeatEntry, type BeatSend, entryList } from "./entry.ts";
import type { BeatStore } from "./store.ts";

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** The entries, by name (Celery's `beat_schedule`). */
  entries: BeatEntries;
  /** Where the lease and per-entry state live; shared by all replicas. Not closed by the scheduler. */
  store: BeatStore;
  /** Sends one due entry: the app wires it to `app.sendTask(entry.task, ...)`. */
  send: BeatSend;
  /**
   * The clock. Inject one in tests and call {@linkcode Scheduler.tick} by hand.
   * @default {() => new Date()}
   */
  now?: () => Date;
  /** Stops {@linkcode Scheduler.run}. */
  signal?: AbortSignal;
  /**
   * Leader lease length in ms. A replica that dies holding it is replaced within this time.
   * @default {30000}
   */
  leaseTtl?: number;
  /**
   * How often the leader renews its lease and followers try to take it, in ms; also the
   * longest the loop sleeps.
   * @default {leaseTtl / 3}
   */
  renewInterval?: number;
  /**
   * Take the leader lease before sending. With `false` every replica sends, and the per-tick
   * claim alone keeps each tick to one send (more store traffic, no failover delay).
   * @default {true}
   */
  lease?: boolean;
  /**
   * This replica's id in the lease.
   * @default {crypto.randomUUID()}
   */
  owner?: string;
  /**
   * Called with errors the loop survives (store unreachable, `send` failed). The tick whose
   * `send` failed is given back and retried one second later.
   * @default {() => {}}
   */
  onError?: (error: unknown, name?: string) => void;
}

const RETRY_MS = 1_000;

/**
 * Celery beat, safe with replicas. Each pass ({@linkcode Scheduler.tick}):
 *
 * 1. Take or renew the leader lease; a follower does nothing but retry the lease.
 * 2. For each entry, read its persisted state (`lastRunAt`: the scheduled time of the last
 *    tick sent, `totalRunCount`) and, if a tick is due, claim it with a compare-and-set on
 *    that state, then `send`. Two leaders that overlap for a moment (a lease that expired
 *    during a pause) race on the same compare-and-set, and only one sends the tick.
 * 3. Sleep until the next due tick, at most `renewInterval`: no busy loop.
 *
 * Restarts: the state lives in the store, so a restarted beat neither sends a tick twice nor
 * skips one. Catch-up rule: after downtime, all the ticks missed are owed ONE run, sent at
 * once and recorded as the latest missed tick; the schedule then continues normally. (Celery
 * behaves the same way for crontab and interval schedules.) A new entry is owed ticks from
 * the moment beat first saw it, except a `clocked` one, which is owed its single tick even if
 * that time had passed.
 *
 * @example
 * ```ts
 * import { every, MemoryBeatStore, Scheduler } from "./mod.ts";
 * await using store = new MemoryBeatStore();
 * const sent: string[] = [];
 * let now = new Date("2024-01-01T00:00:00Z");
 * await using beat = new Scheduler({
 *   entries: { ping: { task: "tasks.ping", schedule: every(10) } },
 *   store,
 *   send: (name) => void sent.push(name),
 *   now: () => now,
 * });
 * await beat.tick(); // first sight: nothing owed yet
 * now = new Date("2024-01-01T00:00:10Z");
 * await beat.tick();
 * console.assert(sent.length === 1);
 * ```
 */
export class Scheduler implements AsyncDisposable {
  /** This replica's lease owner id. */
  readonly owner: string;
  #entries: [string, BeatEntry][];
  #store: BeatStore;
  #send: BeatSend;
  #now: () => Date;
  #ttl: number;
  #renewEvery: number;
  #useLease: boolean;
  #onError: (error: unknown, name?: string) => void;
  #closer = new AbortController();
  #signal: AbortSignal;
  #leaderUntil = 0;
  #renewedAt = -Infinity;
  #running: Promise<void> | null = null;
  #closing: Promise<void> | null = null;

  /**
   * Creates the scheduler. Nothing runs until {@linkcode Scheduler.run} or
   * {@linkcode Scheduler.tick}.
   *
   * @param options Options.
   * @throws {TypeError} On a malformed entry.
   * @throws {RangeError} On a non-positive lease length.
   */
  constructor(options: SchedulerOptions) {
    this.#entries = entryList(options.entries);
    this.#store = options.store;
    this.#send = options.send;
    this.#now = options.now ?? (() => new Date());
    this.#ttl = options.leaseTtl ?? 30_000;
    this.#renewEvery = options.renewInterval ?? this.#ttl / 3;
    if (!(this.#ttl > 0) || !(this.#renewEvery > 0) || this.#renewEvery >= this.#ttl) {
      throw new RangeError(
        `Cannot use leaseTtl ${this.#ttl} and renewInterval ${this.#renewEvery}: both must be ` +
          `positive and the renew interval shorter than the lease`,
      );
    }
    this.#useLease = options.lease ?? true;
    this.owner = options.owner ?? crypto.randomUUID();
    this.#onError = options.onError ?? (() => {});
    this.#signal = options.signal
      ? AbortSignal.any([options.signal, this.#closer.signal])
      : this.#closer.signal;
  }

  /** Whether this replica held the lease at its last pass (always `true` without a lease). */
  get isLeader(): boolean {
    return !this.#useLease || this.#leaderUntil > this.#now().getTime();
  }

  /**
   * One pass of the loop: lease, then every due entry. Call it by hand with an injected clock
   * in tests.
   *
   * @returns Milliseconds until the next pass should run.
   */
  async tick(): Promise<number> {
    const now = this.#now().getTime();
    if (this.#useLease && !(await this.#holdLease(now))) return this.#renewEvery;
    let wake = now + this.#renewEvery;
    for (const [name, entry] of this.#entries) {
      if (this.#signal.aborted) break;
      try {
        const { claim, nextAt } = await claimDue(this.#store, name, entry.schedule, now);
        if (claim) {
          try {
            await this.#send(name, entry, {
              scheduledAt: new Date(claim.tick),
              runCount: claim.next.totalRunCount,
            });
          } catch (error) {
            // Give the tick back so the next pass sends it; a failed rollback means another
            // replica moved on, and the tick is lost rather than doubled.
            await this.#store.compareAndSet(name, claim.next, claim.prev).catch(() => false);
            this.#onError(error, name);
            wake = Math.min(wake, now + RETRY_MS);
            continue;
          }
        }
        if (nextAt !== null) wake = Math.min(wake, nextAt);
      } catch (error) {
        this.#onError(error, name);
        wake = Math.min(wake, now + RETRY_MS);
      }
    }
    return Math.max(0, wake - this.#now().getTime());
  }

  async #holdLease(now: number): Promise<boolean> {
    const leader = this.#leaderUntil > now;
    if (leader && now - this.#renewedAt < this.#renewEvery) return true;
    try {
      const ok = leader
        ? await this.#store.renewLease(this.owner, this.#ttl)
        : await this.#store.acquireLease(this.owner, this.#ttl);
      this.#leaderUntil = ok ? now + this.#ttl : 0;
      if (ok) this.#renewedAt = now;
      return ok;
    } catch (error) {
      this.#onError(error);
      return this.#leaderUntil > now;
    }
  }

  /**
   * Runs passes until the signal aborts or {@linkcode Scheduler.close}, sleeping between
   * them. Releases the lease on the way out, so a replica takes over at once.
   *
   * @returns Resolves when stopped.
   */
  run(): Promise<void> {
    this.#running ??= this.#loop();
    return this.#running;
  }

  async #loop(): Promise<void> {
    const signal = this.#signal;
    try {
      while (!signal.aborted) {
        const ms = await this.tick();
        if (signal.aborted) break;
        await delay(ms, signal).catch(() => {});
      }
    } finally {
      if (this.#useLease && this.#leaderUntil > 0) {
        this.#leaderUntil = 0;
        await this.#store.releaseLease(this.owner).catch((e) => this.#onError(e));
      }
    }
  }

  /**
   * Stops the loop and releases the lease. Does not close the store. Idempotent.
   *
   * @returns Resolves when stopped.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closer.abort();
      if (this.#running) await this.#running;
      else if (this.#useLease && this.#leaderUntil > 0) {
        this.#leaderUntil = 0;
        await this.#store.releaseLease(this.owner).catch((e) => this.#onError(e));
      }
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
