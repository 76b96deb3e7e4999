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
import { delay } from "../_signal.ts";
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
  let parsed: URL;
  try {
    parsed = new URL(
      url.replace(/^amqps?:/i, (s) => s.toLowerCase() === "amqps:" ? "https:" : "http:"),
    );
  } catch (cause) {
    throw new TypeError(`Cannot use AMQP URL: it is not a valid URL`, { cause });
  }
  const tls = /^amqps:/i.test(url);
  if (!/^amqps?:\/\//i.test(url)) {
    throw new TypeError(`Cannot use AMQP URL: the scheme must be amqp:// or amqps://`);
  }
  const path = parsed.pathname.slice(1);
  return {
    protocol: tls ? "amqps" : "amqp",
    hostname: parsed.hostname || "localhost",
    port: parsed.port ? Number(parsed.port) : tls ? 5671 : 5672,
    username: parsed.username ? decodeURIComponent(parsed.username) : "guest",
    password: parsed.password ? decodeURIComponent(parsed.password) : "guest",
    vhost: path === "" ? "/" : decodeURIComponent(path),
    heartbeat,
  };
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

  async #open(signal?: AbortSignal): Promise<amqp.ChannelModel> {
    const deadline = Date.now() + (this.#options.connectTimeout ?? 30_000);
    const stop = AbortSignal.any([this.#closed.signal, ...(signal ? [signal] : [])]);
    let wait = 100;
    let lastError: unknown;
    while (!stop.aborted && Date.now() < deadline) {
      try {
        const model = await amqp.connect(
          { ...parseAmqpUrl(this.#url, this.#options.heartbeat ?? 60) },
          {
            ...this.#options.socketOptions,
            clientProperties: {
              connection_name: this.#options.connectionName ??
                `celeriac ${hostname()} ${Deno.pid}`,
              product: "celeriac",
            },
          },
        );
        if (this.#closed.signal.aborted) {
          await model.close().catch(() => {});
          break;
        }
        this.#generation++;
        // Without an `error` listener an EventEmitter error would be thrown.
        model.on("error", () => {});
        model.on("close", () => {
          if (this.#current && this.#model === model) this.#current = null;
        });
        this.#model = model;
        return model;
      } catch (error) {
        lastError = error;
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
