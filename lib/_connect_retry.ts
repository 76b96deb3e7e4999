/**
 * Connecting as Celery does (`broker_connection_retry_on_startup`,
 * `broker_connection_max_retries`, `broker_connection_timeout`): every failed attempt is logged
 * with the redacted URL, its cause and the next delay; delays back off with jitter; the loop
 * stops after the retry limit, at once for a configuration error, and after a second try for an
 * authentication or TLS failure (they do not heal by waiting).
 *
 * @module
 */

import { delay } from "./_signal.ts";
import { CeleriacError } from "./errors.ts";

/** The logger methods the retry loop uses. */
export interface RetryLogger {
  /** Logs a failed attempt. */
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Options of {@linkcode connectWithRetry}. */
export interface ConnectRetryOptions {
  /** What connects, for messages: `broker`, `result backend`. */
  what: string;
  /** The URL, already redacted. */
  url: string;
  /**
   * Retry failed attempts (Celery's `broker_connection_retry_on_startup`); `false` makes one
   * attempt.
   * @default {true}
   */
  retry?: boolean;
  /**
   * Retries before giving up; `0` or `Infinity` retries forever (Celery's
   * `broker_connection_max_retries`).
   * @default {100}
   */
  maxRetries?: number;
  /**
   * Longest one attempt may take, in ms (Celery's `broker_connection_timeout`).
   * @default {4_000}
   */
  timeout?: number;
  /**
   * First delay between attempts, in ms; each later one doubles, up to 30 s, with jitter.
   * @default {1_000}
   */
  interval?: number;
  /** Stops connecting: the reason is thrown. */
  signal?: AbortSignal;
  /** Receives one WARN per failed attempt. */
  logger?: RetryLogger;
  /** Receives each failed attempt's error. */
  onFailure?: (error: unknown) => void;
}

/** A connection could not be made: the retry limit was reached, or it cannot work as set up. */
export class ConnectionFailedError extends CeleriacError {
  /** The redacted URL. */
  readonly url: string;
  /** Attempts made. */
  readonly attempts: number;

