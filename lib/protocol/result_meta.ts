/**
 * Reads a result meta as Celery's key-value backends store it
 * (`celery/backends/base.py:BaseKeyValueStoreBackend._store_result`; CELERY_PROTOCOL.md §2.5).
 *
 * @module
 */

import type { ResultMeta } from "../backends/backend.ts";
import { MessageDecodeError } from "../errors.ts";
import { parseJson } from "./json.ts";
import type { State } from "./states.ts";
import { toIso } from "./message.ts";
import { boundedRepr } from "./repr.ts";

const brief = (value: unknown) => boundedRepr(value, { maxDepth: 2, maxItems: 5, maxLength: 80 });

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

function nullableString(meta: Record<string, unknown>, key: string): string | null {
  const value = meta[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") {
    throw new MessageDecodeError(
      `Result meta field ${key} must be a string or null, got ${brief(value)}`,
    );
  }
  return value;
}

/**
 * Parses the JSON text of a result meta (`celery-task-meta-<id>`). Celery writes
 * `"children": null` when a result is stored outside a worker (`store_result`), and `[]` from a
 * worker; both come back as an array.
 *
 * @param text The stored JSON text.
 * @returns The meta, with every extra field kept.
 * @throws {MessageDecodeError} When the text is not JSON or lacks a string `status`/`task_id`.
 * @example
 * ```ts
 * import { parseResultMeta } from "./result_meta.ts";
 * const meta = parseResultMeta(
 *   '{"status": "SUCCESS", "result": 4, "traceback": null, "children": null,' +
 *     ' "date_done": "2026-11-21T01:59:25.773875", "task_id": "a"}',
 * );
 * console.assert(meta.result === 4 && meta.children.length === 0);
 * ```
 */
export function parseResultMeta(text: string): ResultMeta {
  return toResultMeta(parseJson(text));
}

/**
 * Checks a parsed result meta (the value of {@linkcode parseResultMeta}'s JSON), for a
 * caller that has parsed it already.
 *
 * @param meta The parsed value.
 * @returns The meta, with every extra field kept.
 * @throws {MessageDecodeError} When it is not an object with a string `status`/`task_id`.
 * @example
 * ```ts
 * import { toResultMeta } from "./result_meta.ts";
 * const meta = toResultMeta({ status: "SUCCESS", result: 4, task_id: "a" });
 * console.assert(meta.children.length === 0 && meta.traceback === null);
 * ```
 */
export function toResultMeta(meta: unknown): ResultMeta {
  if (!isObject(meta)) throw new MessageDecodeError("A result meta must be a JSON object");
  if (typeof meta.status !== "string" || meta.status === "") {
    throw new MessageDecodeError(`Result meta has no status: ${brief(meta.status)}`);
  }
  if (typeof meta.task_id !== "string" || meta.task_id === "") {
    throw new MessageDecodeError(`Result meta has no task_id: ${brief(meta.task_id)}`);
  }
  const children = meta.children ?? [];
  if (!Array.isArray(children)) {
    throw new MessageDecodeError("Result meta field children must be a list or null");
  }
  return {
    ...meta,
    status: meta.status,
    result: meta.result ?? null,
    traceback: nullableString(meta, "traceback"),
    children,
    date_done: nullableString(meta, "date_done"),
    task_id: meta.task_id,
  };
}

// Celery 5.3+ writes an aware UTC time (`datetime.now(timezone.utc).isoformat()`); 5.2's
// `parse_iso8601` reads it too.
const nowIso = () => toIso(new Date());

/**
 * Builds a result meta in Celery's shape.
 *
 * @param taskId The task.
 * @param status Its state.
 * @param result Its value or exception shape.
 * @param extra Traceback, parent and group ids.
 * @returns The meta.
 */
export function makeMeta(
  taskId: string,
  status: State,
  result: unknown,
  extra: { traceback?: string | null; parentId?: string | null; groupId?: string | null } = {},
): ResultMeta {
  const ready = status === "SUCCESS" || status === "FAILURE" || status === "REVOKED";
  const meta: ResultMeta = {
    status,
    result,
    traceback: extra.traceback ?? null,
    children: [],
    date_done: ready ? nowIso() : null,
    task_id: taskId,
  };
  if (extra.groupId) meta.group_id = extra.groupId;
  if (extra.parentId) meta.parent_id = extra.parentId;
  return meta;
}
