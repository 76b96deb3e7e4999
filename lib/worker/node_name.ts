/**
 * Worker node names as Celery expands them (`celery/utils/nodenames.py:host_format`):
 * `-n worker1@%h` becomes `worker1@<this host>`.
 *
 * @module
 */

/**
 * Expands Celery's `%` keys in a node name: `%h` the host name, `%n` its first label, `%d` the
 * rest (the domain), `%i` the pool process index (`0` in the main process), `%I` the index with
 * a `-` prefix (empty in the main process), `%%` a literal `%`. A name without `@` gets the
 * given default prefix, as Celery's `default_nodename` does.
 *
 * @param name The name as given (`-n`).
 * @param host This machine's host name.
 * @returns The expanded name.
 * @throws {TypeError} On an unknown `%` key, as Celery raises ValueError.
 * @example
 * ```ts
 * import { expandNodeName } from "./node_name.ts";
 * console.assert(expandNodeName("w1@%h", "box.example.com") === "w1@box.example.com");
 * console.assert(expandNodeName("%n-%d@x", "box.example.com") === "box-example.com@x");
 * ```
 */
export function expandNodeName(name: string, host: string): string {
  const dot = host.indexOf(".");
  const keys: Record<string, string> = {
    h: host,
    n: dot === -1 ? host : host.slice(0, dot),
    d: dot === -1 ? "" : host.slice(dot + 1),
    i: "0",
    I: "",
    "%": "%",
  };
  return name.replace(/%([\w%])/g, (_all, key: string) => {
    const value = keys[key];
    if (value === undefined) {
      throw new TypeError(`Unknown format %${key} in node name ${JSON.stringify(name)}`);
    }
    return value;
  });
}