  /**
   * Creates the error.
   *
   * @param message The message.
   * @param url The redacted URL.
   * @param attempts Attempts made.
   * @param options The last attempt's error.
   */
  constructor(message: string, url: string, attempts: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionFailedError";
    this.url = url;
    this.attempts = attempts;
  }
}

/** What kind of failure an attempt's error is. */
export type ConnectFailure = "config" | "auth" | "tls" | "transient";

const AUTH = /WRONGPASS|NOAUTH|NOPERM|invalid (?:username|password)|ACCESS[-_]REFUSED|\b403\b/i;
const TLS_CODE = /^(?:ERR_SSL|ERR_TLS|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL)/;
const TLS_TEXT =
  /\b(?:tls|ssl|certificate|handshake|wrong version number|record overflow|corrupt message|peer sent no certificates)\b/i;

// The innermost useful error: node-redis and amqplib wrap the socket's.
function root(error: unknown): unknown {
  let e = error;
  for (let i = 0; i < 5; i++) {
    if (e instanceof AggregateError && e.errors.length) e = e.errors[0];
    else if (
      e instanceof Error && e.cause instanceof Error && e.name === "ReconnectStrategyError"
    ) e = e.cause;
    else break;
  }
  return e;
}

/**
 * Sorts a failed attempt: a configuration mistake (bad URL, missing certificate file) is not
 * retried, authentication and TLS failures get one more try, anything else is retried.
 *
 * @param error What the attempt threw.
 * @returns The kind of failure.
 * @example
 * ```ts
 * import { classifyConnectError } from "./_connect_retry.ts";
 * console.assert(classifyConnectError(new Error("WRONGPASS invalid password")) === "auth");
 * ```
 */
export function classifyConnectError(error: unknown): ConnectFailure {
  const e = root(error);
  if (e instanceof TypeError || e instanceof RangeError) return "config";
  if (e instanceof Deno.errors.NotFound || (e as { code?: unknown })?.code === "ENOENT") {
    return "config";
  }
  const text = describeConnectError(e);
  if (AUTH.test(text)) return "auth";
  const code = (e as { code?: unknown })?.code;
  if ((typeof code === "string" && TLS_CODE.test(code)) || TLS_TEXT.test(text)) return "tls";
  return "transient";
}

/**
 * One line about why an attempt failed, with the system error code when there is one
 * (`ECONNREFUSED`), for logs.
 *
 * @param error What the attempt threw.
 * @returns The description.
 * @example
 * ```ts
 * import { describeConnectError } from "./_connect_retry.ts";
 * console.assert(describeConnectError(new Error("boom")) === "boom");
 * ```
 */
export function describeConnectError(error: unknown): string {
  const e = root(error);
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  const message = (e.message || e.name).replace(/\.+$/, "");
  return typeof code === "string" && !message.includes(code) ? `${code}: ${message}` : message;
}

/**
 * Runs `attempt` until it succeeds, logging each failure with the next delay, as Celery's
 * worker does at start-up.
 *
 * @param attempt One connection attempt; it must give up when its signal aborts (the timeout
 *   of one attempt, or `options.signal`).
 * @param options The URL, limits, logger and signal.
 * @returns When connected.
 * @throws {ConnectionFailedError} After the retry limit, or for a failure retrying cannot fix.
 * @throws The signal's reason when `options.signal` aborts.
 * @example
 * ```ts
 * import { connectWithRetry } from "./_connect_retry.ts";
 * let tries = 0;
 * await connectWithRetry(async () => {
 *   if (++tries < 2) throw new Error("ECONNREFUSED");
 * }, { what: "broker", url: "redis://127.0.0.1", interval: 1 });
 * console.assert(tries === 2);
 * ```
 */
export async function connectWithRetry(
  attempt: (signal: AbortSignal) => Promise<void>,
  options: ConnectRetryOptions,
): Promise<void> {
  const { what, url, signal, logger } = options;
  const retry = options.retry ?? true;
  const max = options.maxRetries || Infinity;
  const timeout = options.timeout ?? 4_000;
  const interval = options.interval ?? 1_000;
  for (let attempts = 1;; attempts++) {
    signal?.throwIfAborted();
    const limit = AbortSignal.timeout(timeout);
    const stop = signal ? AbortSignal.any([signal, limit]) : limit;
    let error: unknown;
    try {
      await raceAbort(attempt(stop), stop);
      return;
    } catch (e) {
      error = e;
    }
    signal?.throwIfAborted();
    options.onFailure?.(error);
    if (limit.aborted) {
      error = new ConnectionFailedError(
        `no connection within ${timeout} ms (${describeConnectError(error)})`,
        url,
        attempts,
        { cause: error },
      );
    }
    const kind = classifyConnectError(error);
    const reason = describeConnectError(error);
    const retries = kind === "config" ? 0 : kind === "transient" ? max : 1;
    if (!retry || attempts > retries) {
      const why = kind === "auth"
        ? " (authentication failed: check the user and password)"
        : kind === "tls"
        ? " (TLS failed: check the scheme, port and certificates)"
        : attempts > 1
        ? ` (gave up after ${attempts} attempts)`
        : "";
      throw new ConnectionFailedError(
        `Cannot connect to ${what} ${url}: ${reason}${why}`,
        url,
        attempts,
        { cause: error },
      );
    }
    const base = Math.min(interval * 2 ** (attempts - 1), 30_000);
    const wait = Math.round(base / 2 + Math.random() * base / 2);
    logger?.warn(
      `Cannot connect to ${what} ${url}: ${reason}. Trying again in ${
        (wait / 1000).toFixed(2)
      } s (attempt ${attempts} of ${retries === Infinity ? "∞" : retries + 1})`,
    );
    await delay(wait, signal);
  }
}

// Settles with `promise`, or rejects with the signal's reason as soon as it aborts.
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** A broker or backend that can be asked to connect now. */
export interface Connectable {
  /** The redacted URL. */
  readonly url: string;
  /** One connection attempt. */
  connect?(options?: { signal?: AbortSignal }): Promise<void>;
}

/**
 * Connects brokers and backends once each, with {@linkcode connectWithRetry}: callers at the
 * same time share one retry loop (one WARN per attempt), each caller may give up with its own
 * signal, a failure is not remembered, and {@linkcode Connector.close} stops every loop.
 */
export class Connector {
  readonly #options: () => Omit<ConnectRetryOptions, "what" | "url" | "signal">;
  #connected = new WeakSet<object>();
  #pending = new WeakMap<object, Promise<void>>();
  #lastError = new WeakMap<object, unknown>();
  #closed = new AbortController();

