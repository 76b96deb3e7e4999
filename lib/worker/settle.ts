/**
 * When a delivery is acked, rejected, requeued or dead-lettered: one table, from the stage a
 * request ended in and the task's ack options. A reader looking for "when is this acked"
 * reads this file; {@linkcode Request} carries the decision out, exactly once.
 *
 * @module
 */

/** How a delivery ends. */
export type Settle =
  /** Remove the message from the broker. */
  | "ack"
  /** Give it back to its queue (late ack), or publish a copy (early ack: already acked). */
  | "requeue"
  /** Move it to the dead-letter queue, with a logged reason. */
  | "dead-letter"
  /** Nothing left to do: the message was acked before the task ran (early ack). */
  | "none";

/** Endings decided before the task runs (or, for `internal`, wherever the worker failed). */
export type AdmissionEnding =
  /** Not a task message (bad body, headers or encoding). */
  | "malformed"
  /** No task of that name here (stored FAILURE NotRegistered, as Celery). */
  | "unregistered"
  /** Delivered more than `maxDeliveries` times. */
  | "poison"
  /** Revoked or expired before it started (stored REVOKED). */
  | "revoked"
  /** Handed back to the broker to run later (ETA or rate limit): a new message holds it. */
  | "rescheduled"
  /** The worker stopped before the task started. */
  | "shutdown"
  /** Something went wrong inside the worker itself (broker or backend unreachable). */
  | "internal";

/** Endings after the task ran. */
export type RunEnding =
  /** Returned, asked to retry (a new message holds it), or raised `Ignore`. */
  | "success"
  | "retry"
  | "ignore"
  /** Terminated by `revoke(terminate=True)` (stored REVOKED). */
  | "terminated"
  /** Raised, or hit its hard time limit (stored FAILURE). */
  | "failure"
  | "timeout"
  /** Raised `Reject(requeue=False)` or `Reject(requeue=True)`. */
  | "reject"
  | "reject-requeue"
  /** Its Web Worker died under it. */
  | "lost"
  /** Its result could not be stored although its message is still held (late ack). */
  | "unstored";

/** Where a request ended: an admission decision, or the outcome of running the task. */
export type Ending = AdmissionEnding | RunEnding;

/** What a decision depends on besides the ending. */
export interface AckOptions {
  /** Ack after the task ran instead of before (`acks_late`). */
  acksLate: boolean;
  /** With late ack, ack failed and timed-out tasks (else dead-letter them). @default {true} */
  acksOnFailureOrTimeout: boolean;
  /** With late ack, requeue a task whose Web Worker died (else fail it). */
  rejectOnWorkerLost: boolean;
  /** A cold shutdown is under way: late-ack tasks it stops go back to the queue. */
  cold: boolean;
  /** Deliveries so far reached `maxDeliveries`: requeueing again would loop. */
  exhausted: boolean;
}

type Rule = Settle | ((o: AckOptions) => Settle);

// Endings decided before the task starts: the same whatever the ack mode.
const ADMISSION: Record<AdmissionEnding, Rule> = {
  malformed: "dead-letter",
  unregistered: "dead-letter",
  poison: "dead-letter",
  revoked: "ack",
  rescheduled: "ack",
  shutdown: "requeue",
  internal: (o) => o.exhausted ? "dead-letter" : "requeue",
};

// Endings after the task ran, with late ack (with early ack the message is already acked,
// except that a requeueing `Reject` publishes a copy).
const LATE: Record<RunEnding, Rule> = {
  success: "ack",
  retry: "ack",
  ignore: "ack",
  terminated: "ack",
  failure: (o) => o.acksOnFailureOrTimeout ? "ack" : "dead-letter",
  timeout: (o) => o.acksOnFailureOrTimeout ? "ack" : "dead-letter",
  reject: "dead-letter",
  "reject-requeue": "requeue",
  lost: (o) =>
    o.cold
      ? "requeue"
      : !o.rejectOnWorkerLost
      ? (o.acksOnFailureOrTimeout ? "ack" : "dead-letter")
      : o.exhausted
      ? "dead-letter"
      : "requeue",
  unstored: (o) => o.exhausted ? "dead-letter" : "requeue",
};

// A `shutdown` after the ack (a run handed back although acked) is published again.
const EARLY: Partial<Record<Ending, Settle>> = {
  "reject-requeue": "requeue",
  shutdown: "requeue",
};

/**
 * Decides how a delivery ends.
 *
 * @param ending Where the request ended.
 * @param acked Whether the message was already acked (early ack, before the run).
 * @param options The task's ack options.
 * @returns The settle to carry out.
 * @example
 * ```ts
 * import { decideSettle } from "./settle.ts";
 * const o = {
 *   acksLate: true, acksOnFailureOrTimeout: true, rejectOnWorkerLost: false,
 *   cold: false, exhausted: false,
 * };
 * console.assert(decideSettle("success", false, o) === "ack");
 * console.assert(decideSettle("success", true, { ...o, acksLate: false }) === "none");
 * console.assert(decideSettle("malformed", false, o) === "dead-letter");
 * ```
 */
export function decideSettle(ending: Ending, acked: boolean, options: AckOptions): Settle {
  if (acked) return EARLY[ending] ?? "none";
  const rule = ending in ADMISSION
    ? ADMISSION[ending as AdmissionEnding]
    : LATE[ending as RunEnding];
  return typeof rule === "function" ? rule(options) : rule;
}
