/**
 * `waitFor` and `watch` on top of a backend's stream of stored metas, the same for every
 * backend: each one only supplies `changes` (current metas of the ids, then every new one).
 *
 * @module
 */

import { READY_STATES } from "../protocol/states.ts";
import { stringifyJson } from "../protocol/json.ts";
import type { ResultMeta } from "./backend.ts";

/**
 * Yields each task's meta once it is ready, in completion order, then returns.
 *
 * @param taskIds The tasks.
 * @param changes Streams the metas stored for a set of ids (the set shrinks as tasks finish).
 * @returns The ready metas.
 * @example
 * ```ts
 * import { readyEach } from "./_wait.ts";
 * const meta = (id: string, status: string) => ({
 *   status, result: null, traceback: null, children: [], date_done: null, task_id: id,
 * });
 * async function* changes() {
 *   yield meta("a", "STARTED");
 *   yield meta("a", "SUCCESS");
 * }
 * for await (const m of readyEach(["a"], changes)) console.assert(m.status === "SUCCESS");
 * ```
 */
export async function* readyEach(
  taskIds: readonly string[],
  changes: (ids: Set<string>) => AsyncIterable<ResultMeta>,
): AsyncGenerator<ResultMeta> {
  const pending = new Set(taskIds);
  if (pending.size === 0) return;
  for await (const meta of changes(pending)) {
    if (!READY_STATES.has(meta.status) || !pending.delete(meta.task_id)) continue;
    yield meta;
    if (pending.size === 0) return;
  }
}

/**
 * Yields every meta of one task until a ready one, skipping a meta identical to the one before
 * (a write can arrive twice: pushed, and read back after subscribing).
 *
 * @param changes The task's stored metas.
 * @returns The metas.
 * @example
 * ```ts
 * import { untilReady } from "./_wait.ts";
 * async function* changes() {
 *   yield { status: "SUCCESS", result: 1, traceback: null, children: [], date_done: null, task_id: "a" };
 * }
 * for await (const m of untilReady(changes())) console.assert(m.result === 1);
 * ```
 */
export async function* untilReady(changes: AsyncIterable<ResultMeta>): AsyncGenerator<ResultMeta> {
  let last: string | undefined;
  for await (const meta of changes) {
    let text: string | undefined;
    try {
      text = stringifyJson(meta, "");
    } catch {
      // Not JSON (a backend that keeps JS values): never a repeat.
    }
    if (text !== undefined && text === last) continue;
    last = text;
    yield meta;
    if (READY_STATES.has(meta.status)) return;
  }
}
