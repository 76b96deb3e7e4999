/**
 * One reconnecting AMQP connection (amqplib) shared by a broker's publishers and consumers.
 *
 * The connection opens on first use. When RabbitMQ closes it (restart, `rabbitmqctl
 * close_connection`, a lost socket), the next caller of {@linkcode AmqpConnection.connection}
 * opens a new one, retrying with a capped backoff; consumers watch their channel's `close`
 * event and come back on the new connection. Unacked messages of the dead connection are
 * requeued by RabbitMQ itself.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import amqp from "amqplib";
import { hostname } from "node:os";
import { isIP } from "node:net";
import process from "node:process";
import tls from "node:tls";
import { delay } from "../_signal.ts";
import { classifyConnectError } from "../_connect_retry.ts";
import { type ParsedUrl, parseUrl } from "../_url.ts";
import { CeleriacError } from "../errors.ts";

/** Options of {@linkcode AmqpConnection}. */
export interface AmqpConnectionOptions {
  /**
   * The `connection_name` client property RabbitMQ shows (`rabbitmqctl list_connections
   * client_properties`), useful to close one connection by name.
   * @default {`celeriac ${hostname} ${pid}`}
   */
  connectionName?: string;
  /**
   * Heartbeat in seconds (0 turns heartbeats off).
   * @default {60}
   */
  heartbeat?: number;
  /** TLS and socket options passed to amqplib for `amqps://`. */
  socketOptions?: Record<string, unknown>;
  /**
   * Most time spent reconnecting before an operation fails, in milliseconds.
   * @default {30_000}
   */
  connectTimeout?: number;
  /** Receives errors of a connection that was open (it is reopened on next use). */
  onError?: (error: Error) => void;
}

/** The connection could not be opened (or reopened) in time. */
export class AmqpConnectionError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param message What failed.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AmqpConnectionError";
  }
}

/**
 * Parses an `amqp://` / `amqps://` URL the way kombu does: no host means localhost, no port
 * means 5672 (5671 for amqps), user and password default to guest, and the path is the vhost
 * (`amqp://host//` and `amqp://host/` both mean vhost `/`).
 *
 * @param url The broker URL.
 * @param heartbeat Heartbeat in seconds.
 * @returns amqplib connect options.
 * @throws {TypeError} For a URL that is not amqp(s).
 */
export function parseAmqpUrl(url: string, heartbeat = 60): amqp.Options.Connect {
  if (!/^amqps?:\/\//i.test(url)) {
    throw new TypeError(`Cannot use AMQP URL: the scheme must be amqp:// or amqps://`);
  }
  const tls = /^amqps:/i.test(url);
  let parts: ParsedUrl;
  try {
    parts = parseUrl(url, tls ? "https:" : "http:");
  } catch (cause) {
    throw new TypeError(`Cannot use AMQP URL: it is not a valid URL`, { cause });
  }
  const parsed = parts.url;
  const path = parsed.pathname.slice(1);
  return {
    protocol: tls ? "amqps" : "amqp",
    hostname: parsed.hostname.replace(/^\[|\]$/g, "") || "localhost",
    port: parsed.port ? Number(parsed.port) : tls ? 5671 : 5672,
    username: parts.username ?? "guest",
    password: parts.password ?? "guest",
    vhost: path === "" ? "/" : decodeURIComponent(path),
    heartbeat,
  };
}

/**
 * The TLS socket options an `amqps://` URL's query gives (kombu's `ssl` settings under
 * redis-py's names): `ssl_cert_reqs=none|optional|required`, `ssl_ca_certs`, `ssl_certfile`,
 * `ssl_keyfile`, read from their files.
 *
 * @param url The broker URL.
 * @returns Socket options for amqplib (empty for `amqp://`).
 * @throws {TypeError} For a bad `ssl_cert_reqs`.
 * @throws {Deno.errors.NotFound} When a certificate file is missing.
 */
