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
  createCluster,
  DisconnectsClientError,
  ErrorReply,
  SocketClosedUnexpectedlyError,
} from "redis";
import { isIP } from "node:net";
import { setImmediate } from "node:timers";
import { delay } from "./_signal.ts";
import { type ParsedUrl, parseUrl } from "./_url.ts";
import { type SentinelAddress, SentinelMaster } from "./_redis_sentinel.ts";
import { type ClusterNode, parseClusterNodes } from "./_redis_cluster.ts";

/** A node-redis client, as {@linkcode createRedisClient} makes it. */
export type RedisClient = ReturnType<typeof createClient>;

/** TLS settings of a `rediss://` URL (redis-py's `ssl_*` query parameters). */
export interface RedisTlsOptions {
  /** Path of a PEM file with the CA certificates to trust (`ssl_ca_certs`). */
  caFile?: string;
  /** Path of the client certificate, PEM (`ssl_certfile`). */
  certFile?: string;
  /** Path of the client key, PEM (`ssl_keyfile`). */
  keyFile?: string;
  /**
   * Whether the server's certificate must verify (`ssl_cert_reqs`: `required`, or `none` /
   * `optional`, which Node cannot tell apart, to skip the check).
   * @default {true}
   */
  verify?: boolean;
}

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
  /** TLS settings from the query (`?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem`). */
  tlsOptions?: RedisTlsOptions;
  /** Longest a socket may take to connect, in ms (`?socket_connect_timeout=S`, seconds). */
  connectTimeout?: number;
  /**
   * For a `sentinel://` URL: where the master is, asked of the sentinels (then `host` and
   * `port` are the first sentinel's, never connected to as a data node).
   */
  sentinel?: SentinelMaster;
  /**
   * For a `redis+cluster://` URL: the nodes to start from (the client finds the others and
   * routes each command to the node of its key's slot).
   */
  cluster?: ClusterNode[];
}

/** Options of {@linkcode parseRedisUrl} that a URL cannot carry (transport options). */
export interface RedisUrlOptions {
  /** For `sentinel://`: the monitored master's name (kombu's `master_name`). */
  masterName?: string;
  /** For `sentinel://`: the sentinels' own password (kombu's `sentinel_kwargs.password`). */
  sentinelPassword?: string;
}

/**
 * Reads the Sentinel settings of a broker's or backend's transport options, kombu's names
 * first: `master_name` (or `masterName`) and `sentinel_kwargs.password`.
 *
 * @param options Transport options.
 * @returns The settings found.
 * @throws {TypeError} When `master_name` is not a string.
 * @example
 * ```ts
 * import { sentinelOptions } from "./_redis.ts";
 * console.assert(sentinelOptions({ master_name: "mymaster" }).masterName === "mymaster");
 * ```
 */
export function sentinelOptions(options: Record<string, unknown> = {}): RedisUrlOptions {
  const out: RedisUrlOptions = {};
  const name = options.master_name ?? options.masterName;
  if (name !== undefined) {
    if (typeof name !== "string") {
      throw new TypeError(`Cannot set master_name: it must be a string, got ${name}`);
    }
    out.masterName = name;
  }
  const kwargs = options.sentinel_kwargs as { password?: unknown } | undefined;
  if (typeof kwargs?.password === "string") out.sentinelPassword = kwargs.password;
  return out;
}

// `sentinel://a:26379;sentinel://b:26379/0`: the first URL as a redis:// one (credentials,
// database, query), the sentinels' addresses from all.
function parseSentinelUrl(url: string, options: RedisUrlOptions): RedisUrl {
  const parts = url.split(";").map((p) => p.trim()).filter((p) => p !== "");
  const sentinels: SentinelAddress[] = [];
  for (const part of parts) {
    if (!/^sentinel:\/\//i.test(part)) {
      throw new TypeError(
        `Cannot use Redis URL: every part of a Sentinel URL must be sentinel://host:port`,
      );
    }
    const { url: u } = parseUrl(part.replace(/^sentinel:/i, "redis:"));
    sentinels.push({
      host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
      port: u.port === "" ? 26379 : Number(u.port),
    });
  }
  if (sentinels.length === 0) throw new TypeError(`Cannot use Redis URL: no sentinel given`);
  const first = parseRedisUrl(parts[0]!.replace(/^sentinel:/i, "redis:"));
  const query = parseUrl(parts[0]!.replace(/^sentinel:/i, "redis:")).url.searchParams;
  const masterName = options.masterName ?? query.get("master_name") ?? undefined;
  return {
    ...first,
    host: sentinels[0]!.host,
    port: sentinels[0]!.port,
    sentinel: new SentinelMaster({
      sentinels,
      ...(masterName !== undefined ? { masterName } : {}),
      ...(options.sentinelPassword !== undefined
        ? { sentinelPassword: options.sentinelPassword }
        : {}),
    }),
  };
}

