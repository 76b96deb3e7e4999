/**
 * Which folder the code that called into celeriac lives in: the App uses it to put the
 * default `kv://` file next to the app module, whatever the current directory of the process
 * that imports it (a worker started in one folder and a producer in another share one file).
 *
 * @module
 */

// celeriac's own files: frames in them are skipped (wherever celeriac is loaded from: a
// checkout, the JSR cache or an https URL).
const ROOT = new URL("../", import.meta.url).href;
const OWN = [`${ROOT}lib/`, `${ROOT}mod.ts`, `${ROOT}cli.ts`, `${ROOT}worker.ts`];

/**
 * The folder of the first `file:` module on the call stack outside celeriac, or `undefined`
 * when there is none (the App is made by celeriac's CLI itself, or by a remote module).
 *
 * @returns An absolute path without a trailing slash, or `undefined`.
 * @example
 * ```ts
 * import { callerDir } from "./_module_dir.ts";
 * console.assert(callerDir() === undefined || callerDir()!.startsWith("/"));
 * ```
 */
export function callerDir(): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 50;
  let stack: string;
  try {
    stack = new Error().stack ?? "";
  } finally {
    Error.stackTraceLimit = limit;
  }
  for (const match of stack.matchAll(/((?:file|https?|ext|node|data):[^\s)]+?):\d+:\d+\)?$/gm)) {
    const url = match[1]!;
    if (OWN.some((own) => url.startsWith(own))) continue;
    if (!url.startsWith("file:")) return undefined;
    try {
      const path = decodeURIComponent(new URL(url).pathname);
      return path.slice(0, path.lastIndexOf("/")) || "/";
    } catch {
      return undefined;
    }
  }
  return undefined;
}
