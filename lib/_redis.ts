/**
 * Shared plumbing of the Redis broker and result backend: URL parsing, client creation with a
 * reconnect strategy, Lua scripts run with `EVALSHA` and an `EVAL` fallback, and a careful
 * `close()`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  ClientClosedError,
  ConnectionTimeoutError,
  createClient,
  DisconnectsClientError,
  ErrorReply,
  SocketClosedUnexpectedlyError,
} from "redis";
import { delay } from "./_signal.ts";

/** A node-redis client, as {@linkcode createRedisClient} makes it. */
export type RedisClient = ReturnType<typeof createClient>;

/** What a `redis://` or `rediss://` URL says. */
export interface RedisUrl {
  /** Host name. */
  host: string;
  /** Port. */
  port: number;
  /** Database number (the URL path `/N`). */
  db: number;
  /** ACL user name. */
  username?: string;
  /** Password. */
  password?: string;
  /** Whether to use TLS (`rediss://`). */
  tls: boolean;
}

/**
 * Parses a Redis URL: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS.
 *
 * @param url The URL.
 * @returns Its parts.
 * @throws {TypeError} For another scheme, a bad port or a database that is not a number.
 * @example
 * ```ts
 * import { parseRedisUrl } from "./_redis.ts";
 * const u = parseRedisUrl("rediss://app:s3cret@cache:6380/2");
 * console.assert(u.db === 2 && u.tls && u.username === "app" && u.password === "s3cret");
 * ```
 */
export function parseRedisUrl(url: string): RedisUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new TypeError(`Cannot use Redis URL: it is not a valid URL`, { cause });
  }
  const scheme = parsed.protocol;
  if (scheme !== "redis:" && scheme !== "rediss:") {
    throw new TypeError(`Cannot use Redis URL: scheme must be redis: or rediss:, got ${scheme}`);
  }
  const path = parsed.pathname.replace(/^\/+/, "");
  const db = path === "" ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0) {
    throw new TypeError(`Cannot use Redis URL: database must be a number, got "${path}"`);
  }
  const port = parsed.port === "" ? 6379 : Number(parsed.port);
  const result: RedisUrl = {
    host: parsed.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
    port,
    db,
    tls: scheme === "rediss:",
  };
  if (parsed.username) result.username = decodeURIComponent(parsed.username);
  if (parsed.password) result.password = decodeURIComponent(parsed.password);
  return result;
}

/**
 * Makes a client that reconnects forever (backoff up to 2 s) and never throws an unhandled
 * `error` event: commands sent while it is down wait in the offline queue.
 *
 * @param url The parsed URL.
 * @param onError Receives connection errors (they are retried).
 * @param name The connection name (`CLIENT SETNAME`), set again after every reconnect.
 * @returns A client, not yet connected.
 * @example
 * ```ts ignore
 * import { createRedisClient, parseRedisUrl } from "./_redis.ts";
 * const client = createRedisClient(parseRedisUrl("redis://127.0.0.1/0"));
 * await client.connect();
 * await client.disconnect();
 * ```
 */
export function createRedisClient(
  url: RedisUrl,
  onError?: (e: Error) => void,
  name?: string,
): RedisClient {
  const client = createClient({
    socket: {
      host: url.host,
      port: url.port,
      tls: url.tls,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 6), 2000),
    },
    database: url.db,
    ...(url.username !== undefined ? { username: url.username } : {}),
    ...(url.password !== undefined ? { password: url.password } : {}),
    ...(name !== undefined ? { name } : {}),
  });
  client.on("error", (e: Error) => onError?.(e));
  return client;
}

/**
 * Closes a client: `QUIT` (which flushes pending replies) when it is connected, bounded by a
 * timeout, then a hard disconnect. Never throws.
 *
 * @param client The client.
 * @param timeout Most milliseconds to wait for `QUIT`.
 * @returns Nothing.
 * @example
 * ```ts ignore
 * import { closeRedisClient } from "./_redis.ts";
 * await closeRedisClient(client);
 * ```
 */
export async function closeRedisClient(client: RedisClient, timeout = 2000): Promise<void> {
  if (client.isReady) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        client.quit(),
        new Promise((r) => timer = setTimeout(r, timeout)),
      ]);
    } catch {
      // Falls through to the hard disconnect.
    } finally {
      clearTimeout(timer);
    }
  }
  if (client.isOpen) {
    try {
      await client.disconnect();
    } catch {
      // Already gone.
    }
  }
}

/**
 * One shared client, connected on first use. A failed connect is not remembered (the next
 * `get()` tries again), and a client found wedged can be replaced.
 */
export class SharedRedisClient {
  readonly #make: () => RedisClient;
  #current: Promise<RedisClient> | undefined;

  /**
   * Creates the holder; nothing connects yet.
   *
   * @param make Makes a new, unconnected client.
   * @example
   * ```ts ignore
   * const shared = new SharedRedisClient(() => createRedisClient(parseRedisUrl(url)));
   * const client = await shared.get();
   * ```
   */
  constructor(make: () => RedisClient) {
    this.#make = make;
  }

