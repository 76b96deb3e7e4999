/**
 * `kv://[path]`: the embedded default broker, a queue built on Deno KV atomic operations (not
 * `kv.enqueue`/`listenQueue`: those have no named queues and drop messages after 5 retries).
 * Any number of processes may produce and consume on one file at once.
 *
 * Key layout (`P` is the `keyPrefix`, `celeriac` by default; `seq` is a per-process monotonic
 * `Date.now() * 1000 + n`, so keys sort by time; `id` is a random id of the stored message):
 *
 * | Key | Value | Meaning |
 * | --- | --- | --- |
 * | `[P, "q", queue, "ready", 9 - priority, seq, id]` | entry | waiting; listed in key order = priority 9 first, FIFO within a priority |
 * | `[P, "q", queue, "lease", expiresAt, id]` | entry | delivered, not yet acked; claimable again by anyone once `expiresAt` (ms) has passed |
 * | `[P, "q", queue, "delayed", eta, id]` | entry | `schedule()`d; moved to `ready` once `eta` (ms) has passed |
 * | `[P, "q", queue, "dead", seq, id]` | entry | dead letters: rejected without requeue, or delivered `maxDeliveries` times |
 * | `[P, "q", queue, "notify"]` | `Deno.KvU64` | bumped by every publish, watched by consumers |
 * | `[P, "bc", exchange, seq, id]` | `BroadcastMessage` | fan-out (pidbox, events), kept `broadcastExpires` |
 * | `[P, "bcn", exchange]` | `Deno.KvU64` | bumped by every broadcast, watched by subscribers |
 *
 * Options may also be given in the URL's query: `kv:///path/app.kv?leaseTime=5000`.
 *
 * An entry is `{ id, seq, priority, deliveries, message }`. A claim is one atomic operation
 * that checks the `ready` key's versionstamp, deletes it and writes the `lease` key, so two
 * processes can never both take one message; a message whose lease expires (its consumer
 * died) goes back to `ready` under its old key, i.e. at the head of its priority.
 *
 * Wake-ups: `kv.watch` on the `notify` keys wakes consumers of the same process (and of a
 * remote KV Connect store) at once. Deno's local SQLite store does not report writes made by
 * other processes to `watch`, so an idle consumer also looks at its queues every
 * `pollInterval` (100 ms, one small read). Every `maintenanceInterval` (1 s), or at the next
 * due ETA, it moves due `delayed` entries to `ready` and expired leases back to `ready`.
 *
 * @module
 */

import { Notifier } from "../_signal.ts";
import { commit, GroupCommit, KvHandle, retry } from "../_kv.ts";
import type { Message } from "../protocol/message.ts";
import {
  type BroadcastMessage,
  type Broker,
  type ConsumeDirectOptions,
  type ConsumeOptions,
  DEAD_LETTER_REASON_HEADER,
  type Delivery,
  type PublishOptions,
  type SubscribeOptions,
} from "./broker.ts";
import type { BrowseOptions, DeadLetter, QueueCounts, ScheduledMessage } from "./broker.ts";
import {
  type KvAdminContext,
  kvBrowseDeadLetters,
  kvBrowseScheduled,
  kvPurgeDeadLetters,
  kvQueueCounts,
  kvReplayDeadLetters,
} from "./kv_admin.ts";
import {
  checkMaxDeliveries,
  checkQueue,
  consumeLoop,
  type ConsumerContext,
  type ConsumerHooks,
  type RawDelivery,
  type RejectHookOptions,
  type RejectResult,
} from "../transport/consume.ts";

/** Options of {@linkcode KvBroker}. */
export interface KvBrokerOptions {
  /**
   * Deliveries after which a message goes to the dead letters instead of back to its queue.
   * @default {10}
   */
  maxDeliveries?: number;
  /**
   * Lease (visibility timeout) of a delivery, in ms. It is renewed while the delivery is
   * outstanding in a live process; a message whose consumer died is redelivered once it
   * expires.
   * @default {30_000}
   */
  leaseTime?: number;
  /**
   * How often an idle consumer looks for messages published by other processes, in ms.
   * @default {100}
   */
  pollInterval?: number;
  /**
   * How often a consumer promotes due ETAs and reclaims expired leases, in ms.
   * @default {1_000}
   */
  maintenanceInterval?: number;
  /**
   * How long dead letters are kept, in ms; `0` keeps them forever.
   * @default {604_800_000}
   */
  deadLetterExpires?: number;
  /**
   * How long a `broadcast()` message is kept for subscribers that poll, in ms.
   * @default {60_000}
   */
  broadcastExpires?: number;
  /**
   * First part of every key, so several apps can share one store.
   * @default {"celeriac"}
   */
  keyPrefix?: string;
  /** A KV Connect `https://` URL (or a path), used instead of the URL's path. */
  kvUrl?: string;
}