const CERT_REQS: Record<string, boolean> = {
  required: true,
  cert_required: true,
  optional: false,
  cert_optional: false,
  none: false,
  cert_none: false,
};

/**
 * Parses a Redis URL: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS, with
 * redis-py's `ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` and
 * `socket_connect_timeout` query parameters. The password may hold any character (a raw `@`,
 * `:`, `/` or `%` included). `sentinel://h1:26379;sentinel://h2:26379[/db]` (kombu's form)
 * gives a URL whose master is asked of those sentinels (see `lib/_redis_sentinel.ts`).
 *
 * @param url The URL.
 * @param options The Sentinel settings a `sentinel://` URL cannot carry.
 * @returns Its parts.
 * @throws {TypeError} For another scheme, a bad port, a database that is not a number or a bad
 *   query parameter.
 * @example
 * ```ts
 * import { parseRedisUrl } from "./_redis.ts";
 * const u = parseRedisUrl("rediss://app:s3cret@cache:6380/2");
 * console.assert(u.db === 2 && u.tls && u.username === "app" && u.password === "s3cret");
 * ```
 */
export function parseRedisUrl(url: string, options: RedisUrlOptions = {}): RedisUrl {
  if (/^sentinel:/i.test(url)) return parseSentinelUrl(url, options);
  if (/^rediss?\+cluster:/i.test(url)) {
    const { nodes, single } = parseClusterNodes(url);
    const tls = /^rediss/i.test(url);
    const first = parseRedisUrl(tls ? single.replace(/^redis:/, "rediss:") : single);
    if (first.db !== 0) {
      throw new TypeError(`Cannot use Redis Cluster URL: a cluster has database 0 only`);
    }
    return { ...first, cluster: nodes };
  }
  let parts: ParsedUrl;
  try {
    parts = parseUrl(url);
  } catch (cause) {
    throw new TypeError(`Cannot use Redis URL: it is not a valid URL`, { cause });
  }
  const parsed = parts.url;
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
  if (parts.username !== undefined) result.username = parts.username;
  if (parts.password !== undefined && parts.password !== "") result.password = parts.password;
  const q = parsed.searchParams;
  const tls: RedisTlsOptions = {};
  const reqs = q.get("ssl_cert_reqs");
  if (reqs !== null) {
    const verify = CERT_REQS[reqs.toLowerCase()];
    if (verify === undefined) {
      throw new TypeError(
        `Cannot use Redis URL: ssl_cert_reqs must be required, optional or none, got "${reqs}"`,
      );
    }
    tls.verify = verify;
  }
  const ca = q.get("ssl_ca_certs");
  if (ca) tls.caFile = ca;
  const cert = q.get("ssl_certfile");
  if (cert) tls.certFile = cert;
  const key = q.get("ssl_keyfile");
  if (key) tls.keyFile = key;
  if (Object.keys(tls).length) result.tlsOptions = tls;
  const timeout = q.get("socket_connect_timeout");
  if (timeout !== null) {
    const seconds = Number(timeout);
    if (!(seconds > 0)) {
      throw new TypeError(
        `Cannot use Redis URL: socket_connect_timeout must be positive seconds, got "${timeout}"`,
      );
    }
    result.connectTimeout = seconds * 1000;
  }
  return result;
}

/**
 * The TLS socket options of a parsed URL: certificates read from their files, and a server
 * name (SNI, and the name checked in the certificate) only for a host name, never an IP.
 *
 * @param host The host.
 * @param options The TLS settings.
 * @returns Options for `tls.connect`.
 * @throws {Deno.errors.NotFound} When a certificate file is missing.
 * @example
 * ```ts
 * import { tlsSocketOptions } from "./_redis.ts";
 * console.assert(tlsSocketOptions("127.0.0.1", {}).servername === undefined);
 * console.assert(tlsSocketOptions("cache", {}).servername === "cache");
 * ```
 */
export function tlsSocketOptions(
  host: string,
  options: RedisTlsOptions,
): { servername?: string; ca?: string; cert?: string; key?: string; rejectUnauthorized: boolean } {
  const out: ReturnType<typeof tlsSocketOptions> = {
    rejectUnauthorized: options.verify ?? true,
  };
  if (isIP(host) === 0) out.servername = host;
  if (options.caFile) out.ca = Deno.readTextFileSync(options.caFile);
  if (options.certFile) out.cert = Deno.readTextFileSync(options.certFile);
  if (options.keyFile) out.key = Deno.readTextFileSync(options.keyFile);
  return out;
}

