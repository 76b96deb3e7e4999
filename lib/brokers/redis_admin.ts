/**
 * The admin methods of the Redis broker (queue counts, ETA and dead-letter browsing, replay,
 * purge), for the dashboard. They read kombu's layout (see `redis.ts`): the queue lists and
 * their priority lists, the `unacked` hash (`tag → [envelope, exchange, routing key]`), the
 * `celeriac.eta` zset (`[list key, envelope]` by ETA) and the `<queue>.dlq` lists (newest at
 * the head). The broker class delegates to these functions in one line each.
 *
 * @module
 */

import type { RedisClient } from "../_redis.ts";
import { fromKombuEnvelope } from "../protocol/kombu.ts";
import type { Message } from "../protocol/message.ts";
import type { BrowseOptions, DeadLetter, QueueCounts, ScheduledMessage } from "./broker.ts";

/** What the admin functions need of the broker. */
export interface RedisAdminContext {
  /** Runs idempotent commands on the broker's client (retried on transient errors). */
  run<T>(fn: (client: RedisClient) => Promise<T>): Promise<T>;
  /** A queue's list at a priority step (kombu's names, or `{queue}`-tagged on a cluster). */
  listKey(queue: string, step: number): string;
  /** A queue's dead-letter list. */
  deadKey(queue: string): string;
  /**
   * A bookkeeping key (`unacked`, `celeriac.eta`) that holds a queue's entries: kombu's one for
   * every queue, or the queue's own on a cluster.
   */
  queueKey(queue: string, name: string): string;
  /** Whether the broker is on a cluster: every queue's keys in its own slot, one MULTI each. */
  cluster(): boolean;
}

const STEPS = [0, 3, 6, 9] as const;

function listKey(ctx: RedisAdminContext, queue: string, step: number): string {
  return ctx.listKey(queue, step);
}

function deadKey(ctx: RedisAdminContext, queue: string): string {
  return ctx.deadKey(queue);
}

function decode(raw: string): Message {
  try {
    return fromKombuEnvelope(raw);
  } catch {
    return { headers: {}, properties: {}, body: raw, contentType: "", contentEncoding: "" };
  }
}

function idOf(message: Message, fallback: string): string {
  const id = message.headers.id ?? message.properties.delivery_tag;
  return typeof id === "string" && id ? id : fallback;
}

function stepOf(message: Message): number {
  const p = Number(message.properties.priority ?? 0);
  const clamped = Math.max(0, Math.min(9, Math.trunc(Number.isFinite(p) ? p : 0)));
  let step = 0;
  for (const s of STEPS) if (s <= clamped) step = s;
  return step;
}

// The ETA zset, parsed: [list key, envelope, score].
async function etaMembers(
  ctx: RedisAdminContext,
  queue: string,
): Promise<[string, string, number][]> {
  const key = ctx.queueKey(queue, "celeriac.eta");
  const members = await ctx.run((c) => c.zRangeWithScores(key, 0, 9_999));
  const out: [string, string, number][] = [];
  for (const m of members) {
    try {
      const [list, env] = JSON.parse(m.value) as [unknown, unknown];
      if (typeof list === "string" && typeof env === "string") out.push([list, env, m.score]);
    } catch {
      // Not ours.
    }
  }
  return out;
}

/**
 * Counts waiting, unacked, scheduled and dead-lettered messages of each queue.
 *
 * @param ctx The broker.
 * @param queues The queues.
 * @returns One entry per queue, in order.
 */