interface Entry {
  id: string;
  seq: number;
  priority: number;
  deliveries: number;
  message: Message;
}

// Deno KV refuses values over 64 KiB; leave room for the entry's other fields.
const MAX_MESSAGE_BYTES = 60_000;
const encoder = new TextEncoder();
let lastSeq = 0;

function nextSeq(): number {
  lastSeq = Math.max(lastSeq + 1, Date.now() * 1000);
  return lastSeq;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`Cannot set ${name}: it must be a positive number, got ${value}`);
  }
  return value;
}

/**
 * A broker on Deno KV: a local SQLite file shared by every process of the machine, or a
 * remote KV Connect store.
 *
 * @example
 * ```ts
 * import { KvBroker } from "./kv.ts";
 * import { encodeTask } from "../protocol/message.ts";
 * await using broker = new KvBroker("kv://:memory:");
 * await broker.publish("celery", encodeTask({ id: "1", name: "t", args: [], kwargs: {} }));
 * console.assert(await broker.purge("celery") === 1);
 * ```
 */
export class KvBroker implements Broker {
  readonly url: string;
  readonly #handle: KvHandle;
  readonly #prefix: string;
  readonly #maxDeliveries: number;
  readonly #leaseTime: number;
  readonly #pollInterval: number;
  readonly #maintenanceInterval: number;
  readonly #deadLetterExpires: number;
  readonly #broadcastExpires: number;
  readonly #closed = new AbortController();
  #closing: Promise<void> | undefined;
  #consumers = new Set<Promise<void>>();
  #writer: GroupCommit | undefined;

