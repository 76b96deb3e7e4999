/**
 * `redis://` and `rediss://`: a broker on Redis that speaks kombu's Redis transport, so
 * Python Celery producers and workers share queues with celeriac (CELERY_PROTOCOL.md §2.2).
 *
 * Layout (every key takes the optional `keyPrefix`, kombu's `global_keyprefix`):
 * - queue lists `q`, `q\x06\x163`, `q\x06\x166`, `q\x06\x169` (kombu's priority steps), one
 *   JSON envelope per element, `LPUSH` to publish, popped from the right;
 * - `_kombu.binding.q`, `unacked`, `unacked_index`, `unacked_mutex`: as kombu;
 * - `celeriac.deliveries` (hash: delivery tag → deliveries, plus the field `celeriac.pin` that
 *   keeps it in the hashtable encoding), `q.dlq` (dead letters),
 *   `celeriac.eta` (zset of scheduled messages by ETA), `celeriac.processing.<id>.<q>` and
 *   `celeriac.consumer.<id>` (one consumer's wake-up list and liveness key),
 *   `celeriac.processing` (set of those, for the sweep).
 *
 * On Redis Cluster (`redis+cluster://`) a queue's keys share the hash tag `{q}`: lists `{q}`,
 * `{q}\x06\x163`..., `{q}.dlq`, and per queue what kombu keeps once: `{q}.unacked`,
 * `{q}.unacked_index`, `{q}.unacked_mutex`, `{q}.celeriac.deliveries`, `{q}.celeriac.eta`,
 * `{q}.celeriac.processing.<id>`; every script and MULTI then touches one slot (celeriac ⇄
 * celeriac only: kombu has no cluster transport).
 *
 * Claiming is one Lua script (pop + `unacked` bookkeeping, atomically). When every list is
 * empty, the consumer blocks on a dedicated connection with `BLMOVE q → its processing list`,
 * so the message that wakes it is never only in flight: it is in the processing list until the
 * claim sent right behind the BLMOVE on the same connection moves it into `unacked` (no extra
 * round trip), and the sweep drains processing lists of dead consumers.
 *
 * @module
 */

import { delay } from "../_signal.ts";
import { PushChannel } from "../transport/channel.ts";
import {
  closeRedisClient,
  connectRedisClient,
  createRedisClient,
  isTransientRedisError,
  parseRedisUrl,
  type RedisClient,
  RedisDeadlineError,
  type RedisUrl,
  retryTransient,
  scheduleFlush,
  sentinelOptions,
  SharedRedisClient,
  withDeadline,
} from "../_redis.ts";

// A command that has had no reply for this long means a wedged connection (ms).
const COMMAND_DEADLINE = 15_000;
// Longest a stopping consumer waits for its clean-up commands (ms).
const STOP_DEADLINE = 3_000;
// Longest a stopping consumer waits for CLIENT UNBLOCK before it closes the blocking
// connection (ms).
const UNBLOCK_DEADLINE = 1_000;
import { redact } from "../_url.ts";
import { stringifyJson } from "../protocol/json.ts";
import { fromKombuEnvelope, toKombuEnvelope } from "../protocol/kombu.ts";
import type { Message } from "../protocol/message.ts";
import {
  type BroadcastMessage,
  type Broker,
  type ConsumeDirectOptions,
  type ConsumeOptions,
  DEAD_LETTER_REASON_HEADER,
  type DeadLetterEvent,
  type Delivery,
  type PublishOptions,
  type SubscribeOptions,
} from "./broker.ts";
import {
  checkMaxDeliveries,
  checkQueue,
  consumeLoop,
  type ConsumerContext,
  type ConsumerHooks,
  type RawDelivery,
  type RejectResult,
} from "../transport/consume.ts";
import { CLAIM } from "./redis_scripts/claim.ts";
import { DRAIN } from "./redis_scripts/drain.ts";
import { PROMOTE } from "./redis_scripts/promote.ts";
import { RELEASE_LOCK } from "./redis_scripts/release_lock.ts";
import { RESTORE_VISIBLE } from "./redis_scripts/restore_visible.ts";
import { SETTLE } from "./redis_scripts/settle.ts";
import type { BrowseOptions, DeadLetter, QueueCounts, ScheduledMessage } from "./broker.ts";
import {
  type RedisAdminContext,
  redisBrowseDeadLetters,
  redisBrowseScheduled,
  redisPurgeDeadLetters,
  redisQueueCounts,
  redisReplayDeadLetters,
} from "./redis_admin.ts";

/** kombu's separator between a queue name and its priority step. */
export const PRIORITY_SEP = "\x06\x16";
const PRIORITY_STEPS = [0, 3, 6, 9] as const;

/** Options of {@linkcode RedisBroker}. */
export interface RedisBrokerOptions {
  /**
   * How a client sends a task with a countdown or ETA (see {@linkcode Broker.producerEta}):
   * `"queue"` publishes it to its queue at once with its `eta` header, as Celery's clients do,
   * so a Python-only fleet runs it; `"schedule"` parks it in `celeriac.eta` until due (only
   * celeriac workers promote that set). Workers always hand far ETAs back to `celeriac.eta`.
   * @default {"queue"}
   */
  producerEta?: "queue" | "schedule";
  /**
   * Deliveries after which a message goes to the dead-letter list `<queue>.dlq` instead of
   * back to its queue.
   * @default {10}
   */
  maxDeliveries?: number;
  /**
   * How long an unacked message may go without a lease renewal before any consumer (celeriac
   * or kombu) puts it back on its queue, in ms. kombu's `visibility_timeout`.
   * @default {3_600_000}
   */
  visibilityTimeout?: number;
  /**
   * How often held deliveries' leases (their `unacked_index` scores) are renewed, in ms.
   * @default {min(visibilityTimeout / 4, 60_000)}
   */
  leaseInterval?: number;
  /**
   * How often a consumer runs the restore sweep, in ms.
   * @default {min(visibilityTimeout / 2, 60_000)}
   */
  restoreInterval?: number;
  /**
   * Longest a consumer blocks waiting for a message before it looks at every list again
   * (other priorities, other queues, due ETA messages), in ms.
   * @default {1000}
   */
  blockTimeout?: number;
  /**
   * Prefix of every key and channel (kombu's `global_keyprefix`).
   * @default {""}
   */
  keyPrefix?: string;
  /** Receives connection errors; the clients reconnect by themselves. */
  onError?: (error: Error) => void;
  /** Name of every connection (`CLIENT SETNAME`), to find them in `CLIENT LIST`. */
  connectionName?: string;
  /**
   * For `sentinel://`: the monitored master's name (kombu's `master_name`).
   * @default {the only master the sentinels monitor}
   */
  masterName?: string;
  /** For `sentinel://`: the sentinels' own password (kombu's `sentinel_kwargs.password`). */
  sentinelPassword?: string;
}

