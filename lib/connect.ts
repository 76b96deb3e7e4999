/**
 * Picks a broker or result backend implementation from a URL scheme. Implementations are
 * imported on first use, so an app that only uses Redis never loads the AMQP client.
 *
 * @module
 */

import type { Backend, BackendOptions } from "./backends/backend.ts";
import type { Broker } from "./brokers/broker.ts";

/** Options passed to every broker made from a URL. */
export interface BrokerConnectOptions {
  /**
   * Deliveries after which a message goes to the dead-letter queue instead of back to its
   * queue.
   * @default {10}
   */
  maxDeliveries?: number;
  /** Transport-specific options, by name. */
  transportOptions?: Record<string, unknown>;
}

/** Options passed to every backend made from a URL. */
export interface BackendConnectOptions extends BackendOptions {
  /** The broker, for backends that reply through it (`rpc://`). */
  broker?: Broker;
  /** Transport-specific options, by name. */
  transportOptions?: Record<string, unknown>;
}

type BrokerFactory = (url: string, options: BrokerConnectOptions) => Broker;
type BackendFactory = (url: string, options: BackendConnectOptions) => Backend;

async function loadAmqpBroker(): Promise<BrokerFactory> {
  const { AmqpBroker } = await import("./brokers/amqp.ts");
  return (url, { maxDeliveries, transportOptions }) =>
    new AmqpBroker(url, {
      ...transportOptions,
      ...(maxDeliveries === undefined ? {} : { maxDeliveries }),
    });
}

// One entry per URL scheme; each transport issue adds its line here.
const BROKERS: Record<string, () => Promise<BrokerFactory>> = {
  "amqp:": loadAmqpBroker,
  "amqps:": loadAmqpBroker,
  "memory:": async () => {
    const { MemoryBroker } = await import("./brokers/memory.ts");
    return (url, options) => new MemoryBroker(url, options);
  },
  "kv:": async () => {
    const { KvBroker } = await import("./brokers/kv.ts");
    return (url, options) =>
      new KvBroker(url, { ...options.transportOptions, ...definedOf(options) });
  },
  "kv+https:": async () => (await BROKERS["kv:"]!()),
  "kv+http:": async () => (await BROKERS["kv:"]!()),
  "redis:": loadRedisBroker,
  "rediss:": loadRedisBroker,
  "sqs:": async () => {
    const { sqsBrokerFromUrl } = await import("./brokers/sqs.ts");
    return sqsBrokerFromUrl;
  },
};

const BACKENDS: Record<string, () => Promise<BackendFactory>> = {
  "rpc:": async () => {
    const { RpcBackend } = await import("./backends/rpc.ts");
    return (url, options) => new RpcBackend(url, options);
  },
  "memory:": async () => {
    const { MemoryBackend } = await import("./backends/memory.ts");
    return (url, options) => new MemoryBackend(url, options);
  },
  "kv:": async () => {
    const { KvBackend } = await import("./backends/kv.ts");
    return (url, options) =>
      new KvBackend(url, {
        ...options.transportOptions,
        ...(options.resultExpires === undefined ? {} : { resultExpires: options.resultExpires }),
      });
  },
  "kv+https:": async () => (await BACKENDS["kv:"]!()),
  "kv+http:": async () => (await BACKENDS["kv:"]!()),
  "redis:": loadRedisBackend,
  "rediss:": loadRedisBackend,
};

// The broker options that are set, so they do not hide transport options with `undefined`.
function definedOf(options: BrokerConnectOptions): { maxDeliveries?: number } {
  return options.maxDeliveries === undefined ? {} : { maxDeliveries: options.maxDeliveries };
}

async function loadRedisBroker(): Promise<BrokerFactory> {
  const { redisBrokerFromUrl } = await import("./brokers/redis.ts");
  return redisBrokerFromUrl;
}

async function loadRedisBackend(): Promise<BackendFactory> {
  const { redisBackendFromUrl } = await import("./backends/redis.ts");
  return redisBackendFromUrl;
}

function schemeOf(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*:)/i.exec(url);
  if (!match) throw new TypeError(`Cannot use URL "${url}": it has no scheme (e.g. memory://)`);
  return match[1]!.toLowerCase();
}

/**
 * Makes a broker from its URL.
 *
 * @param url `memory://`, `kv://`, `redis://`, `amqp://` ...
 * @param options Options.
 * @returns The broker; it connects on first use.
 * @throws {TypeError} For an unknown scheme.
 * @example
 * ```ts
 * import { createBroker } from "./connect.ts";
 * await using broker = await createBroker("memory://");
 * ```
 */
export async function createBroker(
  url: string,
  options: BrokerConnectOptions = {},
): Promise<Broker> {
  const load = BROKERS[schemeOf(url)];
  if (!load) {
    throw new TypeError(
      `Cannot use broker URL "${redact(url)}": supported schemes are ${
        Object.keys(BROKERS).join(", ")
      }`,
    );
  }
  return (await load())(url, options);
}

/**
 * Makes a result backend from its URL.
 *
 * @param url `memory://`, `kv://`, `redis://`, `rpc://` ...
 * @param options Options.
 * @returns The backend; it connects on first use.
 * @throws {TypeError} For an unknown scheme.
 * @example
 * ```ts
 * import { createBackend } from "./connect.ts";
 * await using backend = await createBackend("memory://");
 * ```
 */
export async function createBackend(
  url: string,
  options: BackendConnectOptions = {},
): Promise<Backend> {
  const load = BACKENDS[schemeOf(url)];
  if (!load) {
    throw new TypeError(
      `Cannot use result backend URL "${redact(url)}": supported schemes are ${
        Object.keys(BACKENDS).join(", ")
      }`,
    );
  }
  return (await load())(url, options);
}

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
