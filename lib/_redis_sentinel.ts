/**
 * Redis Sentinel, as kombu's `sentinel://` transport and Celery's Sentinel result backend:
 * the master of a monitored group is asked of the sentinels (`SENTINEL
 * get-master-addr-by-name`), and asked again whenever a connection to it is lost or finds a
 * replica where the master was (after a failover); while clients are open, one subscriber
 * follows the sentinels' `+switch-master`. node-redis 4 has no Sentinel client, so the clients
 * of `lib/_redis.ts` are ordinary clients whose address is kept up to date here.
 *
 * URL: `sentinel://[[user]:password@]h1:26379[/db];sentinel://h2:26379;...`. The credentials
 * and database of the first URL are the master's (as kombu); the master's name comes from the
 * `master_name` transport option, the `?master_name=` query of the first URL, or, when neither
 * is given, the one master the sentinels monitor.
 *
 * @module
 */

import { createClient } from "redis";

/** One sentinel's address. */
export interface SentinelAddress {
  /** Host name. */
  host: string;
  /** Port. */
  port: number;
}

/** Where a sentinel-managed master is found. */
export interface SentinelConfig {
  /** The sentinels, tried in order (the one that answered last goes first). */
  sentinels: SentinelAddress[];
  /** The monitored group's name (kombu's `master_name`); unset: the only one monitored. */
  masterName?: string;
  /** Password of the sentinels themselves (kombu's `sentinel_kwargs.password`). */
  sentinelPassword?: string;
}

/** No sentinel could say where the master is. */
export class RedisSentinelError extends Error {
  /** As a refused connection, so that connect retries treat it as transient. */
  readonly code = "ECONNREFUSED";

  /**
   * Creates the error.
   *
   * @param message What went wrong.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RedisSentinelError";
  }
}

// Longest one sentinel may take to answer (ms).
const SENTINEL_TIMEOUT = 1_500;
// A fresh answer is reused for this long, so that a burst of reconnects asks once (ms).
const REUSE = 250;

async function ask(
  sentinel: SentinelAddress,
  password: string | undefined,
  command: string[],
): Promise<unknown> {
  const client = createClient({
    socket: {
      host: sentinel.host,
      port: sentinel.port,
      connectTimeout: SENTINEL_TIMEOUT,
      reconnectStrategy: false,
    },
    ...(password !== undefined ? { password } : {}),
  });
  client.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      (async () => {
        await client.connect();
        return await client.sendCommand(command);
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no reply in ${SENTINEL_TIMEOUT} ms`)),
          SENTINEL_TIMEOUT,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await client.disconnect().catch(() => {});
  }
}

/**
 * Asks the sentinels where the master is, one after another, until one knows.
 *
 * @param config The sentinels and the master's name.
 * @returns The master's address, and its name.
 * @throws {RedisSentinelError} When none answered with an address.
 * @example
 * ```ts ignore
 * import { discoverMaster } from "./_redis_sentinel.ts";
 * const { host, port } = await discoverMaster({
 *   sentinels: [{ host: "127.0.0.1", port: 26379 }],
 *   masterName: "mymaster",
 * });
 * ```
 */
export async function discoverMaster(
  config: SentinelConfig,
): Promise<SentinelAddress & { name: string }> {
  const reasons: string[] = [];
  for (const [i, sentinel] of config.sentinels.entries()) {
    try {
      let name = config.masterName;
      if (name === undefined) {
        const masters = await ask(sentinel, config.sentinelPassword, ["SENTINEL", "MASTERS"]);
        const names = (masters as string[][]).map((m) => m[m.indexOf("name") + 1]);
        if (names.length !== 1 || !names[0]) {
          throw new TypeError(
            `Cannot pick a Redis master: the sentinels monitor ${names.length} masters ` +
              `(${names.join(", ")}); set the master_name transport option`,
          );
        }
        name = names[0];
      }
      const reply = await ask(sentinel, config.sentinelPassword, [
        "SENTINEL",
        "GET-MASTER-ADDR-BY-NAME",
        name,
      ]) as [string, string] | null;
      if (!reply) {
        reasons.push(`${sentinel.host}:${sentinel.port} does not know "${name}"`);
        continue;
      }
      // The sentinel that answered is asked first next time (as redis-py does).
      if (i > 0) config.sentinels.unshift(...config.sentinels.splice(i, 1));
      return { host: reply[0], port: Number(reply[1]), name };
    } catch (error) {
      if (error instanceof TypeError) throw error;
      reasons.push(`${sentinel.host}:${sentinel.port}: ${(error as Error).message}`);
    }
  }
  throw new RedisSentinelError(
    `No sentinel knows the Redis master${config.masterName ? ` "${config.masterName}"` : ""}: ${
      reasons.join("; ")
    }`,
  );
}

/**
 * The last known master of one sentinel config, shared by the clients made from it: asks the
 * sentinels at most once at a time, and reuses an answer for a moment. While clients watch it,
 * one connection to a sentinel follows `+switch-master` and tells them at once.
 */
export class SentinelMaster {
  readonly #config: SentinelConfig;
  #address: SentinelAddress | undefined;
  #asking: Promise<SentinelAddress> | undefined;
  #askedAt = 0;
  #name: string | undefined;
  #watchers = new Set<(address: SentinelAddress) => void>();
  #subscriber: ReturnType<typeof createClient> | undefined;
  #resubscribe: ReturnType<typeof setTimeout> | undefined;