  /**
   * The connected client, connecting it first when there is none.
   *
   * @returns The client.
   */
  get(): Promise<RedisClient> {
    if (this.#current) return this.#current;
    const connecting = (async () => {
      const client = this.#make();
      await client.connect();
      return client;
    })();
    this.#current = connecting;
    connecting.catch(() => {
      if (this.#current === connecting) this.#current = undefined;
    });
    return connecting;
  }

  /**
   * The client if one was made, without connecting.
   *
   * @returns The client's promise, or `undefined`.
   */
  peek(): Promise<RedisClient> | undefined {
    return this.#current;
  }

  /**
   * Disconnects a wedged client and, when it is the shared one, forgets it so that the next
   * `get()` makes a new one.
   *
   * @param wedged The client that gave no reply in time.
   */
  replace(wedged: RedisClient): void {
    const current = this.#current;
    current?.then((c) => {
      if (c === wedged && this.#current === current) this.#current = undefined;
    }, () => {});
    void wedged.disconnect().catch(() => {});
  }
}

/**
 * A Redis command got no reply in time: the connection is treated as wedged (seen after a
 * server restart under load: the socket reconnects but the client never becomes ready).
 */
export class RedisDeadlineError extends Error {
  /**
   * Creates the error.
   *
   * @param message What timed out.
   */
  constructor(message: string) {
    super(message);
    this.name = "RedisDeadlineError";
  }
}

/**
 * Waits for `promise`, or throws {@linkcode RedisDeadlineError} after `ms`.
 *
 * @param promise A Redis command.
 * @param ms The deadline.
 * @param what What the command was, for the error.
 * @returns The command's reply.
 * @example
 * ```ts
 * import { withDeadline } from "./_redis.ts";
 * console.assert((await withDeadline(Promise.resolve(1), 10, "x")) === 1);
 * ```
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new RedisDeadlineError(`${what}: no reply from Redis in ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// Server replies that mean "not now": a restarted server still loading its data set, a MULTI
// discarded because of that, a busy script, a replica without its master.
const TRANSIENT_REPLY = /^(LOADING|EXECABORT|BUSY|TRYAGAIN|MASTERDOWN)\b/;
const TRANSIENT_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT"]);

/**
 * Whether a command failed only because the server went away or is not ready yet (it restarted,
 * the connection dropped with the command in flight, the data set is still loading), so that
 * running an idempotent command again once the client has reconnected is right.
 *
 * @param error What the command threw.
 * @returns `true` for a transient failure.
 * @example
 * ```ts
 * import { isTransientRedisError } from "./_redis.ts";
 * console.assert(!isTransientRedisError(new Error("WRONGTYPE")));
 * ```
 */
export function isTransientRedisError(error: unknown): boolean {
  if (error instanceof RedisDeadlineError) return true;
  if (error instanceof SocketClosedUnexpectedlyError) return true;
  // A client closed under a command (replaced as wedged): callers that fetch the current
  // client on each attempt succeed on the next one.
  if (error instanceof DisconnectsClientError || error instanceof ClientClosedError) return true;
  if (error instanceof ConnectionTimeoutError) return true;
  if (error instanceof ErrorReply) return TRANSIENT_REPLY.test(error.message);
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && TRANSIENT_CODES.has(code);
}

/**
 * Runs `fn` again after transient failures ({@linkcode isTransientRedisError}), with a short
 * backoff, until it succeeds, fails otherwise, `signal` aborts or `timeout` ms have passed.
 * Only for commands that are safe to repeat: a command whose reply was lost may have run.
 *
 * @param fn The commands.
 * @param signal Stops retrying (the last error is thrown).
 * @param timeout Longest time to keep retrying, in ms.
 * @returns What `fn` returns.
 * @example
 * ```ts ignore
 * import { retryTransient } from "./_redis.ts";
 * await retryTransient(() => client.hDel("unacked", tag));
 * ```
 */
export async function retryTransient<T>(
  fn: () => Promise<T>,
  signal?: AbortSignal,
  timeout = 30_000,
): Promise<T> {
  const until = Date.now() + timeout;
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (!isTransientRedisError(error) || signal?.aborted || Date.now() >= until) throw error;
      try {
        await delay(Math.min(25 * 2 ** attempt, 500), signal);
      } catch {
        throw error;
      }
    }
  }
}

/**
 * A Lua script, run with `EVALSHA` and falling back to `EVAL` when the server does not know it
 * yet (`NOSCRIPT`, e.g. after a restart or `SCRIPT FLUSH`).
 */
export class RedisScript {
  /** The script's name, for errors. */
  readonly name: string;
  /** The Lua source. */
  readonly source: string;
  /** Its SHA-1, as `EVALSHA` wants it. */
  readonly sha: string;

  /**
   * Creates the script.
   *
   * @param name A name for errors.
   * @param source The Lua source.
   * @example
   * ```ts
   * import { RedisScript } from "./_redis.ts";
   * const s = new RedisScript("noop", "return 1");
   * console.assert(s.sha.length === 40);
   * ```
   */
  constructor(name: string, source: string) {
    this.name = name;
    this.source = source;
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  /**
   * Runs the script.
   *
   * @param client A connected client.
   * @param keys `KEYS`.
   * @param args `ARGV`.
   * @returns The script's reply.
   */
  async run(client: RedisClient, keys: string[], args: (string | number)[]): Promise<unknown> {
    const options = { keys, arguments: args.map(String) };
    try {
      return await client.evalSha(this.sha, options);
    } catch (error) {
      if (!String((error as Error)?.message).includes("NOSCRIPT")) throw error;
      return await client.eval(this.source, options);
    }
  }
}