export function amqpTlsOptions(url: string): Record<string, unknown> {
  if (!/^amqps:/i.test(url)) return {};
  const q = parseUrl(url, "https:").url.searchParams;
  const out: Record<string, unknown> = {};
  const reqs = q.get("ssl_cert_reqs")?.toLowerCase().replace(/^cert_/, "");
  if (reqs !== undefined) {
    if (!["none", "optional", "required"].includes(reqs)) {
      throw new TypeError(
        `Cannot use AMQP URL: ssl_cert_reqs must be required, optional or none, got "${reqs}"`,
      );
    }
    out.rejectUnauthorized = reqs === "required";
  }
  for (
    const [param, key] of [["ssl_ca_certs", "ca"], ["ssl_certfile", "cert"], ["ssl_keyfile", "key"]]
  ) {
    const file = q.get(param!);
    if (file) out[key!] = Deno.readTextFileSync(file);
  }
  return out;
}

// amqplib always sets `servername` to the host, and Node's TLS refuses an IP there ("options.
// servername must not be an IP address"): for an IP host it is dropped, so that the certificate
// is checked against the IP. amqplib calls `tls.connect` synchronously inside `connect()`.
function connectAmqp(
  options: amqp.Options.Connect,
  socketOptions: Record<string, unknown>,
): Promise<amqp.ChannelModel> {
  if (options.protocol !== "amqps" || isIP(options.hostname ?? "") === 0) {
    return amqp.connect(options, socketOptions);
  }
  const original = tls.connect;
  const patched = ((opts: Record<string, unknown>, ...rest: unknown[]) => {
    if (opts && typeof opts.servername === "string" && isIP(opts.servername) !== 0) {
      delete opts.servername;
    }
    return (original as (...a: unknown[]) => unknown)(opts, ...rest);
  }) as typeof tls.connect;
  tls.connect = patched;
  try {
    return amqp.connect(options, socketOptions);
  } finally {
    tls.connect = original;
  }
}

// The socket under an amqplib connection (`connection.stream`: not typed, but stable across
// amqplib 0.5–0.10).
interface AmqpSocket {
  write(...args: unknown[]): boolean;
  cork(): void;
  uncork(): void;
}

/**
 * Writes the frames amqplib sends in one pass of its writer in one system call. amqplib's
 * multiplexer writes each frame (a published message, an ack) to the socket on its own, and
 * each write is a `write(2)` that RabbitMQ then reads on its own. The socket is corked at the
 * first write and uncorked once the current callback (amqplib's pass over its channels) has
 * run, so the frames leave together, in order, with no added delay.
 *
 * @param model The connection.
 */
function coalesceWrites(model: amqp.ChannelModel): void {
  const socket = (model as unknown as { connection?: { stream?: AmqpSocket } }).connection?.stream;
  if (!socket || typeof socket.cork !== "function" || typeof socket.uncork !== "function") return;
  const write = socket.write.bind(socket);
  let corked = false;
  const flush = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = (...args: unknown[]) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(flush);
    }
    return write(...args);
  };
}

// Refusals that waiting does not fix: a bad login, a TLS mismatch.
function isFatal(error: unknown): boolean {
  const kind = classifyConnectError(error);
  return kind === "auth" || kind === "tls" || kind === "config";
}

/** A lazily opened, reconnecting amqplib connection. */
export class AmqpConnection {
  readonly #url: string;
  readonly #options: AmqpConnectionOptions;
  #current: Promise<amqp.ChannelModel> | null = null;
  #closed = new AbortController();
  #generation = 0;

  /**
   * Creates the connection (it opens on first use).
   *
   * @param url `amqp://` or `amqps://`.
   * @param options Options.
   */
  constructor(url: string, options: AmqpConnectionOptions = {}) {
    parseAmqpUrl(url);
    this.#url = url;
    this.#options = options;
  }

  /** Aborts once {@linkcode AmqpConnection.close} is called. */
  get closedSignal(): AbortSignal {
    return this.#closed.signal;
  }

  /** Increases each time a new connection is opened. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Returns the open connection, opening (or reopening) it as needed.
   *
   * @param signal Stops retrying.
   * @returns The amqplib connection.
   * @throws {AmqpConnectionError} When it cannot connect within `connectTimeout`.
   */
  connection(signal?: AbortSignal): Promise<amqp.ChannelModel> {
    if (this.#closed.signal.aborted) {
      return Promise.reject(new AmqpConnectionError("The AMQP connection is closed"));
    }
    this.#current ??= this.#open(signal);
    return this.#current;
  }