export async function redisQueueCounts(
  ctx: RedisAdminContext,
  queues: readonly string[],
): Promise<QueueCounts[]> {
  const lengthsOf = (qs: readonly string[]) =>
    ctx.run(async (c) => {
      const multi = c.multi();
      for (const q of qs) {
        for (const s of STEPS) multi.lLen(listKey(ctx, q, s));
        multi.lLen(deadKey(ctx, q));
      }
      return (await multi.exec()).map(Number);
    });
  // One bookkeeping scope for kombu's global keys; one per queue on a cluster.
  const scopes = ctx.cluster() ? queues : queues.slice(0, 1);
  const lengths = ctx.cluster()
    ? (await Promise.all(queues.map((q) => lengthsOf([q])))).flat()
    : queues.length > 0
    ? await lengthsOf(queues)
    : [];
  const unacked = (await Promise.all(
    scopes.map((q) => ctx.run((c) => c.hVals(ctx.queueKey(q, "unacked")))),
  )).flat();
  const reserved = new Map<string, number>();
  for (const payload of unacked) {
    try {
      const [, exchange, routingKey] = JSON.parse(payload) as [unknown, unknown, unknown];
      const q = typeof routingKey === "string" && routingKey
        ? routingKey
        : typeof exchange === "string"
        ? exchange
        : "";
      reserved.set(q, (reserved.get(q) ?? 0) + 1);
    } catch {
      // Not ours.
    }
  }
  const eta = (await Promise.all(scopes.map((q) => etaMembers(ctx, q)))).flat();
  return queues.map((queue, i) => {
    const base = i * (STEPS.length + 1);
    const lists = new Set(STEPS.map((s) => listKey(ctx, queue, s)));
    return {
      queue,
      waiting: lengths.slice(base, base + STEPS.length).reduce((a, b) => a + b, 0),
      reserved: reserved.get(queue) ?? 0,
      scheduled: eta.filter(([list]) => lists.has(list)).length,
      deadLettered: lengths[base + STEPS.length] ?? 0,
    };
  });
}

/**
 * Lists a queue's scheduled (ETA) messages, soonest first.
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @param options Limit.
 * @returns The messages.
 */
export async function redisBrowseScheduled(
  ctx: RedisAdminContext,
  queue: string,
  options: BrowseOptions = {},
): Promise<ScheduledMessage[]> {
  const limit = options.limit ?? 100;
  const lists = new Set(STEPS.map((s) => listKey(ctx, queue, s)));
  return (await etaMembers(ctx, queue))
    .filter(([list]) => lists.has(list))
    .slice(0, limit)
    .map(([, env, score], i) => {
      const message = decode(env);
      return { id: idOf(message, `eta-${i}`), eta: score, message };
    });
}

/**
 * Lists a queue's dead letters, oldest first.
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @param options Limit.
 * @returns The dead letters; the id is the task id.
 */
export async function redisBrowseDeadLetters(
  ctx: RedisAdminContext,
  queue: string,
  options: BrowseOptions = {},
): Promise<DeadLetter[]> {
  const limit = options.limit ?? 100;
  const raws = await ctx.run((c) => c.lRange(deadKey(ctx, queue), -limit, -1));
  return raws.reverse().map((raw, i) => {
    const message = decode(raw);
    return { id: idOf(message, `dead-${i}`), message };
  });
}

/**
 * Moves dead letters back onto their queue (all, or those with the given task ids).
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @param ids Only these ids.
 * @returns How many were moved.
 */
export async function redisReplayDeadLetters(
  ctx: RedisAdminContext,
  queue: string,
  ids?: readonly string[],
): Promise<number> {
  const want = ids ? new Set(ids) : undefined;
  const raws = await ctx.run((c) => c.lRange(deadKey(ctx, queue), 0, -1));
  let moved = 0;
  // Oldest first, so the replayed messages keep their order on the queue.
  for (const [i, raw] of raws.reverse().entries()) {
    const message = decode(raw);
    if (want && !want.has(idOf(message, `dead-${i}`))) continue;
    // LREM and LPUSH in one transaction: the message is in exactly one of the two lists.
    const [removed] = await ctx.run((c) =>
      c.multi()
        .lRem(deadKey(ctx, queue), -1, raw)
        .lPush(listKey(ctx, queue, stepOf(message)), raw)
        .exec()
    );
    if (Number(removed) > 0) moved++;
    else {
      // Someone else replayed or purged it meanwhile: take back the copy just pushed.
      await ctx.run((c) => c.lRem(listKey(ctx, queue, stepOf(message)), 1, raw));
    }
  }
  return moved;
}

/**
 * Deletes a queue's dead letters.
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @returns How many were deleted.
 */
export async function redisPurgeDeadLetters(
  ctx: RedisAdminContext,
  queue: string,
): Promise<number> {
  const [n] = await ctx.run((c) =>
    c.multi().lLen(deadKey(ctx, queue)).del(deadKey(ctx, queue)).exec()
  );
  return Number(n);
}