interface Claimed {
  queue: string;
  tag: string;
  raw: string;
  count: number;
}

interface Envelope {
  body: string;
  "content-encoding"?: string;
  "content-type"?: string;
  headers?: Record<string, unknown>;
  properties?: Record<string, unknown> & { delivery_tag?: string };
}

interface ConsumerState {
  id: string;
  aliveKey: string;
}

interface RedisDelivery extends RawDelivery {
  readonly claimed: Claimed;
}

// How much of an undecodable envelope a dead-letter event carries.
const RAW_EXCERPT = 4096;

interface PushBatch {
  values: string[];
  done: PromiseWithResolvers<void>;
}

// Most envelopes in one LPUSH.
const PUSH_BATCH = 1000;

interface AckWaiter {
  tag: string;
  queue: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * kombu's priority step for a priority: the highest step at or below it, after clamping to
 * 0–9 (`Channel.priority`).
 *
 * @param priority A message priority.
 * @returns 0, 3, 6 or 9.
 * @example
 * ```ts
 * import { priorityStep } from "./redis.ts";
 * console.assert(priorityStep(5) === 3 && priorityStep(9) === 9 && priorityStep(0) === 0);
 * ```
 */
export function priorityStep(priority: number): number {
  const p = Math.max(0, Math.min(9, Math.trunc(Number.isFinite(priority) ? priority : 0)));
  let step = 0;
  for (const s of PRIORITY_STEPS) if (s <= p) step = s;
  return step;
}

// The envelope text for a queue list or a fanout channel, with the priority given.
function envelopeText(
  message: Message,
  queue: string,
  priority: number,
  exchange = "",
  routingKey = queue,
): string {
  return stringifyJson(toKombuEnvelope(
    { ...message, properties: { ...message.properties, priority } },
    { queue, exchange, routingKey },
  ));
}

// Rewrites an envelope without changing what it says otherwise: numbers keep their source
// text (an int above 2^53 from Python stays the same integer). Text that is not a JSON
// object is returned unchanged.
function editEnvelope(raw: string, edit: (env: Envelope) => void): string {
  try {
    const env = (JSON.parse as (t: string, r: Reviver) => unknown)(raw, keepNumbers);
    if (!isObject(env)) return raw;
    edit(env as unknown as Envelope);
    return JSON.stringify(env);
  } catch {
    return raw;
  }
}

type Reviver = (key: string, value: unknown, context?: { source?: string }) => unknown;
const rawJson = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;
const keepNumbers: Reviver = (_key, value, context) =>
  typeof value === "number" && context?.source !== undefined &&
    String(value) !== context.source
    ? rawJson(context.source)
    : value;

// kombu's `_do_restore_message`: mark the message redelivered in headers and delivery_info.
function markRedelivered(raw: string): string {
  return editEnvelope(raw, (env) => {
    if (isObject(env.headers)) env.headers.redelivered = true;
    const info = env.properties?.delivery_info;
    if (isObject(info)) info.redelivered = true;
  });
}

// The dead-lettered copy of an envelope, with why in its headers.
function withDeadReason(raw: string, reason: string): string {
  return editEnvelope(raw, (env) => {
    if (env.headers === undefined || env.headers === null) env.headers = {};
    if (isObject(env.headers)) env.headers[DEAD_LETTER_REASON_HEADER] = reason;
  });
}

/**
 * A Redis broker, wire compatible with kombu's Redis transport.
 *
 * @example
 * ```ts ignore
 * import { RedisBroker } from "./redis.ts";
 * import { encodeTask } from "../protocol/message.ts";
 * await using broker = new RedisBroker("redis://127.0.0.1:6379/0");
 * await broker.publish("celery", encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} }));
 * ```
 */
export class RedisBroker implements Broker {
  readonly url: string;
  /** How clients send ETA tasks: see {@linkcode RedisBrokerOptions.producerEta}. */
  readonly producerEta: "queue" | "schedule";
  #url: RedisUrl;
  #prefix: string;
  #maxDeliveries: number;
  #visibility: number;
  #leaseInterval: number;
  #restoreInterval: number;
  #blockTimeout: number;
  #onError: (e: Error) => void;
  #name: string | undefined;
  #client: SharedRedisClient;
  #subscriber: Promise<RedisClient> | undefined;
  #others = new Set<RedisClient>();
  #closed = new AbortController();
  #closing: Promise<void> | undefined;
  #declared = new Set<string>();
  #pushes = new Map<string, PushBatch>();
  // Deliveries handed out and not settled yet, by tag: their leases are renewed.
  #held = new Map<string, Claimed>();
  #consumers = new Set<ConsumerState>();
  // Consume loops while they run (not while they wait at a yield).
  #active = new Set<Promise<void>>();
  #acks: AckWaiter[] = [];
  // Ack batches sent and not answered yet.
  #acksSent = 0;
  #nextRestore = 0;
  #nextPromote = 0;
  // `redis+cluster://`: per-queue bookkeeping with hash tags.
  #cluster: boolean;
  // Queues consumed (on a cluster, the ones whose ETA sets and unacked hashes this broker
  // sweeps).
  #consumed = new Set<string>();