/**
 * Makes a client. Until it has been ready once, a failed connection is not retried:
 * `connect()` rejects with the cause (`ECONNREFUSED`, `WRONGPASS`, a TLS error), so the caller
 * decides whether and when to try again (see `lib/_connect_retry.ts`). Once ready, a lost
 * connection is retried forever (backoff up to 2 s) while commands wait in the offline queue;
 * the first error of each outage goes to `onError`, and it never throws an unhandled `error`
 * event.
 *
 * @param url The parsed URL.
 * @param onError Receives connection errors after the client was ready (they are retried).
 * @param name The connection name (`CLIENT SETNAME`), set again after every reconnect.
 * @returns A client, not yet connected.
 * @throws {Deno.errors.NotFound} When a TLS certificate file is missing.
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
  if (url.cluster) return createRedisClusterClient(url, url.cluster, onError, name);
  let ready = false;
  let outage = false;
  const socket = {
    host: url.host,
    port: url.port,
    ...(url.connectTimeout !== undefined ? { connectTimeout: url.connectTimeout } : {}),
    reconnectStrategy: (retries: number) => {
      if (!ready) return false as const;
      // Behind Sentinel, every lost connection asks where the master is now (a failover).
      if (url.sentinel) void followMaster(client, url.sentinel);
      return Math.min(50 * 2 ** Math.min(retries, 6), 2000);
    },
  };
  const client = createClient({
    socket: url.tls
      ? { ...socket, tls: true as const, ...tlsSocketOptions(url.host, url.tlsOptions ?? {}) }
      : socket,
    database: url.db,
    ...(url.username !== undefined ? { username: url.username } : {}),
    ...(url.password !== undefined ? { password: url.password } : {}),
    ...(name !== undefined ? { name } : {}),
  });
  client.on("ready", () => {
    ready = true;
    outage = false;
    if (url.sentinel) {
      void checkMaster(client, url.sentinel, onError);
      if (!unwatchers.has(client)) unwatchers.set(client, followSwitches(client, url.sentinel));
    }
  });
  client.on("end", () => {
    const unwatch = unwatchers.get(client);
    unwatchers.delete(client);
    void unwatch?.();
  });
  client.on("error", (e: Error) => {
    if (!ready || outage) return;
    outage = true;
    onError?.(e);
  });
  if (url.sentinel) sentinels.set(client, url.sentinel);
  return client;
}

/**
 * Whether a client is a cluster client ({@linkcode createRedisClient} for `redis+cluster://`).
 *
 * @param client A client.
 * @returns `true` for a cluster client.
 */
export function isClusterClient(client: RedisClient): boolean {
  return clusters.has(client);
}

const clusters = new WeakSet<RedisClient>();

// A node-redis cluster client, typed as a single-node one: celeriac uses on it only what both
// offer with the same shape (keyed commands routed by their first key, scripts with KEYS, a
// MULTI whose keys share a slot, pub/sub). It gets the `isReady` a single-node client has.
function createRedisClusterClient(
  url: RedisUrl,
  nodes: ClusterNode[],
  onError?: (e: Error) => void,
  name?: string,
): RedisClient {
  const socket = {
    ...(url.connectTimeout !== undefined ? { connectTimeout: url.connectTimeout } : {}),
    reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 6), 2000),
  };
  const tls = url.tls
    ? { tls: true as const, ...tlsSocketOptions(url.host, url.tlsOptions ?? {}) }
    : {};
  const cluster = createCluster({
    rootNodes: nodes.map((n) => ({ socket: { host: n.host, port: n.port, ...tls } })),
    defaults: {
      socket: { ...socket, ...tls },
      ...(url.username !== undefined ? { username: url.username } : {}),
      ...(url.password !== undefined ? { password: url.password } : {}),
      ...(name !== undefined ? { name } : {}),
    },
  });
  let outage = false;
  cluster.on("error", (e: Error) => {
    if (outage) return;
    outage = true;
    setTimeout(() => outage = false, 1_000);
    onError?.(e);
  });
  Object.defineProperty(cluster, "isReady", { get: () => cluster.isOpen });
  const client = cluster as unknown as RedisClient;
  clusters.add(client);
  return client;
}

// The Sentinel tracker of each client made for a `sentinel://` URL.
const sentinels = new WeakMap<RedisClient, SentinelMaster>();
// Stops a Sentinel client's `+switch-master` watch; the id of its current connection.
const unwatchers = new WeakMap<RedisClient, () => Promise<void>>();
const connectionIds = new WeakMap<RedisClient, number>();

