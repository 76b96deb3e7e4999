/**
 * The admin methods of the Deno KV broker (queue counts, ETA and dead-letter browsing,
 * replay, purge), for the dashboard. They read the key layout documented in `kv.ts`; the
 * broker class delegates to these functions in one line each.
 *
 * @module
 */

import { commit, retry } from "../_kv.ts";
import { deleteChunks, readChunks } from "./_kv_chunks.ts";

// The message of an entry, its body read back from chunks when it has them.
async function messageOf(
  kv: Deno.Kv,
  ctx: KvAdminContext,
  queue: string,
  e: KvAdminEntry,
): Promise<Message> {
  if (!e.chunks) return e.message;
  const body = await readChunks(kv, (i) => ctx.key(queue, "chunk", e.id, i), e.chunks);
  return { ...e.message, body: body ?? "" };
}
import type { Message } from "../protocol/message.ts";
import type { BrowseOptions, DeadLetter, QueueCounts, ScheduledMessage } from "./broker.ts";

/** A stored entry, as in `kv.ts`. */
export interface KvAdminEntry {
  /** Random id of the stored message. */
  id: string;
  /** Sequence number (time-ordered). */
  seq: number;
  /** Priority 0-9. */
  priority: number;
  /** Deliveries so far. */
  deliveries: number;
  /** The message (its body is empty when the body is in chunks). */
  message: Message;
  /** How many chunks hold the body, when it is too large for one KV value. */
  chunks?: number;
}

/** What the admin functions need of the broker. */
export interface KvAdminContext {
  /** Opens the store. */
  open(): Promise<Deno.Kv>;
  /** `[prefix, "q", queue, ...rest]`. */
  key(queue: string, ...rest: Deno.KvKeyPart[]): Deno.KvKey;
  /** The `ready` key of an entry. */
  readyKey(queue: string, entry: KvAdminEntry): Deno.KvKey;
  /** The `notify` key of a queue. */
  notifyKey(queue: string): Deno.KvKey;
}

async function count(kv: Deno.Kv, prefix: Deno.KvKey): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix })) n++;
  return n;
}

function taskId(message: Message, fallback: string): string {
  const id = message.headers.id;
  return typeof id === "string" && id ? id : fallback;
}

/**
 * Counts waiting, leased, delayed and dead messages of each queue.
 *
 * @param ctx The broker.
 * @param queues The queues.
 * @returns One entry per queue, in order.
 */
export async function kvQueueCounts(
  ctx: KvAdminContext,
  queues: readonly string[],
): Promise<QueueCounts[]> {
  const kv = await ctx.open();
  const out: QueueCounts[] = [];
  for (const queue of queues) {
    const [waiting, reserved, scheduled, deadLettered] = await retry(() =>
      Promise.all(
        ["ready", "lease", "delayed", "dead"].map((part) => count(kv, ctx.key(queue, part))),
      )
    );
    out.push({
      queue,
      waiting: waiting!,
      reserved: reserved!,
      scheduled: scheduled!,
      deadLettered: deadLettered!,
    });
  }
  return out;
}

/**
 * Lists a queue's delayed (ETA) messages, soonest first.
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @param options Limit.
 * @returns The messages; the id is the task id.
 */
export async function kvBrowseScheduled(
  ctx: KvAdminContext,
  queue: string,
  options: BrowseOptions = {},
): Promise<ScheduledMessage[]> {
  const kv = await ctx.open();
  const entries = await retry(() =>
    Array.fromAsync(
      kv.list<KvAdminEntry>({ prefix: ctx.key(queue, "delayed") }, {
        limit: options.limit ?? 100,
      }),
    )
  );
  return await Promise.all(entries.map(async (e) => ({
    id: taskId(e.value.message, e.value.id),
    eta: e.key[4] as number,
    message: await messageOf(kv, ctx, queue, e.value),
  })));
}

/**
 * Lists a queue's dead letters, oldest first.
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @param options Limit.
 * @returns The dead letters; the id is the stored entry's id.
 */
export async function kvBrowseDeadLetters(
  ctx: KvAdminContext,
  queue: string,
  options: BrowseOptions = {},
): Promise<DeadLetter[]> {
  const kv = await ctx.open();
  const entries = await retry(() =>
    Array.fromAsync(
      kv.list<KvAdminEntry>({ prefix: ctx.key(queue, "dead") }, { limit: options.limit ?? 100 }),
    )
  );
  return await Promise.all(entries.map(async (e) => {
    const d: DeadLetter = { id: e.value.id, message: await messageOf(kv, ctx, queue, e.value) };
    if (e.value.deliveries > 0) d.reason = `after ${e.value.deliveries} deliveries`;
    return d;
  }));
}

/**
 * Moves dead letters back to `ready` (all, or those with the given ids), each in one atomic
 * operation, with the delivery count reset.
 *
 * @param ctx The broker.
 * @param queue The queue.
 * @param ids Only these entry ids.
 * @returns How many were moved.
 */
export async function kvReplayDeadLetters(
  ctx: KvAdminContext,
  queue: string,
  ids?: readonly string[],
): Promise<number> {
  const kv = await ctx.open();
  const want = ids ? new Set(ids) : undefined;
  const entries = await retry(() =>
    Array.fromAsync(kv.list<KvAdminEntry>({ prefix: ctx.key(queue, "dead") }))
  );
  let moved = 0;
  for (const e of entries) {
    if (want && !want.has(e.value.id)) continue;
    const entry = { ...e.value, deliveries: 0 };
    const ok = await commit(() =>
      kv.atomic().check(e).delete(e.key).set(ctx.readyKey(queue, entry), entry).sum(
        ctx.notifyKey(queue),
        1n,
      )
    );
    if (ok) moved++;
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
export async function kvPurgeDeadLetters(ctx: KvAdminContext, queue: string): Promise<number> {
  const kv = await ctx.open();
  const entries = await retry(() =>
    Array.fromAsync(kv.list<KvAdminEntry>({ prefix: ctx.key(queue, "dead") }))
  );
  let removed = 0;
  for (const e of entries) {
    if (!(await commit(() => kv.atomic().check(e).delete(e.key)))) continue;
    removed++;
    const chunks = e.value.chunks;
    if (chunks) await deleteChunks(kv, (i) => ctx.key(queue, "chunk", e.value.id, i), chunks);
  }
  return removed;
}
