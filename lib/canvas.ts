/**
 * Sending signatures: the follow-ups a worker sends after a task (callbacks, errbacks, the next
 * link of a chain, a chord body).
 *
 * @module
 */

import type { App } from "./app.ts";
import type { SignatureDict } from "./protocol/message.ts";
import type { AsyncResult } from "./result.ts";
import type { SendOptions } from "./task.ts";

/**
 * Builds a signature dict, as Celery serializes it.
 *
 * @param task Task name.
 * @param args Positional arguments.
 * @param kwargs Keyword arguments.
 * @param options Calling options (`task_id`, `queue`, `link`, `link_error`, `countdown` ...).
 * @returns The signature.
 * @example
 * ```ts
 * import { signature } from "@celeriac/celeriac";
 * const sig = signature("tasks.add", [2]);
 * console.assert(sig.task === "tasks.add" && sig.immutable === false);
 * ```
 */
export function signature(
  task: string,
  args: unknown[] = [],
  kwargs: Record<string, unknown> = {},
  options: Record<string, unknown> = {},
): SignatureDict {
  return { task, args, kwargs, options, subtask_type: null, immutable: false };
}

const asList = (v: unknown): SignatureDict[] | undefined =>
  v === undefined || v === null
    ? undefined
    : Array.isArray(v)
    ? v as SignatureDict[]
    : [v as SignatureDict];

/** Options of {@linkcode applySignature}. */
export interface ApplySignatureOptions {
  /** Arguments prepended unless the signature is immutable (the parent's result). */
  prepend?: unknown[];
  /** Extra send options (parent and root ids, chain, priority). */
  send?: SendOptions;
}

/**
 * Sends a signature.
 *
 * @param app The app to send with.
 * @param sig The signature.
 * @param options What to prepend and extra send options.
 * @returns The result handle.
 * @throws {TypeError} For a canvas type this build cannot send.
 */
export function applySignature(
  app: App,
  sig: SignatureDict,
  options: ApplySignatureOptions = {},
): Promise<AsyncResult> {
  if (sig.subtask_type) {
    throw new TypeError(
      `Cannot send signature of type ${sig.subtask_type} (${sig.task}): not supported yet`,
    );
  }
  const o = sig.options ?? {};
  const args = sig.immutable ? [...sig.args] : [...(options.prepend ?? []), ...sig.args];
  const send: SendOptions = { ...options.send };
  if (typeof o.task_id === "string") send.taskId = o.task_id;
  if (typeof o.queue === "string") send.queue = o.queue;
  if (typeof o.countdown === "number") send.countdown = o.countdown;
  if (typeof o.priority === "number") send.priority = o.priority;
  if (typeof o.expires === "number" || typeof o.expires === "string") send.expires = o.expires;
  const link = asList(o.link);
  if (link) send.link = link;
  const linkError = asList(o.link_error);
  if (linkError) send.linkError = linkError;
  if (o.chord && typeof o.chord === "object") send.chord = o.chord as SignatureDict;
  if (typeof o.group_id === "string") send.group = o.group_id;
  if (typeof o.group_index === "number") send.groupIndex = o.group_index;
  return app.sendTask(sig.task, args, sig.kwargs ?? {}, send);
}