// On `+switch-master`, a client points its socket at the new master and drops its connection
// to the old one (which a sentinel may not be able to reach and demote, e.g. behind a
// partition), so it reconnects there now rather than at its next error.
function followSwitches(client: RedisClient, sentinel: SentinelMaster): () => Promise<void> {
  return sentinel.watch(({ host, port }) => {
    const socket = client.options?.socket as { host?: string; port?: number } | undefined;
    if (!socket || (socket.host === host && socket.port === port)) return;
    socket.host = host;
    socket.port = port;
    const id = connectionIds.get(client);
    if (id === undefined || !client.isReady) return;
    void client.sendCommand(["CLIENT", "KILL", "ID", String(id), "SKIPME", "no"]).catch(() => {});
  });
}

// Points a client's socket options at the master the sentinels name now: node-redis reads
// them again on every (re)connect.
async function followMaster(
  client: RedisClient,
  sentinel: SentinelMaster,
  strict = false,
): Promise<void> {
  try {
    const { host, port } = await sentinel.refresh();
    const socket = client.options?.socket as { host?: string; port?: number } | undefined;
    if (socket) {
      socket.host = host;
      socket.port = port;
    }
  } catch (error) {
    if (strict) throw error;
  }
}

// After a failover a reconnect may land on the old master, now a replica (a sentinel kills
// its clients when it demotes it, but may not have named the new one yet): such a connection
// is dropped, so that it reconnects where the sentinels point.
async function checkMaster(
  client: RedisClient,
  sentinel: SentinelMaster,
  onError?: (e: Error) => void,
): Promise<void> {
  try {
    const [role, id] = await Promise.all([
      client.sendCommand<unknown[]>(["ROLE"]),
      client.sendCommand<number>(["CLIENT", "ID"]),
    ]);
    connectionIds.set(client, Number(id));
    if (role?.[0] === "master") return;
    onError?.(new Error(`Redis at the Sentinel master's address is a ${role?.[0]}: reconnecting`));
    await followMaster(client, sentinel);
    await client.sendCommand(["CLIENT", "KILL", "ID", String(id), "SKIPME", "no"]);
  } catch {
    // The connection went away meanwhile: its reconnect asks again.
  }
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
  // A Sentinel client's `+switch-master` watch ends with it (the last one closes the
  // sentinel connection).
  const unwatch = unwatchers.get(client);
  unwatchers.delete(client);
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
  await unwatch?.();
}

// How long a TLS handshake may go unanswered before the port is probed for plain TCP (ms).
const TLS_HANDSHAKE_PROBE = 2_500;

/** A `rediss://` URL points at a port that accepts TCP but never answers the TLS handshake. */
export class RedisTlsHandshakeError extends Error {
  /** Node's code for a TLS failure, so that the error is sorted as one. */
  readonly code = "ERR_TLS_HANDSHAKE_TIMEOUT";

  /**
   * Creates the error.
   *
   * @param host The host.
   * @param port The port.
   */
  constructor(host: string, port: number) {
    super(
      `TLS handshake with ${host}:${port} got no reply, though the port accepts TCP: ` +
        `is it a plain (non-TLS) port? Use redis:// for it, or the server's TLS port`,
    );
    this.name = "RedisTlsHandshakeError";
  }
}

/**
 * Connects a client made by {@linkcode createRedisClient}. A TLS client whose handshake is not
 * answered for a while has its port probed with plain TCP: a port that accepts TCP but stays
 * silent to TLS is a plain Redis port, reported as {@linkcode RedisTlsHandshakeError} instead of
 * a bare timeout (a plain Redis server waits forever for the end of a "command").
 *
 * @param client The client.
 * @returns When the client is ready.
 * @throws What the connection failed with.
 */
export async function connectRedisClient(client: RedisClient): Promise<void> {
  const sentinel = sentinels.get(client);
  if (sentinel) await followMaster(client, sentinel, true);
  const socket = client.options?.socket as
    | { tls?: boolean; host?: string; port?: number }
    | undefined;
  if (!socket?.tls) {
    await client.connect();
    return;
  }
  let socketUp = false;
  const onConnect = () => socketUp = true;
  client.on("connect", onConnect);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => {
      if (socketUp || !socket.host || !socket.port) return;
      const tcp = await Deno.connect({ hostname: socket.host, port: socket.port }).catch(() =>
        undefined
      );
      if (!tcp) return;
      tcp.close();
      if (socketUp) return;
      reject(new RedisTlsHandshakeError(socket.host, socket.port));
      void closeRedisClient(client, 0);
    }, TLS_HANDSHAKE_PROBE);
  });
  try {
    await Promise.race([client.connect(), silent]);
  } finally {
    clearTimeout(timer);
    client.off("connect", onConnect);
  }
}

