/**
 * URL helpers shared by every transport. The scheme registry (URL → implementation) is
 * `lib/transport/registry.ts`; this module stays a leaf so brokers and backends can import it.
 *
 * @module
 */

/**
 * Hides the password of a URL, for logs and errors.
 *
 * @param url A URL.
 * @returns The URL with `***` for its password.
 * @example
 * ```ts
 * import { redact } from "./connect.ts";
 * console.assert(redact("redis://:secret@host:6379/0") === "redis://:***@host:6379/0");
 * ```
 */
export function redact(url: string): string {
  return url.replace(/^([a-z0-9+.-]+:\/\/[^:/@]*:)[^@/]*@/i, "$1***@");
}
