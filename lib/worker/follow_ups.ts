/**
 * What a finished task sends next: link callbacks and the next chain step on success; chord
 * parts (and the chord body once the last part is in); errbacks and the failure of the rest
 * of a chain on failure. Data here comes from messages: every step is bounded and caught, so
 * a bad signature is a logged error, never an exception past the request.
 *
 * @module
 */

import type { Backend, ChordPart } from "../backends/backend.ts";
import { applySignature, isSignatureLike, leafTasks } from "../canvas.ts";
import type { AppContext } from "../app_context.ts";
import { ChordError } from "../errors.ts";
import { errorToInfo, type ExceptionInfo } from "../protocol/exceptions.ts";
import type { SignatureDict, TaskRequest } from "../protocol/message.ts";
import type { State } from "../protocol/states.ts";
import { makeMeta } from "../protocol/result_meta.ts";

/** What follow-ups need: the app to send with, the backend, and a logger. */
export interface FollowUpContext {
  /** Sends signatures. */
  readonly app: AppContext;
  /** Stores chord parts and failures. */
  readonly backend: Backend;
  /** Logs what could not be sent. */
  readonly logger: { error(message: string): void };
}

/** Sends a finished task's follow-ups. */
export class FollowUps {
  #ctx: FollowUpContext;

  /**
   * Creates the sender.
   *
   * @param ctx The app, backend and logger.
   */
  constructor(ctx: FollowUpContext) {
    this.#ctx = ctx;
  }

