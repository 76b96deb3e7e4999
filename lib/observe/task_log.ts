/**
 * Celery's task log lines, written by a listener of the App's signals: `Task tasks.add[<id>]
 * received` and `Task tasks.add[<id>] succeeded in 0.0012s: 4` at INFO. (Failures are
 * logged by the request itself, at ERROR with their traceback, since only it knows whether
 * the error was an expected one.)
 *
 * @module
 */

import type { Logger } from "../app.ts";
import { boundedRepr } from "../protocol/repr.ts";
import type { AppEvent } from "../signals.ts";

/** Options of {@linkcode logTaskLines}. */
export interface TaskLogOptions {
  /** Where the lines go. */
  logger: Logger;
  /**
   * Whether INFO lines are written at all; when false no listener is added.
   * @default {true}
   */
  info?: boolean;
}

/**
 * Formats a runtime in seconds as Celery's lines show it: two significant digits under a
 * second (`0.0012`), milliseconds above (`1.234`).
 *
 * @param seconds The runtime.
 * @returns The text, without the unit.
 * @example
 * ```ts
 * import { formatRuntime } from "./task_log.ts";
 * console.assert(formatRuntime(0.00123456) === "0.0012" && formatRuntime(2.5) === "2.500");
 * ```
 */
export function formatRuntime(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "0";
  return seconds < 1 ? String(Number(seconds.toPrecision(2))) : seconds.toFixed(3);
}

const RESULT_REPR = { maxLength: 1024 };

/**
 * Writes the received/succeeded lines of the tasks `target` (an App) runs.
 *
 * @param target The App (its signals).
 * @param options The logger.
 * @returns A function that removes the listeners.
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * import { AppEvent } from "../signals.ts";
 * import { logTaskLines } from "./task_log.ts";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * const lines: string[] = [];
 * const log = (m: string) => lines.push(m);
 * const stop = logTaskLines(app, { logger: { debug: log, info: log, warn: log, error: log } });
 * app.dispatchEvent(new AppEvent("taskSuccess", { id: "1", name: "t", hostname: "h", result: 4, runtime: 0.0012 }));
 * console.assert(lines[0] === "Task t[1] succeeded in 0.0012s: 4");
 * stop();
 * await app.close();
 * ```
 */
export function logTaskLines(target: EventTarget, options: TaskLogOptions): () => void {
  const { logger, info = true } = options;
  if (!info) return () => {};
  const received: EventListener = (e) => {
    const d = (e as unknown as AppEvent<"taskReceived">).detail;
    logger.info(`Task ${d.name}[${d.id}] received`, { task_id: d.id, task_name: d.name });
  };
  const succeeded: EventListener = (e) => {
    const d = (e as unknown as AppEvent<"taskSuccess">).detail;
    logger.info(
      `Task ${d.name}[${d.id}] succeeded in ${formatRuntime(d.runtime)}s: ${
        boundedRepr(d.result, RESULT_REPR)
      }`,
      { task_id: d.id, task_name: d.name, runtime: d.runtime },
    );
  };
  target.addEventListener("taskReceived", received);
  target.addEventListener("taskSuccess", succeeded);
  return () => {
    target.removeEventListener("taskReceived", received);
    target.removeEventListener("taskSuccess", succeeded);
  };
}
