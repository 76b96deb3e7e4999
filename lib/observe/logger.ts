/**
 * The worker's logger: levels, and two line formats.
 *
 * - `text` (the default): `[time] LEVEL message {fields}`, every part escaped so that a line
 *   stays one line ({@linkcode formatLogLine}); a `traceback` field follows on its own
 *   lines, each escaped and indented by two spaces, so it reads as a traceback and cannot
 *   forge a log line. `task_id`, `task_name`, `node` and `runtime` are left out of the text (the
 *   message names the task already).
 * - `json`: one JSON object per line, `{"time","level","message","node","task_id",
 *   "task_name",...fields}`; every character JSON cannot carry raw, and every line or bidi
 *   control, is written as a `\uXXXX` escape.
 *
 * @module
 */

import type { Logger } from "../app.ts";
import { escapeControl, formatLogLine, logJson } from "../_log.ts";

/** A log level, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const ORDER: readonly LogLevel[] = ["debug", "info", "warn", "error"];

const ALIASES: Record<string, LogLevel> = {
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  critical: "error",
  fatal: "error",
};

/**
 * Reads a level name as Celery's `-l` takes it: `debug`, `info`, `warn`/`warning`,
 * `error`, `critical`/`fatal` (as `error`), in any case.
 *
 * @param name The name.
 * @returns The level.
 * @throws {RangeError} For another name.
 * @example
 * ```ts
 * import { parseLogLevel } from "./logger.ts";
 * console.assert(parseLogLevel("WARNING") === "warn");
 * ```
 */
export function parseLogLevel(name: string): LogLevel {
  const level = ALIASES[name.toLowerCase()];
  if (!level) {
    throw new RangeError(
      `Cannot set the log level: use debug, info, warning or error, got '${name}'`,
    );
  }
  return level;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Writes one line (without its newline). */
  write: (line: string) => void;
  /**
   * Lines below this level are dropped.
   * @default {"info"}
   */
  level?: LogLevel;
  /**
   * `text` or `json` (one object per line).
   * @default {"text"}
   */
  format?: "text" | "json";
  /** The clock. @default {() => new Date()} */
  now?: () => Date;
}

/** A {@linkcode Logger} that knows its level and node name. */
export interface LevelLogger extends Logger {
  /** The lowest level written. */
  readonly level: LogLevel;
  /** The node name written into JSON lines (`node`), once known. */
  node: string | undefined;
  /** Whether lines at `level` are written. */
  enabled(level: LogLevel): boolean;
}

const HIDDEN = new Set(["task_id", "task_name", "node", "runtime", "traceback"]);

/**
 * Makes a logger writing `text` or `json` lines.
 *
 * @param options Where, from which level, in which format.
 * @returns The logger.
 * @example
 * ```ts
 * import { createLogger } from "./logger.ts";
 * const lines: string[] = [];
 * const log = createLogger({ write: (l) => lines.push(l), format: "json", now: () => new Date(0) });
 * log.node = "w1@h";
 * log.info("Task t[1] received", { task_id: "1", task_name: "t" });
 * log.debug("dropped");
 * console.assert(JSON.parse(lines[0]!).task_id === "1" && lines.length === 1);
 * ```
 */
export function createLogger(options: LoggerOptions): LevelLogger {
  const { write, level = "info", format = "text", now = () => new Date() } = options;
  const min = ORDER.indexOf(level);
  const logger: LevelLogger = {
    level,
    node: undefined,
    enabled: (at) => ORDER.indexOf(at) >= min,
    debug: () => {},
    info: () => {},
    warn: () => {},
    error: () => {},
  };
  for (const at of ORDER) {
    if (ORDER.indexOf(at) < min) continue;
    const name = at.toUpperCase();
    logger[at] = (message, fields) => {
      try {
        write(
          format === "json"
            ? jsonLine(name, message, fields, now(), logger.node)
            : textLines(name, message, fields, now()),
        );
      } catch {
        // A logger never throws into the code that logs (a closed file, a full disk).
      }
    };
  }
  return logger;
}

function textLines(
  level: string,
  message: string,
  fields: Record<string, unknown> | undefined,
  now: Date,
): string {
  if (!fields) return formatLogLine(level, message, undefined, now);
  let shown: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    if (HIDDEN.has(key)) continue;
    (shown ??= {})[key] = fields[key];
  }
  const line = formatLogLine(level, message, shown, now);
  const traceback = fields.traceback;
  if (typeof traceback !== "string" || traceback === "") return line;
  const rest = traceback.replace(/\r\n?/g, "\n").split("\n").filter((l) => l !== "");
  return [line, ...rest.map((l) => "  " + escapeControl(l))].join("\n");
}

// Characters JSON.stringify leaves raw that a terminal or a log reader would act on.
const JSON_UNSAFE = /[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function jsonLine(
  level: string,
  message: string,
  fields: Record<string, unknown> | undefined,
  now: Date,
  node: string | undefined,
): string {
  const record: Record<string, unknown> = {
    time: now.toISOString(),
    level,
    message: String(message),
  };
  if (node !== undefined) record.node = node;
  if (fields) {
    for (const key of Object.keys(fields)) if (!(key in record)) record[key] = fields[key];
  }
  let text: string;
  try {
    text = logJson(record);
  } catch (e) {
    text = JSON.stringify({
      time: record.time,
      level,
      message: String(message),
      unformattable: String((e as Error)?.message ?? e),
    });
  }
  return text.replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
