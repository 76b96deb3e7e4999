// deno-lint-ignore-file no-console -- command-line output
/**
 * `call --wait` and `result --wait`: follow a task's states as they are stored (STARTED,
 * PROGRESS and custom states, RETRY) until it is ready. A meta with `current`/`total` or
 * `done`/`total` numbers draws a progress bar; any other state a status line. Progress goes
 * to stderr, so stdout keeps only the result.
 *
 * @module
 */

import type { AsyncResult } from "../result.ts";
import type { ResultMeta } from "../backends/backend.ts";
import { READY_STATES } from "../protocol/states.ts";

/** Options of {@linkcode follow}. */
export interface FollowOptions {
  /** Give up after this many milliseconds. */
  timeout: number;
  /**
   * Show updates on stderr.
   * @default {true}
   */
  progress?: boolean;
}

/** A task ran out of time before it was ready. */
export class WaitTimeoutError extends Error {
  /**
   * @param id The task id.
   * @param timeout Milliseconds waited.
   * @param last The last state seen.
   */
  constructor(id: string, timeout: number, last: string) {
    super(`task ${id} not ready after ${timeout} ms (last state: ${last})`);
    this.name = "WaitTimeoutError";
  }
}

/**
 * The fraction done a meta carries, when its result has numeric `current`/`total` or
 * `done`/`total`.
 *
 * @param result The meta's result.
 * @returns `{ done, total }`, or `undefined`.
 */
export function progressOf(result: unknown): { done: number; total: number } | undefined {
  if (result === null || typeof result !== "object" || Array.isArray(result)) return undefined;
  const r = result as Record<string, unknown>;
  const done = typeof r.current === "number" ? r.current : r.done;
  const total = r.total;
  if (typeof done !== "number" || typeof total !== "number") return undefined;
  if (!Number.isFinite(done) || !Number.isFinite(total) || total <= 0) return undefined;
  return { done, total };
}

/**
 * One line describing a state: a bar when the meta has a fraction done.
 *
 * @param meta The stored meta.
 * @param width Columns of the bar.
 * @returns The line (no newline).
 */
export function progressLine(meta: ResultMeta, width = 30): string {
  const p = progressOf(meta.result);
  if (p) {
    const ratio = Math.min(1, Math.max(0, p.done / p.total));
    const filled = Math.round(ratio * width);
    const bar = "#".repeat(filled) + ".".repeat(width - filled);
    return `${meta.status} [${bar}] ${Math.floor(ratio * 100)}% ${p.done}/${p.total}`;
  }
  const detail = meta.result === null || meta.result === undefined
    ? ""
    : ` ${JSON.stringify(meta.result)}`;
  const line = `${meta.status}${detail}`;
  return line.length > 120 ? `${line.slice(0, 117)}...` : line;
}

/**
 * Follows a task until it is ready, drawing its updates on stderr.
 *
 * @param result The task's handle.
 * @param options Timeout and whether to draw.
 * @returns The ready meta.
 * @throws {WaitTimeoutError} When the timeout passes first.
 */
export async function follow(result: AsyncResult, options: FollowOptions): Promise<ResultMeta> {
  const tty = Deno.stderr.isTerminal();
  const draw = options.progress ?? true;
  const encoder = new TextEncoder();
  let last = "PENDING";
  let drawn = "";
  let open = false;
  const show = (line: string) => {
    if (!draw || line === drawn) return;
    drawn = line;
    if (tty) {
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}`));
      open = true;
    } else {
      console.error(line);
    }
  };
  const signal = AbortSignal.timeout(options.timeout);
  try {
    for await (const meta of result.updates({ signal })) {
      last = meta.status;
      if (READY_STATES.has(meta.status)) return meta;
      show(progressLine(meta));
    }
    if (signal.aborted) throw new WaitTimeoutError(result.id, options.timeout, last);
    const meta = await result.meta();
    if (meta && READY_STATES.has(meta.status)) return meta;
    throw new WaitTimeoutError(result.id, options.timeout, last);
  } catch (error) {
    if (signal.aborted) throw new WaitTimeoutError(result.id, options.timeout, last);
    throw error;
  } finally {
    if (open) Deno.stderr.writeSync(encoder.encode("\n"));
  }
}

/**
 * How a failed meta reads on one line: `Type: message`, keeping the exception type.
 *
 * @param meta A FAILURE (or REVOKED) meta.
 * @returns The line.
 */
export function failureLine(meta: ResultMeta): string {
  const r = meta.result as Record<string, unknown> | null;
  if (r && typeof r === "object" && typeof r.exc_type === "string") {
    const message = typeof r.exc_message === "string"
      ? r.exc_message
      : Array.isArray(r.exc_message)
      ? r.exc_message.map((m) => typeof m === "string" ? m : JSON.stringify(m)).join(", ")
      : JSON.stringify(r.exc_message ?? "");
    return `${meta.status} ${r.exc_type}: ${message}`;
  }
  return `${meta.status} ${JSON.stringify(meta.result)}`;
}