  /**
   * After a success: link callbacks and the next chain step, each with the value prepended.
   *
   * @param req The finished request.
   * @param value Its return value.
   * @returns The children sent, as result tuples (stored with the result).
   */
  async succeeded(req: TaskRequest, value: unknown): Promise<unknown[]> {
    const lineage = { parentId: req.id, rootId: req.rootId };
    const send = req.priority === null ? lineage : { ...lineage, priority: req.priority };
    const children: unknown[] = [];
    const sendOne = (sig: SignatureDict) =>
      this.#send(req, async () => {
        const r = await applySignature(this.#ctx.app, sig, { prepend: [value], send });
        children.push(r.asTuple());
      });
    const callbacks = req.embed.callbacks ?? [];
    if (callbacks.length === 1) await sendOne(callbacks[0]!);
    else if (callbacks.length > 1) {
      // As Celery's tracer: several callbacks go out as one group (a group callback on its
      // own), so the result's children hold one GroupResult.
      const tasks: SignatureDict[] = [];
      for (const sig of callbacks) {
        if (!isSignatureLike(sig)) {
          this.#ctx.logger.error(
            `Cannot send a callback of ${req.name}[${req.id}]: not a signature`,
          );
        } else if (sig.subtask_type === "group") await sendOne(sig);
        else tasks.push(sig);
      }
      if (tasks.length) {
        await sendOne({
          task: "celery.group",
          args: [],
          kwargs: { tasks },
          options: {},
          subtask_type: "group",
          immutable: false,
        });
      }
    }
    const chain = req.embed.chain;
    if (chain?.length) {
      const rest = chain.slice(0, -1);
      const next = chain[chain.length - 1]!;
      await this.#send(req, async () => {
        const r = await applySignature(this.#ctx.app, next, {
          prepend: [value],
          send: { ...send, chain: rest },
        });
        children.push(r.asTuple());
      });
    }
    return children;
  }

  /**
   * After a failure: the rest of the chain is failed too (nobody waits forever on it or on a
   * chord it belongs to, as Celery's `mark_as_failure`), then each errback runs once.
   *
   * @param req The failed request.
   * @param exc The error, in Celery's shape.
   * @param traceback The traceback.
   */
  async failed(req: TaskRequest, exc: ExceptionInfo, traceback: string | null): Promise<void> {
    for (const sig of req.embed.chain ?? []) await this.#failSignature(req, sig, exc, traceback);
    await this.#errbacks(req, req.embed.errbacks ?? [], req.id);
  }

  /**
   * Records a chord header member's end; the last one sends the body (or fails it, with its
   * errbacks, when a member did not succeed).
   *
   * @param req The member's request.
   * @param status Its final state.
   * @param result Its value or error.
   */
  async chordPart(req: TaskRequest, status: State, result: unknown): Promise<void> {
    const body = req.embed.chord;
    if (!body || !req.group) return;
    let parts: ChordPart[] | null;
    try {
      parts = await this.#ctx.backend.chordPartReturn(req.group, req.groupIndex ?? 0, {
        taskId: req.id,
        status,
        result,
      });
    } catch (error) {
      this.#ctx.logger.error(`Cannot record chord part ${req.id} of ${req.group}: ${error}`);
      return;
    }
    if (!parts) return;
    const failed = parts.find((p) => p.status !== "SUCCESS");
    if (!failed) {
      await this.#send(req, () =>
        applySignature(this.#ctx.app, body, {
          prepend: [parts.map((p) => p.result)],
          send: { parentId: req.id, rootId: req.rootId },
        }));
      return;
    }
    await this.#send(req, async () => {
      const error = new ChordError(`Dependency ${failed.taskId} raised ${describe(failed.result)}`);
      const exc = errorToInfo(error);
      await this.#failSignature(req, body, exc, null);
      const leaves = leafTasks(body);
      const bodyId = leaves.at(-1)?.options.task_id;
      const errbacks = [body, ...leaves].flatMap((s) => asList(s.options?.link_error));
      await this.#errbacks(req, errbacks, String(bodyId ?? req.group));
    });
  }

  // Errbacks in message form: each gets the failed task's id prepended; each runs once.
  async #errbacks(req: TaskRequest, errbacks: readonly unknown[], failedId: string) {
    const seen = new Set<string>();
    for (const sig of errbacks) {
      if (!isSignatureLike(sig)) continue;
      const key = signatureKey(sig);
      if (seen.has(key)) continue;
      seen.add(key);
      await this.#send(req, () =>
        applySignature(this.#ctx.app, sig, {
          prepend: [failedId],
          send: { parentId: failedId, rootId: req.rootId },
        }));
    }
  }

  // Marks every task a signature would have run as failed, completing any chord they were
  // header members of.
  async #failSignature(
    req: TaskRequest,
    sig: SignatureDict,
    exc: ExceptionInfo,
    traceback: string | null,
  ) {
    let leaves: SignatureDict[];
    try {
      leaves = leafTasks(sig);
    } catch {
      return;
    }
    for (const leaf of leaves) {
      const o = leaf.options;
      const id = o.task_id as string;
      const groupId = typeof o.group_id === "string" ? o.group_id : null;
      try {
        await this.#ctx.backend.store(id, makeMeta(id, "FAILURE", exc, { traceback, groupId }));
      } catch (error) {
        this.#ctx.logger.error(`Cannot store the failure of ${id}: ${error}`);
      }
      if (isSignatureLike(o.chord) && groupId) {
        await this.chordPart(
          {
            ...req,
            id,
            group: groupId,
            groupIndex: typeof o.group_index === "number" ? o.group_index : null,
            embed: { ...req.embed, chord: o.chord as SignatureDict },
          },
          "FAILURE",
          exc,
        );
      }
    }
  }

  async #send(req: TaskRequest, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (error) {
      this.#ctx.logger.error(`Cannot send a follow-up of ${req.name}[${req.id}]: ${error}`);
    }
  }
}

const asList = (v: unknown): unknown[] => Array.isArray(v) ? v : v ? [v] : [];

// A key that tells identical errbacks apart; big ints (a Python client's 10**23) and cycles
// must not make it throw.
function signatureKey(sig: unknown): string {
  try {
    return JSON.stringify(sig, (_k, v) => typeof v === "bigint" ? `${v}n` : v);
  } catch {
    return String(Math.random());
  }
}

// Celery's `repr` of a header task's error in a ChordError: `ValueError('boom')`.
function describe(result: unknown): string {
  if (result && typeof result === "object" && "exc_type" in result) {
    const r = result as { exc_type: unknown; exc_message?: unknown };
    const args = Array.isArray(r.exc_message) ? r.exc_message : [r.exc_message];
    return `${r.exc_type}(${
      args.map((a) => typeof a === "string" ? `'${a}'` : signatureKey(a)).join(", ")
    })`;
  }
  return signatureKey(result);
}