  /**
   * Creates the broker; it connects on first use.
   *
   * @param url `redis://[[user]:password@]host[:port][/db]` or `rediss://...`.
   * @param options Options.
   * @throws {TypeError} For a malformed URL.
   * @throws {RangeError} For a bad option.
   */
  constructor(url: string, options: RedisBrokerOptions = {}) {
    this.url = redact(url);
    this.producerEta = options.producerEta ?? "queue";
    this.#url = parseRedisUrl(url, {
      ...(options.masterName !== undefined ? { masterName: options.masterName } : {}),
      ...(options.sentinelPassword !== undefined
        ? { sentinelPassword: options.sentinelPassword }
        : {}),
    });
    this.#prefix = options.keyPrefix ?? "";
    this.#cluster = this.#url.cluster !== undefined;
    this.#maxDeliveries = checkMaxDeliveries(options.maxDeliveries);
    this.#visibility = options.visibilityTimeout ?? 3_600_000;
    if (!(this.#visibility > 0)) {
      throw new RangeError(
        `Cannot set visibilityTimeout: it must be positive, got ${this.#visibility}`,
      );
    }
    this.#leaseInterval = options.leaseInterval ?? Math.min(this.#visibility / 4, 60_000);
    this.#restoreInterval = options.restoreInterval ?? Math.min(this.#visibility / 2, 60_000);
    this.#blockTimeout = options.blockTimeout ?? 1000;
    this.#onError = options.onError ?? (() => {});
    this.#name = options.connectionName;
    this.#client = new SharedRedisClient(() =>
      createRedisClient(this.#url, this.#onError, this.#name)
    );
  }