  /**
   * Creates the broker; the store is opened on first use.
   *
   * @param url `kv://`, `kv:///abs/path`, `kv://./rel/path`, `kv://:memory:` or
   * `kv+https://...`.
   * @param options Options.
   * @throws {TypeError} For a URL that is not a KV URL.
   * @throws {RangeError} For a bad option.
   */
  constructor(url = "kv://", options: KvBrokerOptions = {}) {
    options = { ...queryOptions(url), ...options };
    this.#handle = new KvHandle(url, options.kvUrl);
    this.url = url;
    this.#prefix = options.keyPrefix ?? "celeriac";
    this.#maxDeliveries = checkMaxDeliveries(options.maxDeliveries);
    this.#leaseTime = positive("leaseTime", options.leaseTime ?? 30_000);
    this.#pollInterval = positive("pollInterval", options.pollInterval ?? 100);
    this.#maintenanceInterval = positive(
      "maintenanceInterval",
      options.maintenanceInterval ?? 1_000,
    );
    this.#deadLetterExpires = options.deadLetterExpires ?? 604_800_000;
    this.#broadcastExpires = positive("broadcastExpires", options.broadcastExpires ?? 60_000);
  }

  #key(queue: string, ...rest: Deno.KvKeyPart[]): Deno.KvKey {
    return [this.#prefix, "q", queue, ...rest];
  }

  /** @internal The `ready` key of an entry. */
  readyKey(queue: string, e: Entry): Deno.KvKey {
    return this.#key(queue, "ready", 9 - e.priority, e.seq, e.id);
  }

  /** @internal The `dead` key of an entry. */
  deadKey(queue: string, e: Entry): Deno.KvKey {
    return this.#key(queue, "dead", e.seq, e.id);
  }

  /** @internal The `notify` key of a queue. */
  notifyKey(queue: string): Deno.KvKey {
    return this.#key(queue, "notify");
  }

  /** @internal The `lease` key of an entry expiring at `expiresAt`. */
  leaseKey(queue: string, expiresAt: number, id: string): Deno.KvKey {
    return this.#key(queue, "lease", expiresAt, id);
  }

  /** @internal Options of dead-letter writes. */
  get deadOptions(): { expireIn?: number } {
    return this.#deadLetterExpires > 0 ? { expireIn: this.#deadLetterExpires } : {};
  }

  /** @internal Most deliveries of a message. */
  get maxDeliveries(): number {
    return this.#maxDeliveries;
  }

  /** @internal Lease time in ms. */
  get leaseTime(): number {
    return this.#leaseTime;
  }

  #open(): Promise<Deno.Kv> {
    if (this.#closed.signal.aborted) {
      return Promise.reject(new Error(`Cannot use broker ${this.url}: it is closed`));
    }
    return this.#handle.acquire();
  }

  /** @internal Adds unconditional writes to the next group commit. */
  async write(build: (op: Deno.AtomicOperation) => void, size?: number): Promise<void> {
    const kv = await this.#open();
    this.#writer ??= new GroupCommit(kv);
    await this.#writer.write(build, size);
  }

  #entry(message: Message, options: PublishOptions): Entry {
    const priority = options.priority ?? message.properties.priority ?? 0;
    if (!Number.isInteger(priority) || priority < 0 || priority > 9) {
      throw new RangeError(`Cannot publish: priority must be an integer 0-9, got ${priority}`);
    }
    const size = encoder.encode(JSON.stringify(message)).byteLength;
    if (size > MAX_MESSAGE_BYTES) {
      throw new RangeError(
        `Cannot publish: the message is ${size} bytes, Deno KV holds at most ${MAX_MESSAGE_BYTES}`,
      );
    }
    return { id: crypto.randomUUID(), seq: nextSeq(), priority, deliveries: 0, message };
  }

  /**
   * Puts a message on a queue.
   *
   * @param queue The queue.
   * @param message The message.
   * @param options Priority (9 first).
   * @returns Once stored.
   * @throws {RangeError} For a bad priority or a message too large for Deno KV.
   */
  async publish(queue: string, message: Message, options: PublishOptions = {}): Promise<void> {
    checkQueue(queue);
    const entry = this.#entry(message, options);
    await this.write(
      (op) => op.set(this.readyKey(queue, entry), entry).sum(this.notifyKey(queue), 1n),
      entry.message.body.length + 500,
    );
  }

  /**
   * Stores a message under its ETA; it becomes claimable once the ETA has passed, so no
   * worker holds it in memory and a restart loses nothing.
   *
   * @param queue The queue.
   * @param message The message.
   * @param eta When it becomes due.
   * @param options Priority.
   * @returns Once stored.
   * @throws {TypeError} For an invalid date.
   */
  async schedule(
    queue: string,
    message: Message,
    eta: Date,
    options: PublishOptions = {},
  ): Promise<void> {
    checkQueue(queue);
    const at = eta instanceof Date ? eta.getTime() : NaN;
    if (!Number.isFinite(at)) throw new TypeError(`Cannot schedule: invalid ETA ${eta}`);
    if (at <= Date.now()) return this.publish(queue, message, options);
    const entry = this.#entry(message, options);
    // The bump wakes consumers, so they shorten their sleep to this ETA.
    await this.write(
      (op) =>
        op.set(this.#key(queue, "delayed", at, entry.id), entry).sum(this.notifyKey(queue), 1n),
      entry.message.body.length + 500,
    );
  }

  /**
   * Streams deliveries until the signal aborts or the broker closes.
   *
   * @param queues The queues, served round-robin.
   * @param options `prefetch` (0 = unlimited), `signal` and `onDeadLetter`.
   * @returns Deliveries; each must be acked or rejected.
   */
  consume(queues: readonly string[], options: ConsumeOptions = {}): AsyncGenerator<Delivery> {
    return consumeLoop(
      queues,
      options,
      {
        closed: this.#closed.signal,
        maxDeliveries: this.#maxDeliveries,
        active: this.#consumers,
      },
      (ctx) => this.#session(ctx),
    );
  }

  // The consume hooks of one consumer.
  async #session(ctx: ConsumerContext): Promise<ConsumerHooks<KvDelivery>> {
    const { queues, signal } = ctx;
    const kv = await this.#open();
    const wake = new Notifier();
    const watchers = watchKeys(kv, queues.map((q) => this.notifyKey(q)), wake);
    // After a lost race, claim from random windows for a while: contenders rarely collide.
    let contention = 0;
    let nextQueue = 0;
    let nextMaintenance = 0;
    let nextDue = Infinity;
    const claim = async (max: number): Promise<KvDelivery[]> => {
      const now = Date.now();
      if (now >= nextMaintenance || now >= nextDue) {
        nextDue = await this.#maintain(kv, queues, signal, ctx);
        nextMaintenance = Date.now() + this.#maintenanceInterval;
      }
      const want = Math.min(max, 10);
      let claimed: KvDelivery[] = [];
      for (let i = 0; i < queues.length && claimed.length === 0 && !signal.aborted; i++) {
        const queue = queues[(nextQueue + i) % queues.length]!;
        for (let attempt = 0; attempt < 8 && !signal.aborted; attempt++) {
          const got = await this.#claim(kv, queue, want, contention > 0, signal, ctx);
          if (got === "empty") break;
          if (got === "raced") {
            contention = 50;
            continue;
          }
          if (contention > 0) contention--;
          claimed = got;
          break;
        }
      }
      nextQueue = (nextQueue + 1) % queues.length;
      return claimed;
    };
    return {
      batch: 10,
      claim,
      wait: (signal) =>
        wake.wait(signal, Math.min(this.#pollInterval, Math.max(0, nextDue - Date.now()))),
      ack: (d) => d.ack(),
      reject: (d, options) => d.reject(options),
      release: async (ds) => {
        await Promise.all(ds.map((d) => d.release().catch(() => {})));
      },
      // Extends the leases of held deliveries that are past a third of their lease.
      renew: async (held) => {
        const threshold = Date.now() + (this.#leaseTime * 2) / 3;
        for (const d of held) {
          if (d.expiresAt > threshold) continue;
          try {
            await d.renew();
          } catch {
            // Retried at the next tick; the lease is only lost if it expires meanwhile.
          }
        }
      },
      renewInterval: Math.max(10, Math.floor(this.#leaseTime / 3)),
      close: () => watchers.stop(),
    };
  }

  // Claims up to `want` waiting messages of `queue` in one atomic operation.
  async #claim(
    kv: Deno.Kv,
    queue: string,
    want: number,
    contended: boolean,
    signal: AbortSignal,
    ctx: ConsumerContext,
  ): Promise<KvDelivery[] | "empty" | "raced"> {
    const limit = contended ? Math.min(want * 4, 64) : want;
    const listed = await retry(
      () => Array.fromAsync(kv.list<unknown>({ prefix: this.#key(queue, "ready") }, { limit })),
      signal,
    );
    if (listed.length === 0) return "empty";
    // Something other than an entry under a `ready` key (a foreign writer, a bug): it goes to
    // the dead letters with its reason instead of stopping every consumer of the queue.
    const list: Deno.KvEntry<Entry>[] = [];
    for (const c of listed) {
      const reason = entryProblem(c.value);
      if (reason === null) list.push(c as Deno.KvEntry<Entry>);
      else await this.#deadLetterRaw(kv, queue, c, reason, signal, ctx);
    }
    if (list.length === 0) return "raced";
    let pick = list.slice(0, want);
    if (contended) {
      // A random window: FIFO is kept within it, not across racing consumers.
      const size = Math.max(1, Math.min(want, Math.ceil(list.length / 2)));
      const start = Math.floor(Math.random() * (list.length - size + 1));
      pick = list.slice(start, start + size);
    }
    const expiresAt = Date.now() + this.#leaseTime;
    const entries = pick.map((c) => ({ ...c.value, deliveries: c.value.deliveries + 1 }));
    const result = await retry(() => {
      const op = kv.atomic();
      pick.forEach((c, i) => {
        op.check(c).delete(c.key).set(this.leaseKey(queue, expiresAt, entries[i]!.id), entries[i]);
      });
      return op.commit();
    }, signal);
    if (!result.ok) return "raced";
    return entries.map((entry) => {
      const key = this.leaseKey(queue, expiresAt, entry.id);
      const d = new KvDelivery(this, kv, queue, entry, key, result.versionstamp);
      d.expiresAt = expiresAt;
      return d;
    });
  }

  // Moves an unreadable `ready` value to the dead letters (as a placeholder message that keeps
  // the start of its text) and reports it.
  async #deadLetterRaw(
    kv: Deno.Kv,
    queue: string,
    c: Deno.KvEntry<unknown>,
    reason: string,
    signal: AbortSignal,
    ctx: ConsumerContext,
  ): Promise<void> {
    let raw: string;
    try {
      raw = typeof c.value === "string" ? c.value : JSON.stringify(c.value) ?? String(c.value);
    } catch {
      raw = String(c.value);
    }
    raw = raw.slice(0, 4096);
    const entry: Entry = {
      id: crypto.randomUUID(),
      seq: nextSeq(),
      priority: 0,
      deliveries: 1,
      message: {
        headers: { [DEAD_LETTER_REASON_HEADER]: reason },
        properties: {},
        body: raw,
        contentType: "application/x-celeriac-unreadable",
        contentEncoding: "utf-8",
      },
    };
    const moved = await commit(
      () =>
        kv.atomic().check(c).delete(c.key).set(this.deadKey(queue, entry), entry, this.deadOptions),
      signal,
    );
    if (moved) ctx.deadLetter({ queue, reason, message: null, raw });
  }

  // Moves due ETAs and expired leases to `ready` (or, past `maxDeliveries`, to the dead
  // letters, reported to `onDeadLetter`); returns the next ETA (or Infinity).
  async #maintain(
    kv: Deno.Kv,
    queues: readonly string[],
    signal: AbortSignal,
    ctx: ConsumerContext,
  ): Promise<number> {
    let nextDue = Infinity;
    for (const queue of queues) {
      const now = Date.now();
      const due = await retry(() =>
        Array.fromAsync(
          kv.list<Entry>({
            prefix: this.#key(queue, "delayed"),
            end: this.#key(queue, "delayed", now + 1),
          }, {
            limit: 100,
          }),
        ), signal);
      for (const d of due) {
        await commit(
          () =>
            kv.atomic().check(d).delete(d.key).set(this.readyKey(queue, d.value), d.value).sum(
              this.notifyKey(queue),
              1n,
            ),
          signal,
        );
      }
      const expired = await retry(() =>
        Array.fromAsync(
          kv.list<Entry>(
            { prefix: this.#key(queue, "lease"), end: this.#key(queue, "lease", now) },
            {
              limit: 100,
            },
          ),
        ), signal);
      for (const l of expired) {
        const dead = l.value.deliveries >= this.#maxDeliveries;
        const reason =
          `lease expired after ${l.value.deliveries} deliveries (maxDeliveries ${this.#maxDeliveries})`;
        const moved = await commit(() => {
          const op = kv.atomic().check(l).delete(l.key);
          return dead
            ? op.set(this.deadKey(queue, l.value), deadEntry(l.value, reason), this.deadOptions)
            : op.set(this.readyKey(queue, l.value), l.value).sum(this.notifyKey(queue), 1n);
        }, signal);
        if (dead && moved) ctx.deadLetter({ queue, reason, message: l.value.message });
      }
      const [next] = due.length === 100 ? [] : await retry(
        () =>
          Array.fromAsync(kv.list<Entry>({ prefix: this.#key(queue, "delayed") }, { limit: 1 })),
        signal,
      );
      const eta = due.length === 100 ? now : next?.key[4];
      if (typeof eta === "number" && eta < nextDue) nextDue = eta;
    }
    return nextDue;
  }

  /**
   * Publishes a fan-out message (pidbox commands, events) to every current subscriber of its
   * exchange, in any process. Kept for `broadcastExpires`.
   *
   * @param message The message.
   * @returns Once stored.
   */
  async broadcast(message: BroadcastMessage): Promise<void> {
    checkQueue(message.exchange);
    const seq = nextSeq();
    const id = crypto.randomUUID();
    await this.write(
      (op) =>
        op.set([this.#prefix, "bc", message.exchange, seq, id], message, {
          expireIn: this.#broadcastExpires,
        }).sum([this.#prefix, "bcn", message.exchange], 1n),
      message.message.body.length + 500,
    );
  }

  /**
   * Streams the fan-out messages of an exchange broadcast after the call, until the signal
   * aborts or the broker closes.
   *
   * @param exchange The exchange, e.g. `celery.pidbox`.
   * @param options `signal`, and `onReady` (called once messages broadcast from now on are
   * sure to be seen).
   * @returns The messages.
   */
  subscribe(
    exchange: string,
    options: SubscribeOptions = {},
  ): AsyncGenerator<BroadcastMessage> {
    checkQueue(exchange);
    return this.#tail<BroadcastMessage>(
      [this.#prefix, "bc", exchange],
      [this.#prefix, "bcn", exchange],
      options,
    );
  }

  /**
   * Publishes to a direct exchange: every {@linkcode KvBroker.consumeDirect} stream bound to
   * `exchange` with `routingKey` gets a copy (pidbox replies). Kept `broadcastExpires`.
   *
   * @param exchange The exchange, e.g. `reply.celery.pidbox`.
   * @param routingKey The routing key (the client's oid).
   * @param message The message.
   * @returns Once stored.
   */
  async publishDirect(exchange: string, routingKey: string, message: Message): Promise<void> {
    checkQueue(exchange);
    const seq = nextSeq();
    const id = crypto.randomUUID();
    await this.write(
      (op) =>
        op.set([this.#prefix, "dc", exchange, routingKey, seq, id], message, {
          expireIn: this.#broadcastExpires,
        }).sum([this.#prefix, "dcn", exchange, routingKey], 1n),
      message.body.length + 500,
    );
  }

  /**
   * Streams the messages published to `exchange` with `routingKey` after the call, until the
   * signal aborts (pidbox reply queues; the queue name only names the stream here).
   *
   * @param exchange The exchange.
   * @param routingKey The binding key.
   * @param options `queue`, `signal`, `onReady`.
   * @returns The messages.
   */
  consumeDirect(
    exchange: string,
    routingKey: string,
    options: ConsumeDirectOptions,
  ): AsyncGenerator<Message> {
    checkQueue(exchange);
    checkQueue(options.queue);
    return this.#tail<Message>(
      [this.#prefix, "dc", exchange, routingKey],
      [this.#prefix, "dcn", exchange, routingKey],
      options,
    );
  }

  // Streams the values written under `[...prefix, seq, id]` after the call, woken by changes
  // of `notify` (and by polling, for writes of other processes).
  async *#tail<T>(
    prefix: Deno.KvKey,
    notify: Deno.KvKey,
    options: { signal?: AbortSignal; onReady?: () => void },
  ): AsyncGenerator<T> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    if (signal.aborted) return;
    const kv = await this.#open();
    const wake = new Notifier();
    const watchers = watchKeys(kv, [notify], wake);
    const since = Date.now() * 1000;
    // Writers' clocks and commit order differ slightly: re-read a short window, skip ids seen.
    const window = 1_000 * 1000;
    const seen = new Map<string, number>();
    let cursor = since;
    const at = prefix.length;
    options.onReady?.();
    try {
      while (!signal.aborted) {
        const entries = await retry(() =>
          Array.fromAsync(
            kv.list<T>({
              start: [...prefix, Math.max(since, cursor - window)],
              end: [...prefix, Number.MAX_SAFE_INTEGER],
            }),
          ), signal);
        for (const e of entries) {
          const seq = e.key[at] as number;
          const id = e.key[at + 1] as string;
          if (seen.has(id)) continue;
          seen.set(id, seq);
          if (seq > cursor) cursor = seq;
          yield e.value;
          if (signal.aborted) return;
        }
        for (const [id, seq] of seen) if (seq < cursor - window) seen.delete(id);
        await wake.wait(signal, this.#pollInterval);
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    } finally {
      await watchers.stop();
    }
  }

  /**
   * Lists the dead letters of a queue (rejected without requeue, or delivered
   * `maxDeliveries` times).
   *
   * @param queue The queue.
   * @returns The messages, oldest first.
   */
  async deadLetters(queue: string): Promise<Message[]> {
    checkQueue(queue);
    const kv = await this.#open();
    const entries = await retry(() =>
      Array.fromAsync(kv.list<Entry>({ prefix: this.#key(queue, "dead") }))
    );
    return entries.map((e) => e.value.message);
  }

  /**
   * Counts the messages waiting on a queue (not the delivered or delayed ones).
   *
   * @param queue The queue.
   * @returns The count.
   */
  async size(queue: string): Promise<number> {
    checkQueue(queue);
    const kv = await this.#open();
    let n = 0;
    for await (const _ of kv.list({ prefix: this.#key(queue, "ready") })) n++;
    return n;
  }

  /**
   * Removes every waiting message of a queue (not the delivered or delayed ones).
   *
   * @param queue The queue.
   * @returns How many were removed.
   */
  async purge(queue: string): Promise<number> {
    checkQueue(queue);
    const kv = await this.#open();
    let removed = 0;
    while (true) {
      const batch = await retry(() =>
        Array.fromAsync(kv.list<Entry>({ prefix: this.#key(queue, "ready") }, { limit: 100 }))
      );
      if (batch.length === 0) return removed;
      for (const e of batch) {
        if (await commit(() => kv.atomic().check(e).delete(e.key))) removed++;
      }
    }
  }

  /**
   * Stops consumers and closes the store (when no other broker or backend uses it).
   * Unacked deliveries keep their leases and are redelivered when those expire.
   *
   * @returns Once closed.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed.abort();
      await Promise.all(this.#consumers);
      await this.#handle.release();
    })();
    return this.#closing;
  }

  /** Same as `close()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // Admin methods (the dashboard): see kv_admin.ts.
  #admin: KvAdminContext = {
    open: () => this.#open(),
    key: (queue, ...rest) => this.#key(queue, ...rest),
    readyKey: (queue, entry) => this.readyKey(queue, entry),
    notifyKey: (queue) => this.notifyKey(queue),
  };
  /** Counts of each queue (waiting, leased, delayed, dead letters). */
  queueCounts(queues: readonly string[]): Promise<QueueCounts[]> {
    return kvQueueCounts(this.#admin, queues);
  }
  /** The delayed (ETA) messages of a queue, soonest first. */
  browseScheduled(queue: string, options?: BrowseOptions): Promise<ScheduledMessage[]> {
    return kvBrowseScheduled(this.#admin, queue, options);
  }
  /** The dead letters of a queue, oldest first. */
  browseDeadLetters(queue: string, options?: BrowseOptions): Promise<DeadLetter[]> {
    return kvBrowseDeadLetters(this.#admin, queue, options);
  }
  /** Moves dead letters back onto their queue; returns how many. */
  replayDeadLetters(queue: string, ids?: readonly string[]): Promise<number> {
    return kvReplayDeadLetters(this.#admin, queue, ids);
  }
  /** Deletes the dead letters of a queue; returns how many. */
  purgeDeadLetters(queue: string): Promise<number> {
    return kvPurgeDeadLetters(this.#admin, queue);
  }
}

// A claimed message and its lease; the consume loop settles it once.
class KvDelivery implements RawDelivery {
  readonly message: Message;
  readonly queue: string;
  readonly redelivered: boolean;
  readonly deliveryCount: number;
  expiresAt = 0;
  readonly #broker: KvBroker;
  readonly #kv: Deno.Kv;
  readonly #entry: Entry;
  #leaseKey: Deno.KvKey;
  #versionstamp: string;
  #settled = false;
  // Serializes renewals with ack/reject.
  #chain: Promise<unknown> = Promise.resolve();

  constructor(
    broker: KvBroker,
    kv: Deno.Kv,
    queue: string,
    entry: Entry,
    leaseKey: Deno.KvKey,
    versionstamp: string,
  ) {
    this.#broker = broker;
    this.#kv = kv;
    this.queue = queue;
    this.#entry = entry;
    this.message = entry.message;
    this.deliveryCount = entry.deliveries;
    this.redelivered = entry.deliveries > 1;
    this.#leaseKey = leaseKey;
    this.#versionstamp = versionstamp;
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(fn);
    this.#chain = next.catch(() => {});
    return next;
  }

  renew(): Promise<void> {
    return this.#run(async () => {
      if (this.#settled) return;
      const expiresAt = Date.now() + this.#broker.leaseTime;
      const key = this.#broker.leaseKey(this.queue, expiresAt, this.#entry.id);
      const result = await retry(() =>
        this.#kv.atomic()
          .check({ key: this.#leaseKey, versionstamp: this.#versionstamp })
          .delete(this.#leaseKey)
          .set(key, this.#entry)
          .commit()
      );
      if (result.ok) {
        this.#leaseKey = key;
        this.#versionstamp = result.versionstamp;
        this.expiresAt = expiresAt;
      } else {
        // Someone reclaimed the expired lease: the message is theirs now.
        this.expiresAt = Infinity;
      }
    });
  }

  ack(): Promise<void> {
    this.#settled = true;
    return this.#run(async () => {
      // Deleting the `ready` key too removes the message if its lease had expired and it
      // went back to the queue meanwhile.
      const lease = this.#leaseKey;
      await this.#broker.write((op) =>
        op.delete(lease).delete(this.#broker.readyKey(this.queue, this.#entry))
      );
    });
  }

  /** Gives back a claimed delivery that was never handed out, not counting it. */
  release(): Promise<void> {
    this.#settled = true;
    return this.#run(async () => {
      const b = this.#broker;
      const entry = { ...this.#entry, deliveries: this.#entry.deliveries - 1 };
      await commit(() =>
        this.#kv.atomic()
          .check({ key: this.#leaseKey, versionstamp: this.#versionstamp })
          .delete(this.#leaseKey)
          .set(b.readyKey(this.queue, entry), entry)
          .sum(b.notifyKey(this.queue), 1n)
      );
    });
  }

  reject({ requeue, reason }: RejectHookOptions): Promise<RejectResult> {
    this.#settled = true;
    return this.#run(async () => {
      const b = this.#broker;
      const ok = await commit(() => {
        const op = this.#kv.atomic()
          .check({ key: this.#leaseKey, versionstamp: this.#versionstamp })
          .delete(this.#leaseKey);
        return requeue
          ? op.set(b.readyKey(this.queue, this.#entry), this.#entry).sum(
            b.notifyKey(this.queue),
            1n,
          )
          : op.set(
            b.deadKey(this.queue, this.#entry),
            deadEntry(this.#entry, reason),
            b.deadOptions,
          );
      });
      return ok ? (requeue ? "requeued" : "dead") : "gone";
    });
  }
}

// Why a stored value is not an entry (null when it is one).
function entryProblem(value: unknown): string | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return `stored value is not an entry (${typeof value})`;
  }
  const e = value as Record<string, unknown>;
  if (typeof e.id !== "string" || typeof e.seq !== "number") return "entry has no id or seq";
  if (typeof e.deliveries !== "number" || typeof e.priority !== "number") {
    return "entry has no delivery count or priority";
  }
  const m = e.message as Record<string, unknown> | null;
  if (
    m === null || typeof m !== "object" || typeof m.body !== "string" ||
    m.headers === null || typeof m.headers !== "object" ||
    m.properties === null || typeof m.properties !== "object"
  ) {
    return "entry holds no message";
  }
  return null;
}

// The dead-lettered copy of an entry: its message carries why.
function deadEntry(entry: Entry, reason: string): Entry {
  return {
    ...entry,
    message: {
      ...entry.message,
      headers: { ...entry.message.headers, [DEAD_LETTER_REASON_HEADER]: reason },
    },
  };
}

// Numeric options and `keyPrefix` may come in the URL: `kv:///path?leaseTime=5000`.
function queryOptions(url: string): KvBrokerOptions {
  const query = /\?([^#]*)/.exec(url)?.[1];
  if (!query) return {};
  const options: Record<string, number | string> = {};
  const numeric = [
    "maxDeliveries",
    "leaseTime",
    "pollInterval",
    "maintenanceInterval",
    "deadLetterExpires",
    "broadcastExpires",
  ];
  for (const [name, value] of new URLSearchParams(query)) {
    if (numeric.includes(name)) options[name] = Number(value);
    else if (name === "keyPrefix") options[name] = value;
    else throw new TypeError(`Cannot use KV URL option "${name}": unknown`);
  }
  return options as KvBrokerOptions;
}

// Watches `keys` (at most 10 per `kv.watch` call) and notifies on every change.
function watchKeys(
  kv: Deno.Kv,
  keys: Deno.KvKey[],
  notifier: Notifier,
): { stop: () => Promise<void> } {
  const readers: ReadableStreamDefaultReader<unknown>[] = [];
  const loops: Promise<void>[] = [];
  for (let i = 0; i < keys.length; i += 10) {
    const reader = kv.watch(keys.slice(i, i + 10)).getReader();
    readers.push(reader);
    loops.push((async () => {
      try {
        while (!(await reader.read()).done) notifier.notify();
      } catch {
        // The store closed: the poll keeps the consumer going.
      }
    })());
  }
  return {
    stop: async () => {
      await Promise.all(readers.map((r) => r.cancel().catch(() => {})));
      await Promise.all(loops);
    },
  };
}
