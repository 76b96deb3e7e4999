/**
 * Tracebacks in Python's layout, so tools that read a Celery traceback (Flower, Sentry's Celery
 * integration, `AsyncResult.traceback.splitlines()[-1]`) find the frames and the
 * `Type: message` line where Python puts them. The JavaScript frames are kept, oldest first.
 *
 * @module
 */

/** What {@linkcode pythonTraceback} needs of an error. */
export interface TracebackSource {
  /** The error type (`exc_type`). */
  name: string;
  /** The message. */
  message: string;
  /** The JavaScript stack (`Error.stack`), if any. */
  stack: string | null;
  /** The Python module of the type: `builtins` prints bare, others as `module.Type`. */
  module?: string;
}

const HEAD = "Traceback (most recent call last):";
// V8's frames: "    at fn (location:line:col)" or "    at location:line:col".
const FRAME = /^\s*at (?:(.+?) \()?(.+?):(\d+):(\d+)\)?$/;

function frameLine(text: string): string {
  const m = FRAME.exec(text);
  if (!m) return `  File "<unknown>", line 0, in ${text.trim().replace(/^at /, "")}`;
  const [, fn, where, line] = m;
  const file = where!.startsWith("file://") ? decodeURIComponent(where!.slice(7)) : where!;
  return `  File "${file}", line ${line}, in ${fn ?? "<module>"}`;
}

/**
 * Formats an error as Python's `traceback.format_exception` does: a `Traceback (most recent
 * call last):` header, one `File "...", line N, in fn` line per JavaScript frame (oldest
 * first), and `Type: message` last (`module.Type: message` outside `builtins`). A stack that
 * is already in Python's layout (a Python peer's traceback) is returned as it is.
 *
 * @param error The error's name, message, stack and module.
 * @returns The traceback text, ending with a newline as Python's does.
 * @example
 * ```ts
 * import { pythonTraceback } from "./traceback.ts";
 * const e = new TypeError("bad");
 * const tb = pythonTraceback({ name: e.name, message: e.message, stack: e.stack ?? null });
 * console.assert(tb.startsWith("Traceback (most recent call last):"));
 * console.assert(tb.trimEnd().split("\n").at(-1) === "TypeError: bad");
 * ```
 */
export function pythonTraceback(error: TracebackSource): string {
  if (error.stack?.startsWith(HEAD)) return error.stack;
  const frames = (error.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l)).reverse();
  const type = !error.module || error.module === "builtins" || error.module === "__main__"
    ? error.name
    : `${error.module}.${error.name}`;
  const last = error.message === "" ? type : `${type}: ${error.message}`;
  return [HEAD, ...frames.map(frameLine), last].join("\n") + "\n";
}