  /**
   * Makes one connection attempt now, unless a connection is open or opening.
   *
   * @param signal Gives up the attempt (a connection that opens later is closed).
   * @returns When connected.
   * @throws What the attempt failed with (`ECONNREFUSED`, `ACCESS_REFUSED`, a TLS error).
   */
  async connect(signal?: AbortSignal): Promise<void> {
    if (this.#closed.signal.aborted) throw new AmqpConnectionError("The AMQP connection is closed");
    if (this.#current) {
      await this.#current;
      return;
    }
    const attempt = this.#attempt();
    const current = this.#current = attempt;
    attempt.catch(() => {
      if (this.#current === current) this.#current = null;
    });
    if (!signal) {
      await attempt;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        reject(signal.reason);
        if (this.#current === current) this.#current = null;
        attempt.then((model) => model.close().catch(() => {}), () => {});
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      attempt.then(() => resolve(), reject).finally(() =>
        signal.removeEventListener("abort", onAbort)
      );
    });
  }

  // One attempt: opens the connection and installs it.
  async #attempt(): Promise<amqp.ChannelModel> {
    const model = await connectAmqp(
      { ...parseAmqpUrl(this.#url, this.#options.heartbeat ?? 60) },
      {
        ...amqpTlsOptions(this.#url),
        ...this.#options.socketOptions,
        clientProperties: {
          connection_name: this.#options.connectionName ?? `celeriac ${hostname()} ${Deno.pid}`,
          product: "celeriac",
        },
      },
    );
    if (this.#closed.signal.aborted) {
      await model.close().catch(() => {});
      throw new AmqpConnectionError("The AMQP connection is closed");
    }
    this.#generation++;
    coalesceWrites(model);
    // Without an `error` listener an EventEmitter error would be thrown. amqplib emits no
    // `error` for a server close with CONNECTION_FORCED (`rabbitmqctl stop_app`, a node
    // restart), only `close` with it: that is reported too, so an outage is never silent.
    let reported: Error | undefined;
    model.on("error", (e: Error) => {
      reported = e;
      this.#options.onError?.(e);
    });
    model.on("close", (e?: Error) => {
      if (this.#current && this.#model === model) this.#current = null;
      if (e instanceof Error && e !== reported && !this.#closed.signal.aborted) {
        this.#options.onError?.(e);
      }
    });
    this.#model = model;
    return model;
  }

  async #open(signal?: AbortSignal): Promise<amqp.ChannelModel> {
    const deadline = Date.now() + (this.#options.connectTimeout ?? 30_000);
    const stop = AbortSignal.any([this.#closed.signal, ...(signal ? [signal] : [])]);
    let wait = 100;
    let lastError: unknown;
    while (!stop.aborted && Date.now() < deadline) {
      try {
        return await this.#attempt();
      } catch (error) {
        lastError = error;
        // A refused login or a TLS mismatch does not heal by retrying for 30 s.
        if (isFatal(error) || this.#closed.signal.aborted) break;
        // Each failed reconnect is reported (the App's logger folds repeats).
        if (this.#generation > 0) this.#options.onError?.(error as Error);
        try {
          await delay(Math.min(wait, Math.max(0, deadline - Date.now())), stop);
        } catch {
          break;
        }
        wait = Math.min(wait * 2, 2_000);
      }
    }
    this.#current = null;
    throw new AmqpConnectionError(
      `Cannot connect to the AMQP broker: ${(lastError as Error)?.message ?? "closed"}`,
      { cause: lastError },
    );
  }

  #model: amqp.ChannelModel | null = null;

  /**
   * Forces the current socket closed, as a network failure would (tests use it).
   *
   * @returns Nothing.
   */
  destroySocket(): void {
    const stream = (this.#model as unknown as {
      connection?: { stream?: { destroy(error?: Error): void } };
    })?.connection?.stream;
    // amqplib listens for `error`/`end` on the socket, not `close`: pass an error.
    stream?.destroy(new Error("socket destroyed (simulated network failure)"));
  }

  /**
   * Closes the connection; idempotent.
   *
   * @returns Nothing.
   */
  async close(): Promise<void> {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    const current = this.#current;
    this.#current = null;
    const model = await current?.catch(() => null);
    if (model) await model.close().catch(() => {});
  }
}