  #key(name: string): string {
    return this.#prefix + name;
  }

  // On a cluster, a queue's keys share the hash tag `{queue}`, so that one script or MULTI
  // can touch them all; elsewhere, kombu's layout.
  #tag(queue: string): string {
    return `${this.#prefix}{${queue}}`;
  }

  #listKey(queue: string, step: number): string {
    const base = this.#cluster ? this.#tag(queue) : this.#key(queue);
    return step === 0 ? base : `${base}${PRIORITY_SEP}${step}`;
  }

  #deadKey(queue: string): string {
    return this.#cluster ? `${this.#tag(queue)}.dlq` : this.#key(`${queue}.dlq`);
  }

  // A bookkeeping key (`unacked`, `unacked_index`, `unacked_mutex`, `celeriac.deliveries`,
  // `celeriac.eta`): one for all queues as kombu, or one per queue on a cluster.
  #queueKey(queue: string, name: string): string {
    return this.#cluster ? `${this.#tag(queue)}.${name}` : this.#key(name);
  }

  // A consumer's wake-up list for a queue.
  #processingKey(id: string, queue: string): string {
    return this.#cluster
      ? `${this.#tag(queue)}.celeriac.processing.${id}`
      : this.#key(`celeriac.processing.${id}.${queue}`);
  }

  // The bookkeeping scopes: `[""]` (kombu's global keys) or, on a cluster, the queues this
  // broker consumes.
  #scopes(): string[] {
    return this.#cluster ? [...this.#consumed] : [""];
  }

  #checkOpen(): void {
    if (this.#closed.signal.aborted) throw new Error(`Broker ${this.url} is closed`);
  }

  #connect(): Promise<RedisClient> {
    this.#checkOpen();
    return this.#client.get();
  }

  /**
   * Makes one connection attempt now, if there is no client yet.
   *
   * @param options `signal` gives up the attempt.
   * @returns When connected.
   */
  async connect(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#checkOpen();
    await this.#client.get(options.signal);
  }

  // Disconnects a wedged client; the next #connect() makes a new shared one if it was that.
  #reset(wedged: RedisClient): void {
    this.#others.delete(wedged);
    this.#client.replace(wedged);
  }

  // Runs idempotent commands on the current client: transient failures are retried, and a
  // client that gives no reply within COMMAND_DEADLINE is dropped and replaced.
  #retry<T>(fn: (client: RedisClient) => Promise<T>): Promise<T> {
    return retryTransient(async () => {
      const client = await this.#connect();
      try {
        return await withDeadline(fn(client), COMMAND_DEADLINE, "command");
      } catch (error) {
        if (error instanceof RedisDeadlineError) {
          this.#onError(error);
          this.#reset(client);
        }
        throw error;
      }
    }, this.#closed.signal);
  }

  // A connection's id, for CLIENT UNBLOCK; 0 on a cluster (which does not use it) and where
  // the server refuses CLIENT commands (ACLs, a managed service): a stop then closes the
  // connection instead.
  async #clientId(client: RedisClient): Promise<number> {
    if (this.#cluster) return 0;
    try {
      return Number(
        await withDeadline(client.sendCommand(["CLIENT", "ID"]), COMMAND_DEADLINE, "client id"),
      ) || 0;
    } catch (error) {
      // Transient failures are the caller's to retry; a refusal (NOPERM, a renamed command) is
      // not one.
      if (isTransientRedisError(error)) throw error;
      return 0;
    }
  }

  async #dedicated(): Promise<RedisClient> {
    const client = createRedisClient(this.#url, this.#onError, this.#name);
    this.#others.add(client);
    try {
      await connectRedisClient(client);
    } catch (error) {
      this.#others.delete(client);
      throw error;
    }
    return client;
  }

  /** The dead-letter list of a queue: messages rejected or delivered too many times. */
  async deadLetters(queue: string): Promise<Message[]> {
    const client = await this.#connect();
    const raws = await client.lRange(this.#deadKey(queue), 0, -1);
    return raws.reverse().map((raw) => {
      try {
        return fromKombuEnvelope(raw);
      } catch {
        return { headers: {}, properties: {}, body: raw, contentType: "", contentEncoding: "" };
      }
    });
  }

  async publish(queue: string, message: Message, options: PublishOptions = {}): Promise<void> {
    checkQueue(queue);
    this.#checkOpen();
    const priority = options.priority ?? message.properties.priority ?? 0;
    const envelope = envelopeText(message, queue, priority);
    // Both commands leave in the same tick: node-redis pipelines them on one write. A publish
    // cut off by a lost connection or a restarting server is sent again once it is back, as
    // Celery's default publish retry does: at least once (a lost reply can mean a duplicate).
    const declared = this.#declared.has(queue)
      ? undefined
      : this.#retry(async (c) => await this.#declare(c, queue));
    const pushed = this.#push(this.#listKey(queue, priorityStep(priority)), envelope);
    await (declared ? Promise.all([declared, pushed]) : pushed);
  }

  // Publishes to the same list in the same turn of the microtask queue share one LPUSH (in
  // call order, so the list order is the same as with one LPUSH each): a producer sending
  // many tasks at once costs Redis and the client one command per batch, not one per task.
  #push(key: string, envelope: string): Promise<void> {
    let batch = this.#pushes.get(key);
    if (!batch) {
      batch = { values: [], done: Promise.withResolvers<void>() };
      this.#pushes.set(key, batch);
      if (this.#pushes.size === 1) queueMicrotask(() => this.#flushPushes());
    }
    batch.values.push(envelope);
    const promise = batch.done.promise;
    if (batch.values.length >= PUSH_BATCH) {
      this.#pushes.delete(key);
      this.#sendPush(key, batch);
    }
    return promise;
  }

  #flushPushes(): void {
    const batches = this.#pushes;
    this.#pushes = new Map();
    for (const [key, batch] of batches) this.#sendPush(key, batch);
  }

  #sendPush(key: string, batch: PushBatch): void {
    this.#retry((c) => c.lPush(key, batch.values))
      .then(() => batch.done.resolve(), batch.done.reject);
  }

  // kombu's binding for a queue on the default exchange, once per queue per broker.
  #declare(client: RedisClient, queue: string): Promise<unknown> | undefined {
    if (this.#declared.has(queue)) return undefined;
    this.#declared.add(queue);
    return client.sAdd(
      this.#key(`_kombu.binding.${queue}`),
      `${queue}${PRIORITY_SEP}${PRIORITY_SEP}${queue}`,
    ).catch((e) => {
      this.#declared.delete(queue);
      throw e;
    });
  }

  async schedule(
    queue: string,
    message: Message,
    eta: Date,
    options: PublishOptions = {},
  ): Promise<void> {
    checkQueue(queue);
    if (Number.isNaN(eta.getTime())) throw new TypeError("Cannot schedule: the ETA is invalid");
    this.#checkOpen();
    const priority = options.priority ?? message.properties.priority ?? 0;
    const member = JSON.stringify([
      this.#listKey(queue, priorityStep(priority)),
      envelopeText(message, queue, priority),
    ]);
    await this.#retry((c) =>
      Promise.all([
        this.#declare(c, queue),
        c.zAdd(this.#queueKey(queue, "celeriac.eta"), { score: eta.getTime(), value: member }),
      ])
    );
    this.#nextPromote = Math.min(this.#nextPromote, eta.getTime());
  }

  async purge(queue: string): Promise<number> {
    checkQueue(queue);
    const client = await this.#connect();
    const keys = PRIORITY_STEPS.map((s) => this.#listKey(queue, s));
    const replies = await client.multi()
      .lLen(keys[0]!).lLen(keys[1]!).lLen(keys[2]!).lLen(keys[3]!)
      .del(keys)
      .exec();
    return replies.slice(0, 4).reduce<number>((n, r) => n + Number(r), 0);
  }

  consume(queues: readonly string[], options: ConsumeOptions = {}): AsyncGenerator<Delivery> {
    return consumeLoop(
      queues,
      options,
      { closed: this.#closed.signal, maxDeliveries: this.#maxDeliveries, active: this.#active },
      (ctx) => this.#session(ctx),
    );
  }

  // The consume hooks of one consumer: a claim script over its queues, and a blocking
  // BLMOVE on a dedicated connection when they are empty.
  async #session(ctx: ConsumerContext): Promise<ConsumerHooks<RedisDelivery>> {
    const { queues, signal } = ctx;
    // A connect fails at once while the server is down: wait for it as other commands do.
    let client = await this.#retry((c) => Promise.resolve(c));
    const id = crypto.randomUUID();
    const state: ConsumerState = { id, aliveKey: this.#key(`celeriac.consumer.${id}`) };
    const processing = queues.map((q) => this.#processingKey(id, q));
    for (const q of queues) this.#consumed.add(q);
    const registry = queues.map((q, i) =>
      JSON.stringify([processing[i], this.#listKey(q, 0), state.aliveKey])
    );
    // The server may go away between `ready` and here: a transient error retries the set-up
    // (with backoff, until the consumer stops) instead of ending the consume stream.
    let blocker!: RedisClient;
    let blockerId = 0;
    for (let attempt = 0;; attempt++) {
      try {
        if (attempt > 0 && !client.isOpen) client = await this.#connect();
        if (this.#cluster) {
          await client.set(state.aliveKey, "1", { PX: this.#aliveTtl() });
          await client.sAdd(this.#key("celeriac.processing"), registry);
        } else {
          await client.multi()
            .set(state.aliveKey, "1", { PX: this.#aliveTtl() })
            .sAdd(this.#key("celeriac.processing"), registry)
            .exec();
        }
        blocker = await this.#dedicated();
        blockerId = await this.#clientId(blocker);
        break;
      } catch (error) {
        if (signal.aborted || !isTransientRedisError(error)) throw error;
        this.#onError(error as Error);
        await delay(Math.min(100 * 2 ** attempt, 5_000), signal).catch(() => {});
        if (signal.aborted) throw error;
      }
    }
    this.#consumers.add(state);
    // A stopping consumer ends its BLMOVE with CLIENT UNBLOCK, as a timeout would: the claim
    // queued behind it (see `wait`) still runs and replies, so what it claimed is handed back
    // instead of waiting in `unacked` for the visibility timeout. A server that does not answer
    // (and a cluster, where no claim follows the BLMOVE, or a server that refuses CLIENT
    // commands) gets the connection closed instead.
    const disconnect = () => void blocker.disconnect().catch(() => {});
    const unblock = () => {
      if (blockerId === 0) return disconnect();
      void withDeadline(
        client.sendCommand(["CLIENT", "UNBLOCK", String(blockerId)]),
        UNBLOCK_DEADLINE,
        "unblock",
      ).catch(disconnect);
    };
    signal.addEventListener("abort", unblock, { once: true });
    let turn = 0;
    const handOut = ({ claimed, dead }: { claimed: Claimed[]; dead: DeadLetterEvent[] }) => {
      for (const event of dead) ctx.deadLetter(event);
      if (claimed.length > 0) turn++;
      return claimed.map((c) => {
        this.#held.set(c.tag, c);
        return this.#delivery(c);
      });
    };
    return {
      claim: async (max) => {
        await withDeadline(this.#maintain(client), COMMAND_DEADLINE, "restore sweep");
        return handOut(
          await withDeadline(
            this.#claim(client, queues, processing, turn, max),
            COMMAND_DEADLINE,
            "claim",
          ),
        );
      },
      // BLMOVE, with a claim sent right behind it on the same connection: Redis runs the claim
      // as soon as the BLMOVE returns (a message moved, or the timeout), so a message that
      // wakes an idle consumer is claimed without another round trip. On a cluster the claim
      // takes one round trip per queue, so it stays a separate step there.
      wait: async (_signal, max) => {
        if (signal.aborted) return;
        const i = turn++ % queues.length;
        const wait = Math.max(10, Math.min(this.#blockTimeout, this.#nextPromote - Date.now()));
        const moved = withDeadline(
          blocker.blMove(
            this.#listKey(queues[i]!, 0),
            processing[i]!,
            "RIGHT",
            "LEFT",
            wait / 1000,
          ),
          wait + COMMAND_DEADLINE,
          "blocking wait",
        );
        if (this.#cluster) {
          await moved;
          return;
        }
        const claimed = withDeadline(
          this.#claimFrom(blocker, queues, processing, turn, max),
          wait + COMMAND_DEADLINE,
          "claim",
        );
        // Both settle: the claim fails with the BLMOVE when the connection drops.
        const [move, claim] = await Promise.allSettled([moved, claimed]);
        if (move.status === "rejected") throw move.reason;
        if (claim.status === "rejected") throw claim.reason;
        return handOut(claim.value);
      },
      recover: async (error) => {
        this.#onError(error as Error);
        // A wedged connection never recovers by itself (Celery #8030): replace it.
        const wedged = error instanceof RedisDeadlineError;
        try {
          if (wedged || !client.isOpen) {
            this.#reset(client);
            client = await this.#connect();
          }
          if (wedged || !blocker.isOpen) {
            this.#reset(blocker);
            blocker = await this.#dedicated();
            blockerId = await this.#clientId(blocker);
          }
        } catch (e) {
          this.#onError(e as Error);
        }
        await delay(100, signal).catch(() => {});
      },
      ack: (d) => {
        this.#held.delete(d.claimed.tag);
        return this.#ack(d.claimed);
      },
      reject: async (d, { requeue, reason }) => {
        this.#held.delete(d.claimed.tag);
        return await this.#settle(d.claimed, requeue ? "requeue" : "dead", "left", reason);
      },
      // Claimed but never handed out: straight back to the consume end of their queues.
      release: async (ds) => {
        for (const d of [...ds].reverse()) {
          try {
            await this.#settle(d.claimed, "release", "right");
            this.#held.delete(d.claimed.tag);
          } catch (error) {
            // Still held: close() restores it (kombu's restore_at_shutdown).
            this.#onError(error as Error);
          }
        }
      },
      // Keeps held deliveries fresh in `unacked_index` (XX: never re-adds one restored by
      // someone else), and this consumer's liveness key alive while it runs.
      renew: async (held) => {
        const c = await this.#client.peek();
        if (!c?.isReady) return;
        const now = Date.now() / 1000;
        const lease = (ds: typeof held) => ds.map((d) => ({ score: now, value: d.claimed.tag }));
        try {
          if (this.#cluster) {
            // One ZADD per queue (per slot), the liveness key on its own.
            const byQueue = Map.groupBy(held, (d) => d.claimed.queue);
            await Promise.all([
              ...[...byQueue].map(([q, ds]) =>
                c.zAdd(this.#queueKey(q, "unacked_index"), lease(ds), { XX: true })
              ),
              ...(this.#consumers.has(state) ? [c.pExpire(state.aliveKey, this.#aliveTtl())] : []),
            ]);
            return;
          }
          const multi = c.multi();
          if (held.length > 0) {
            multi.zAdd(this.#key("unacked_index"), lease(held), { XX: true });
          }
          if (this.#consumers.has(state)) multi.pExpire(state.aliveKey, this.#aliveTtl());
          await multi.exec();
        } catch (error) {
          this.#onError(error as Error);
        }
      },
      renewInterval: this.#leaseInterval,
      close: async () => {
        signal.removeEventListener("abort", unblock);
        this.#consumers.delete(state);
        // Bounded: a server that is down must not hold a stopping worker (the sweep drains the
        // processing lists of a consumer whose liveness key expired).
        try {
          await withDeadline(
            (async () => {
              for (let i = 0; i < queues.length; i++) {
                await DRAIN.run(client, [processing[i]!, this.#listKey(queues[i]!, 0)], []);
              }
              if (this.#cluster) {
                await client.sRem(this.#key("celeriac.processing"), registry);
                await client.del(state.aliveKey);
              } else {
                await client.multi()
                  .sRem(this.#key("celeriac.processing"), registry)
                  .del(state.aliveKey)
                  .exec();
              }
            })(),
            STOP_DEADLINE,
            "stop consumer",
          );
        } catch (error) {
          this.#onError(error as Error);
        }
        this.#others.delete(blocker);
        await closeRedisClient(blocker, 0);
      },
    };
  }

  async #claim(
    client: RedisClient,
    queues: readonly string[],
    processing: string[],
    turn: number,
    room: number,
  ): Promise<{ claimed: Claimed[]; dead: DeadLetterEvent[] }> {
    if (!this.#cluster || queues.length === 1) {
      return await this.#claimFrom(client, queues, processing, turn, room);
    }
    // On a cluster, one script per queue (its keys share a slot), taking turns.
    const claimed: Claimed[] = [];
    const dead: DeadLetterEvent[] = [];
    const n = queues.length;
    for (let j = 0; j < n && claimed.length < room; j++) {
      const i = (turn + j) % n;
      const got = await this.#claimFrom(
        client,
        [queues[i]!],
        [processing[i]!],
        0,
        room - claimed.length,
      );
      claimed.push(...got.claimed);
      dead.push(...got.dead);
    }
    return { claimed, dead };
  }

  async #claimFrom(
    client: RedisClient,
    queues: readonly string[],
    processing: string[],
    turn: number,
    room: number,
  ): Promise<{ claimed: Claimed[]; dead: DeadLetterEvent[] }> {
    // On a cluster this is one queue, whose bookkeeping keys share its slot.
    const scope = this.#cluster ? queues[0]! : "";
    const keys = [
      this.#queueKey(scope, "unacked"),
      this.#queueKey(scope, "unacked_index"),
      this.#queueKey(scope, "celeriac.deliveries"),
    ];
    const names: string[] = [];
    queues.forEach((q, i) => {
      keys.push(processing[i]!, this.#deadKey(q));
      names.push(q);
    });
    const n = queues.length;
    for (const step of PRIORITY_STEPS) {
      for (let j = 0; j < n; j++) {
        const q = queues[(turn + j) % n]!;
        keys.push(this.#listKey(q, step), this.#deadKey(q));
        names.push(q);
      }
    }
    const [reply, deadReply] = await CLAIM.run(client, keys, [
      Date.now() / 1000,
      this.#maxDeliveries,
      room,
      ...names,
    ]) as [(string | number)[], (string | number)[]];
    const claimed: Claimed[] = [];
    for (let i = 0; i + 3 < reply.length; i += 4) {
      claimed.push({
        queue: String(reply[i]),
        raw: String(reply[i + 1]),
        count: Number(reply[i + 2]),
        tag: String(reply[i + 3]),
      });
    }
    const dead: DeadLetterEvent[] = [];
    for (let i = 0; i + 2 < (deadReply?.length ?? 0); i += 3) {
      const raw = String(deadReply[i + 2]);
      let message: Message | null = null;
      try {
        message = fromKombuEnvelope(raw);
      } catch {
        // Undecodable (or cut): the event carries the start of the text.
      }
      const event: DeadLetterEvent = {
        queue: String(deadReply[i]),
        reason: String(deadReply[i + 1]),
        message,
      };
      if (message === null) event.raw = raw;
      dead.push(event);
    }
    return { claimed, dead };
  }

  #delivery(claimed: Claimed): RedisDelivery {
    let redelivered = claimed.count > 1;
    try {
      const message = fromKombuEnvelope(claimed.raw);
      const info = message.properties.delivery_info;
      if (message.headers.redelivered === true || (isObject(info) && info.redelivered === true)) {
        redelivered = true;
      }
      return {
        claimed,
        message,
        queue: claimed.queue,
        redelivered,
        deliveryCount: Math.max(claimed.count, redelivered ? 2 : 1),
      };
    } catch (cause) {
      // Undecodable: the consume loop dead-letters it and reports why.
      return {
        claimed,
        message: null,
        queue: claimed.queue,
        redelivered,
        deliveryCount: claimed.count,
        error: `the envelope could not be decoded: ${(cause as Error).message}`,
        raw: claimed.raw.slice(0, RAW_EXCERPT),
      };
    }
  }

  // With early ack every task waits for its ack before it starts: acks share one MULTI as
  // scheduleFlush batches them.
  #ack(claimed: Claimed): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    if (this.#acks.length === 0) scheduleFlush(this.#acksSent, () => void this.#flushAcks());
    this.#acks.push({ tag: claimed.tag, queue: claimed.queue, resolve, reject });
    return promise;
  }

  // Also called by close(); the scheduled call then finds an empty batch, or a newer one.
  async #flushAcks(): Promise<void> {
    const batch = this.#acks;
    this.#acks = [];
    if (batch.length === 0) return;
    this.#acksSent++;
    // One MULTI for kombu's global keys, one per queue (per slot) on a cluster.
    const groups = this.#cluster ? Map.groupBy(batch, (a) => a.queue) : new Map([["", batch]]);
    try {
      // Idempotent: repeated after a lost connection or while a restarted server loads.
      await Promise.all([...groups].map(([scope, acks]) => {
        const tags = acks.map((a) => a.tag);
        return this.#retry((client) =>
          client.multi()
            .zRem(this.#queueKey(scope, "unacked_index"), tags)
            .hDel(this.#queueKey(scope, "unacked"), tags)
            .hDel(this.#queueKey(scope, "celeriac.deliveries"), tags)
            .exec()
        );
      }));
      for (const a of batch) a.resolve();
    } catch (error) {
      for (const a of batch) a.reject(error);
    } finally {
      this.#acksSent--;
    }
  }

  async #settle(
    claimed: Claimed,
    mode: "requeue" | "dead" | "restore" | "release",
    end: "left" | "right",
    reason = "rejected",
  ): Promise<RejectResult> {
    const tag = claimed.tag;
    const again = mode === "dead"
      ? ""
      : mode === "release"
      ? claimed.raw
      : markRedelivered(claimed.raw);
    // The dead-lettered copy carries why (when the envelope is JSON).
    const dead = mode === "requeue" || mode === "dead" ? withDeadReason(claimed.raw, reason) : "";
    // Idempotent (a tag no longer unacked is "gone"), so repeated after transient failures.
    return String(
      await this.#retry(
        (client) =>
          SETTLE.run(client, [
            this.#queueKey(claimed.queue, "unacked"),
            this.#queueKey(claimed.queue, "unacked_index"),
            this.#queueKey(claimed.queue, "celeriac.deliveries"),
            this.#listKey(claimed.queue, 0),
            this.#deadKey(claimed.queue),
          ], [tag, again, mode, this.#maxDeliveries, end, dead]),
      ),
    ) as RejectResult;
  }

  #aliveTtl(): number {
    return Math.max(this.#leaseInterval * 3, 5_000);
  }

  async #maintain(client: RedisClient): Promise<void> {
    const now = Date.now();
    if (now >= this.#nextPromote) await this.#promote(client);
    if (now >= this.#nextRestore) {
      this.#nextRestore = now + this.#restoreInterval;
      await this.restoreVisible();
    }
  }

  async #promote(client: RedisClient): Promise<void> {
    let nextDue = Infinity;
    for (const scope of this.#scopes()) {
      const key = this.#queueKey(scope, "celeriac.eta");
      const [, next] = await PROMOTE.run(client, [key], [Date.now(), 1000]) as [number, string];
      if (next !== "") nextDue = Math.min(nextDue, Number(next));
    }
    this.#nextPromote = Math.min(Date.now() + this.#blockTimeout, nextDue);
  }

  /**
   * Runs one restore sweep now, under kombu's `unacked_mutex`: unacked messages whose lease is
   * older than the visibility timeout go back to their queues, marked redelivered (or to the
   * dead-letter list past `maxDeliveries`), and wake-up lists of consumers that died are
   * drained. Consumers run it on their own every `restoreInterval`.
   *
   * @returns How many messages were put back or dead-lettered.
   */
  async restoreVisible(): Promise<number> {
    const client = await this.#connect();
    let restored = 0;
    for (const scope of this.#scopes()) restored += await this.#restoreScope(client, scope);
    if (this.#cluster) restored += await this.#drainDead(client);
    return restored;
  }

  // One restore sweep over kombu's global bookkeeping (`scope` ""), or one queue's on a
  // cluster.
  async #restoreScope(client: RedisClient, scope: string): Promise<number> {
    const token = crypto.randomUUID();
    const mutex = this.#queueKey(scope, "unacked_mutex");
    // kombu holds this mutex for up to 300 s; ours expires after the visibility timeout (5 s at
    // least), so a consumer killed in the middle of a sweep blocks others' restores only that
    // long. Overlapping sweeps stay safe: each restore is one script that re-checks the lease.
    const ttl = Math.min(300_000, Math.max(5_000, this.#visibility));
    const locked = await client.set(mutex, token, { NX: true, PX: ttl });
    if (locked !== "OK") return 0;
    let restored = 0;
    try {
      const cutoff = (Date.now() - this.#visibility) / 1000;
      const index = this.#queueKey(scope, "unacked_index");
      const unacked = this.#queueKey(scope, "unacked");
      const tags = await client.zRangeByScore(index, 0, cutoff, {
        LIMIT: { offset: 0, count: 100 },
      });
      for (const tag of tags) {
        const payload = await client.hGet(unacked, tag);
        let raw = "";
        let queue = "";
        try {
          const [env, exchange, routingKey] = JSON.parse(payload ?? "null") as [
            Envelope,
            string,
            string,
          ];
          queue = scope !== ""
            ? scope
            : exchange
            ? await this.#lookup(client, exchange, routingKey)
            : routingKey;
          raw = markRedelivered(JSON.stringify(env));
        } catch {
          // No payload or not kombu's shape: drop the dangling index entry below.
        }
        if (!queue) {
          await client.multi().zRem(index, tag).hDel(unacked, tag).exec();
          continue;
        }
        const result = await RESTORE_VISIBLE.run(client, [
          unacked,
          index,
          this.#queueKey(scope, "celeriac.deliveries"),
          this.#listKey(queue, 0),
          this.#deadKey(queue),
        ], [tag, cutoff, raw, this.#maxDeliveries]);
        if (result !== "kept") restored++;
      }
      // Under the mutex as kombu's sweep; on a cluster once after every queue's.
      if (scope === "") restored += await this.#drainDead(client);
    } finally {
      await RELEASE_LOCK.run(client, [mutex], [token]).catch(() => {});
    }
    return restored;
  }

  // A message restored to a named exchange goes to the queues bound with its routing key.
  async #lookup(client: RedisClient, exchange: string, routingKey: string): Promise<string> {
    const members = await client.sMembers(this.#key(`_kombu.binding.${exchange}`));
    for (const m of members) {
      const [rk, , queue] = m.split(PRIORITY_SEP);
      if (rk === routingKey && queue) return queue;
    }
    return routingKey;
  }

  async #drainDead(client: RedisClient): Promise<number> {
    const entries = await client.sMembers(this.#key("celeriac.processing"));
    let n = 0;
    for (const entry of entries) {
      const [proc, list, alive] = JSON.parse(entry) as [string, string, string];
      if (await client.exists(alive)) continue;
      n += Number(await DRAIN.run(client, [proc, list], []));
      await client.sRem(this.#key("celeriac.processing"), entry);
    }
    return n;
  }

  #channel(exchange: string, routingKey = ""): string {
    const base = `${this.#prefix}/${this.#url.db}.${exchange}`;
    return routingKey ? `${base}/${routingKey}` : base;
  }

  async broadcast(message: BroadcastMessage): Promise<void> {
    const client = await this.#connect();
    const priority = message.message.properties.priority ?? 0;
    await client.publish(
      this.#channel(message.exchange, message.routingKey),
      envelopeText(
        message.message,
        message.routingKey || message.exchange,
        priority,
        message.exchange,
        message.routingKey,
      ),
    );
  }

  async *subscribe(
    exchange: string,
    options: SubscribeOptions = {},
  ): AsyncGenerator<BroadcastMessage> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    if (signal.aborted) return;
    if (!this.#subscriber) {
      const connecting = this.#subscriber = (async () => {
        const c = createRedisClient(this.#url, this.#onError, this.#name);
        await connectRedisClient(c);
        return c;
      })();
      // A failed connect is not remembered: the next subscriber tries again.
      connecting.catch(() => {
        if (this.#subscriber === connecting) this.#subscriber = undefined;
      });
    }
    const subscriber = await this.#subscriber;
    const received = new PushChannel<BroadcastMessage>();
    const base = this.#channel(exchange);
    const listener = (raw: string, channel: string) => {
      try {
        const rest = channel.slice(base.length);
        if (rest !== "" && !rest.startsWith("/")) return;
        received.push({ exchange, routingKey: rest.slice(1), message: fromKombuEnvelope(raw) });
      } catch (error) {
        this.#onError(error as Error);
      }
    };
    const patterns = [base, `${base}/*`];
    await subscriber.pSubscribe(patterns, listener);
    try {
      options.onReady?.();
      yield* received.stream(signal);
    } finally {
      if (subscriber.isOpen) await subscriber.pUnsubscribe(patterns, listener).catch(() => {});
    }
  }

  async publishDirect(exchange: string, routingKey: string, message: Message): Promise<void> {
    const client = await this.#connect();
    const members = await client.sMembers(this.#key(`_kombu.binding.${exchange}`));
    const queues = new Set<string>();
    for (const m of members) {
      const [rk, , queue] = m.split(PRIORITY_SEP);
      if (rk === routingKey && queue) queues.add(queue);
    }
    if (queues.size === 0) return;
    const priority = message.properties.priority ?? 0;
    for (const queue of queues) {
      await client.lPush(
        this.#listKey(queue, priorityStep(priority)),
        envelopeText(message, queue, priority, exchange, routingKey),
      );
    }
  }

  async *consumeDirect(
    exchange: string,
    routingKey: string,
    options: ConsumeDirectOptions,
  ): AsyncGenerator<Message> {
    const { queue } = options;
    checkQueue(queue);
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    if (signal.aborted) return;
    const client = await this.#connect();
    const binding = this.#key(`_kombu.binding.${exchange}`);
    const member = `${routingKey}${PRIORITY_SEP}${PRIORITY_SEP}${queue}`;
    await client.sAdd(binding, member);
    const blocker = await this.#dedicated();
    // A blocked BRPOP ends at once when the stream is aborted.
    const unblock = () => void blocker.disconnect().catch(() => {});
    signal.addEventListener("abort", unblock, { once: true });
    const key = this.#listKey(queue, 0);
    try {
      options.onReady?.();
      while (!signal.aborted) {
        let popped: { key: string; element: string } | null;
        try {
          popped = await blocker.brPop(key, this.#blockTimeout / 1000);
        } catch (error) {
          if (signal.aborted) break;
          this.#onError(error as Error);
          await delay(100, signal).catch(() => {});
          continue;
        }
        if (!popped) continue;
        let message: Message;
        try {
          message = fromKombuEnvelope(popped.element);
        } catch (error) {
          this.#onError(error as Error);
          continue;
        }
        yield message;
      }
    } finally {
      signal.removeEventListener("abort", unblock);
      this.#others.delete(blocker);
      await closeRedisClient(blocker, 0);
      if (client.isReady) {
        const done = this.#cluster
          ? Promise.all([client.sRem(binding, member), client.del(key)])
          : client.multi().sRem(binding, member).del(key).exec();
        await done.catch(() => {});
      }
    }
  }

  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    const errors: unknown[] = [];
    this.#closed.abort();
    // Let consume() loops that are running (not waiting at a yield) finish their cleanup:
    // claims not handed out go back, wake-up lists are drained.
    const stop = new AbortController();
    await Promise.race([Promise.all(this.#active), delay(2_000, stop.signal).catch(() => {})]);
    stop.abort();
    try {
      await this.#flushAcks();
    } catch (e) {
      errors.push(e);
    }
    const client = await this.#client.peek()?.catch(() => undefined);
    // Deliveries still held go back to their queues (kombu's restore_at_shutdown).
    if (client?.isReady) {
      for (const c of this.#held.values()) {
        await this.#settle(c, "restore", "right").catch((e) => errors.push(e));
      }
    }
    this.#held.clear();
    const subscriber = this.#subscriber && await this.#subscriber.catch(() => undefined);
    for (const c of [...this.#others, subscriber, client]) {
      if (c) await closeRedisClient(c);
    }
    this.#others.clear();
    if (errors.length > 0) throw new AggregateError(errors, `Closing ${this.url} failed`);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // Admin methods (the dashboard): see redis_admin.ts.
  #admin: RedisAdminContext = {
    run: (fn) => this.#retry(fn),
    listKey: (queue, step) => this.#listKey(queue, step),
    deadKey: (queue) => this.#deadKey(queue),
    queueKey: (queue, name) => this.#queueKey(queue, name),
    cluster: () => this.#cluster,
  };
  /** Counts of each queue (waiting, unacked, scheduled, dead letters). */
  queueCounts(queues: readonly string[]): Promise<QueueCounts[]> {
    return redisQueueCounts(this.#admin, queues);
  }
  /** The scheduled (ETA) messages of a queue, soonest first. */
  browseScheduled(queue: string, options?: BrowseOptions): Promise<ScheduledMessage[]> {
    return redisBrowseScheduled(this.#admin, queue, options);
  }
  /** The dead letters of a queue, oldest first. */
  browseDeadLetters(queue: string, options?: BrowseOptions): Promise<DeadLetter[]> {
    return redisBrowseDeadLetters(this.#admin, queue, options);
  }
  /** Moves dead letters back onto their queue; returns how many. */
  replayDeadLetters(queue: string, ids?: readonly string[]): Promise<number> {
    return redisReplayDeadLetters(this.#admin, queue, ids);
  }
  /** Deletes the dead letters of a queue; returns how many. */
  purgeDeadLetters(queue: string): Promise<number> {
    return redisPurgeDeadLetters(this.#admin, queue);
  }
}

/**
 * Makes a {@linkcode RedisBroker} from `createBroker()`'s options; `transportOptions` take
 * kombu's names: `visibility_timeout` (seconds), `global_keyprefix`, and for `sentinel://`
 * `master_name` and `sentinel_kwargs`.
 *
 * @param url The broker URL.
 * @param options `maxDeliveries` and `transportOptions`.
 * @returns The broker.
 * @throws {TypeError} For a malformed URL or option.
 * @example
 * ```ts
 * import { redisBrokerFromUrl } from "./redis.ts";
 * const broker = redisBrokerFromUrl("redis://127.0.0.1/0", {
 *   transportOptions: { visibility_timeout: 60 },
 * });
 * await broker.close();
 * ```
 */
export function redisBrokerFromUrl(
  url: string,
  options: {
    maxDeliveries?: number;
    transportOptions?: Record<string, unknown>;
    onError?: (error: Error) => void;
  } = {},
): RedisBroker {
  const t = options.transportOptions ?? {};
  const own: RedisBrokerOptions = { ...sentinelOptions(t) };
  if (options.onError) own.onError = options.onError;
  if (options.maxDeliveries !== undefined) own.maxDeliveries = options.maxDeliveries;
  const vt = t.visibility_timeout ?? t.visibilityTimeout;
  if (vt !== undefined) {
    if (typeof vt !== "number") {
      throw new TypeError(`Cannot set visibility_timeout: it must be a number, got ${vt}`);
    }
    own.visibilityTimeout = t.visibility_timeout !== undefined ? vt * 1000 : vt;
  }
  const prefix = t.global_keyprefix ?? t.keyPrefix;
  if (prefix !== undefined) {
    if (typeof prefix !== "string") {
      throw new TypeError(`Cannot set global_keyprefix: it must be a string, got ${prefix}`);
    }
    own.keyPrefix = prefix;
  }
  return new RedisBroker(url, own);
}
