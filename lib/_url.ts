/**
 * Connection URLs: credentials read with `URL` (whatever characters the password holds, even a
 * raw `@`, `:`, `/` or `%`), and {@linkcode redact} for logs and errors.
 *
 * @module
 */

/** A connection URL split into its credentials and the rest. */
export interface ParsedUrl {
  /** The URL without its credentials, parsed by `URL`. */
  url: URL;
  /** The user name, percent-decoded; `undefined` when the URL has none. */
  username?: string;
  /** The password, percent-decoded; `undefined` when the URL has none. */
  password?: string;
}

// Where the credentials of `rest` (the URL after `scheme://`) end: the last `@`, unless what
// precedes it cannot be credentials (no `:` and a path or query before it: `host/0?x=a@b`).
function credentialsEnd(rest: string): number {
  const at = rest.lastIndexOf("@");
  if (at < 0) return -1;
  const before = rest.slice(0, at);
  if (!before.includes(":") && /[/?#]/.test(before)) return -1;
  return at;
}

// Percent-decodes valid `%XX` runs and leaves a stray `%` as it is (`p%ss` is a password).
function decode(text: string): string {
  return text.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

/**
 * Parses a connection URL: the credentials are cut at the last `@` (as `URL` does) before the
 * rest is parsed, so a password with a raw `/`, `?` or `#` does not end the host part early.
 *
 * @param raw The URL, e.g. `redis://user:p@ss@host:6379/0`.
 * @param parseAs A scheme to parse the rest with instead of the URL's own (`http:` gives
 *   `amqp://` URLs the parsing of a special scheme), or `undefined`.
 * @returns The URL without credentials, the user name and the password.
 * @throws {TypeError} When the URL has no `scheme://` or `URL` cannot parse it.
 * @example
 * ```ts
 * import { parseUrl } from "./_url.ts";
 * const { url, username, password } = parseUrl("redis://app:p@ss:w%rd@cache:6380/2");
 * console.assert(username === "app" && password === "p@ss:w%rd" && url.port === "6380");
 * ```
 */
export function parseUrl(raw: string, parseAs?: string): ParsedUrl {
  const match = /^([a-z][a-z0-9+.-]*:)\/\/(.*)$/is.exec(raw);
  if (!match) throw new TypeError(`Cannot use URL: it must look like scheme://host`);
  const scheme = match[1]!;
  const rest = match[2]!;
  const end = credentialsEnd(rest);
  const userinfo = end < 0 ? undefined : rest.slice(0, end);
  const hostPart = end < 0 ? rest : rest.slice(end + 1);
  let url: URL;
  try {
    url = new URL(`${parseAs ?? scheme}//${hostPart}`);
  } catch (cause) {
    throw new TypeError(`Cannot use URL "${redact(raw)}": it is not a valid URL`, { cause });
  }
  const result: ParsedUrl = { url };
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(":");
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user !== "") result.username = decode(user);
    if (colon >= 0) result.password = decode(userinfo.slice(colon + 1));
  }
  return result;
}

/**
 * Hides the password of a URL, for logs and errors, whatever characters it holds.
 *
 * @param url A URL.
 * @returns The URL with `***` for its password (unchanged when it has none).
 * @example
 * ```ts
 * import { redact } from "./_url.ts";
 * console.assert(redact("redis://:secret@host:6379/0") === "redis://:***@host:6379/0");
 * console.assert(redact("amqp://u:p@s:s%@host//") === "amqp://u:***@host//");
 * ```
 */
export function redact(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)(.*)$/is.exec(url);
  if (!match) return url;
  const rest = match[2]!;
  const end = credentialsEnd(rest);
  if (end < 0) return url;
  const userinfo = rest.slice(0, end);
  const colon = userinfo.indexOf(":");
  if (colon < 0) return url;
  return `${match[1]}${userinfo.slice(0, colon)}:***${rest.slice(end)}`;
}