  /**
   * Creates the connector.
   *
   * @param options The retry settings, read when a loop starts.
   * @example
   * ```ts
   * import { Connector } from "./_connect_retry.ts";
   * const connector = new Connector(() => ({ maxRetries: 3 }));
   * const memory = { url: "memory://" };
   * console.assert(await connector.ready(memory, "broker") === memory);
   * ```
   */
  constructor(options: () => Omit<ConnectRetryOptions, "what" | "url" | "signal">) {
    this.#options = options;
  }

  /**
   * Resolves with `resource` once it is connected (at once when it has no `connect`).
   *
   * @param resource The broker or backend.
   * @param what `broker` or `result backend`, for messages.
   * @param signal Gives up this call (the shared loop goes on for other callers).
   * @returns The resource.
   * @throws {ConnectionFailedError} When connecting failed for good.
   */
  async ready<T extends Connectable>(resource: T, what: string, signal?: AbortSignal): Promise<T> {
    if (!resource.connect || this.#connected.has(resource)) return resource;
    let pending = this.#pending.get(resource);
    if (!pending) {
      const loop = pending = connectWithRetry(
        (s) => resource.connect!({ signal: s }),
        {
          ...this.#options(),
          what,
          url: resource.url,
          signal: this.#closed.signal,
          onFailure: (e) => this.#lastError.set(resource, e),
        },
      );
      this.#pending.set(resource, loop);
      loop.then(() => this.#connected.add(resource), () => {}).finally(() => {
        if (this.#pending.get(resource) === loop) this.#pending.delete(resource);
      });
    }
    try {
      await (signal ? raceAbort(pending, signal) : pending);
    } catch (error) {
      // A caller's timeout: say what the attempts failed with, not just "timed out".
      if (signal?.aborted && (signal.reason as Error)?.name === "TimeoutError") {
        const last = this.#lastError.get(resource);
        throw new ConnectionFailedError(
          `Cannot connect to ${what} ${resource.url}: ${
            last === undefined ? "no attempt finished" : describeConnectError(last)
          } (timed out)`,
          resource.url,
          0,
          { cause: last ?? error },
        );
      }
      throw error;
    }
    return resource;
  }

  /** Stops every retry loop (their callers get the abort reason). */
  close(): void {
    this.#closed.abort(new ConnectionFailedError("The app is closed", "", 0));
  }
}

/**
 * A handler for errors of a connection that was up (its client reconnects by itself): one WARN,
 * the same one at most every 10 s (a consume loop retrying against a server that is down
 * repeats it).
 *
 * @param logger The logger, read at each error (the CLI replaces the App's).
 * @param what `broker` or `result backend`.
 * @param url The redacted URL.
 * @returns The handler.
 * @example
 * ```ts
 * import { connectionErrorLogger } from "./_connect_retry.ts";
 * const lines: string[] = [];
 * const onError = connectionErrorLogger(() => ({ warn: (m) => lines.push(m) }), "broker", "u");
 * onError(new Error("x"));
 * onError(new Error("x"));
 * console.assert(lines.length === 1);
 * ```
 */
export function connectionErrorLogger(
  logger: () => RetryLogger,
  what: string,
  url: string,
): (error: Error) => void {
  let last = "";
  let at = 0;
  return (error) => {
    const message = `${what} connection error: ${describeConnectError(error)}`;
    if (message === last && Date.now() - at < 10_000) return;
    last = message;
    at = Date.now();
    logger().warn(message, { url });
  };
}