/**
 * One shared client, connected on first use. A failed connect is not remembered (the next
 * `get()` tries again), and a client found wedged can be replaced.
 */
export class SharedRedisClient {
  readonly #make: () => RedisClient;
  #current: Promise<RedisClient> | undefined;
  // The client #current resolved to, once connected.
  #connected: RedisClient | undefined;
  // Clients still connecting, by their promise, so that an abort can stop them.
  #connecting = new Map<Promise<RedisClient>, RedisClient>();

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
   * The connected client, connecting it first when there is none. One attempt: a failed
   * connect rejects with its cause and is not remembered, so the next call tries again.
   *
   * @param signal Gives up this call; when it aborts while the client is still connecting,
   *   that client is disconnected (the next call makes a new one).
   * @returns The client.
   */
  get(signal?: AbortSignal): Promise<RedisClient> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    let current = this.#current;
    if (!current) {
      const client = this.#make();
      const connecting = current = (async () => {
        await connectRedisClient(client);
        return client;
      })();
      this.#current = connecting;
      this.#connected = undefined;
      this.#connecting.set(connecting, client);
      connecting.then(
        (c) => {
          this.#connecting.delete(connecting);
          if (this.#current === connecting) this.#connected = c;
        },
        () => {
          this.#connecting.delete(connecting);
          if (this.#current === connecting) this.#current = undefined;
        },
      );
    }
    if (!signal) return current;
    const pending = current;
    return new Promise<RedisClient>((resolve, reject) => {
      const onAbort = () => {
        reject(signal.reason);
        const client = this.#connecting.get(pending);
        if (!client) return;
        if (this.#current === pending) this.#current = undefined;
        this.#connecting.delete(pending);
        void closeRedisClient(client, 0);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
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
    // At once when it is the connected shared client: a get() right after this call must make
    // a new client, not hand the disconnected one back.
    if (this.#connected === wedged) {
      this.#current = undefined;
      this.#connected = undefined;
    }
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

/**
 * Schedules the flush of a batch of commands just opened (acks, result stores). While none is
 * on its way (`inFlight` 0), it runs after the microtasks queued so far, so a lone command does
 * not wait a turn of the event loop; while some are, it runs on the next turn (`setImmediate`,
 * not `setTimeout(0)`, which waits at least 1 ms), so one turn's commands share one call.
 *
 * @param inFlight Batches sent and not answered yet.
 * @param flush Sends the batch; called once.
 * @example
 * ```ts
 * import { scheduleFlush } from "./_redis.ts";
 * const sent: string[] = [];
 * scheduleFlush(0, () => sent.push("soon"));
 * await Promise.resolve();
 * console.assert(sent[0] === "soon");
 * ```
 */
export function scheduleFlush(inFlight: number, flush: () => void): void {
  if (inFlight === 0) queueMicrotask(flush);
  else setImmediate(flush);
}

// Server replies that mean "not now": a restarted server still loading its data set, a MULTI
// discarded because of that, a busy script, a replica without its master.
// READONLY/UNBLOCKED: a command reached a demoted master (a Sentinel failover): the client
// reconnects to the new one. CLUSTERDOWN: a cluster failing over a node.
const TRANSIENT_REPLY =
  /^(LOADING|EXECABORT|BUSY|TRYAGAIN|MASTERDOWN|READONLY|UNBLOCKED|CLUSTERDOWN)\b/;
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
    if (clusters.has(client)) return await this.#runOnCluster(client, keys, args.map(String));
    const options = { keys, arguments: args.map(String) };
    try {
      return await client.evalSha(this.sha, options);
    } catch (error) {
      if (!String((error as Error)?.message).includes("NOSCRIPT")) throw error;
      return await client.eval(this.source, options);
    }
  }

  // node-redis 4 routes `evalSha` on a cluster to a random node (it reads no key from the
  // options): the script goes to the node of its first key instead.
  async #runOnCluster(client: RedisClient, keys: string[], args: string[]): Promise<unknown> {
    const cluster = client as unknown as {
      sendCommand(
        firstKey: string | undefined,
        readonly: boolean,
        args: string[],
      ): Promise<unknown>;
    };
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await cluster.sendCommand(keys[0], false, ["EVALSHA", this.sha, ...tail]);
    } catch (error) {
      if (!String((error as Error)?.message).includes("NOSCRIPT")) throw error;
      return await cluster.sendCommand(keys[0], false, ["EVAL", this.source, ...tail]);
    }
  }
}