  /**
   * Creates the tracker; nothing is asked yet.
   *
   * @param config The sentinels and the master's name.
   */
  constructor(config: SentinelConfig) {
    this.#config = config;
  }

  /** The last answer, if any. */
  get address(): SentinelAddress | undefined {
    return this.#address;
  }

  /**
   * Asks the sentinels again (or joins the question in flight, or reuses a fresh answer).
   *
   * @returns The master's address.
   * @throws {RedisSentinelError} When no sentinel knows.
   */
  refresh(): Promise<SentinelAddress> {
    if (this.#asking) return this.#asking;
    if (this.#address && Date.now() - this.#askedAt < REUSE) {
      return Promise.resolve(this.#address);
    }
    const asking = this.#asking = discoverMaster(this.#config).then((address) => {
      this.#name ??= address.name;
      this.#address = { host: address.host, port: address.port };
      this.#askedAt = Date.now();
      return this.#address;
    }).finally(() => this.#asking = undefined);
    return asking;
  }

  /**
   * Calls `onSwitch` with the new master whenever a sentinel announces a failover
   * (`+switch-master`), until the returned function is called.
   *
   * @param onSwitch Receives the new master's address.
   * @returns Stops watching (the sentinel connection closes with the last watcher).
   */
  watch(onSwitch: (address: SentinelAddress) => void): () => Promise<void> {
    this.#watchers.add(onSwitch);
    if (this.#watchers.size === 1) this.#subscribe(0);
    return async () => {
      if (!this.#watchers.delete(onSwitch) || this.#watchers.size > 0) return;
      clearTimeout(this.#resubscribe);
      const subscriber = this.#subscriber;
      this.#subscriber = undefined;
      if (subscriber?.isOpen) await subscriber.disconnect().catch(() => {});
    };
  }

  // Subscribes on one sentinel; when that connection ends while clients still watch, the next
  // sentinel is tried after a pause.
  #subscribe(index: number): void {
    const sentinel = this.#config.sentinels[index % this.#config.sentinels.length]!;
    const subscriber = createClient({
      socket: {
        host: sentinel.host,
        port: sentinel.port,
        connectTimeout: SENTINEL_TIMEOUT,
        reconnectStrategy: (retries: number) => retries < 2 ? 200 : false,
      },
      ...(this.#config.sentinelPassword !== undefined
        ? { password: this.#config.sentinelPassword }
        : {}),
    });
    this.#subscriber = subscriber;
    subscriber.on("error", () => {});
    const retry = () => {
      if (this.#subscriber !== subscriber || this.#watchers.size === 0) return;
      this.#subscriber = undefined;
      this.#resubscribe = setTimeout(() => {
        if (this.#watchers.size > 0 && !this.#subscriber) this.#subscribe(index + 1);
      }, 1_000);
    };
    subscriber.on("end", retry);
    subscriber.connect()
      .then(() =>
        subscriber.subscribe("+switch-master", (message) => {
          // `<name> <old ip> <old port> <new ip> <new port>`
          const [name, , , host, port] = message.split(" ");
          if (!host || !port || (this.#name !== undefined && name !== this.#name)) return;
          this.#address = { host, port: Number(port) };
          this.#askedAt = Date.now();
          for (const watcher of this.#watchers) watcher(this.#address);
        })
      )
      .catch(() => {
        if (subscriber.isOpen) void subscriber.disconnect().catch(() => {});
        else retry();
      });
  }
}
