/**
 * The one scheme registry: a URL's scheme picks the broker, result backend, beat store and
 * global rate limiter that go with it. App, beat, the worker's rate limits and remote control
 * all ask here, so they cannot disagree about a scheme. Implementations are imported on first
 * use, so an app that only uses Redis never loads the AMQP client.
 *
 * This module is a leaf: it imports implementations only lazily and types only from the seams,
 * so no implementation ever imports it back (no import cycle).
 *
 * | Scheme | Broker | Backend | Beat store | Rate limiter |
 * | --- | --- | --- | --- | --- |
 * | `memory:` | memory | memory | memory (this process) | memory (this process) |
 * | `kv:`, `kv+https:`, `kv+http:` | Deno KV | Deno KV | Deno KV | Deno KV |
 * | `redis:`, `rediss:`, `sentinel:`, `redis+cluster:` | Redis | Redis | Redis | Redis |
 * | `amqp:`, `amqps:` | RabbitMQ | — | — | — |
 * | `sqs:` | Amazon SQS | — | — | — |
 * | `rpc:` | — | rpc (replies through the broker) | — | — |
 *
 * @module
 */

import type { Backend, BackendConnectOptions } from "../backends/backend.ts";
import type { BeatStore } from "../beat/store.ts";
import type { Broker, BrokerConnectOptions } from "../brokers/broker.ts";
import type { RateLimiter } from "../worker/_rate_limiter.ts";
import { redact } from "../connect.ts";

export type { BackendConnectOptions } from "../backends/backend.ts";
export type { BrokerConnectOptions } from "../brokers/broker.ts";

/** Options of {@linkcode createRateLimiter}. */
export interface RateLimiterConnectOptions {
  /** The broker's key prefix (kombu `global_keyprefix`), put before the limiter's keys. */
  prefix?: string;
}

/** What the registry knows about a scheme. */
export interface SchemeInfo {
  /** The scheme with its colon, lower case: `redis:`. */
  scheme: string;
  /** The transport's name as Celery reports it (`inspect stats`): `redis`, `amqp`, `kv` ... */
  transport: string;
  /** Whether the connection is encrypted (TLS). */
  secure: boolean;
  /** The kinds of implementation this scheme offers. */
  kinds: readonly SchemeKind[];
}

/** A kind of implementation a scheme may offer. */
export type SchemeKind = "broker" | "backend" | "beat store" | "rate limiter";

type BrokerFactory = (url: string, options: BrokerConnectOptions) => Broker;
type BackendFactory = (url: string, options: BackendConnectOptions) => Backend;
type BeatStoreFactory = (url: string) => Promise<BeatStore>;
type RateLimiterFactory = (url: string, options: RateLimiterConnectOptions) => RateLimiter;

interface Entry {
  transport: string;
  secure: boolean;
  broker?: () => Promise<BrokerFactory>;
  backend?: () => Promise<BackendFactory>;
  beatStore?: () => Promise<BeatStoreFactory>;
  rateLimiter?: () => Promise<RateLimiterFactory>;
}

// The broker options that are set, so they do not hide transport options with `undefined`.
function definedOf(options: BrokerConnectOptions): { maxDeliveries?: number } {
  return options.maxDeliveries === undefined ? {} : { maxDeliveries: options.maxDeliveries };
}

const memory: Entry = {
  transport: "memory",
  secure: false,
  broker: async () => {
    const { MemoryBroker } = await import("../brokers/memory.ts");
    return (url, options) => new MemoryBroker(url, definedOf(options));
  },
  backend: async () => {
    const { MemoryBackend } = await import("../backends/memory.ts");
    return (url, options) => new MemoryBackend(url, options);
  },
  beatStore: async () => {
    const { MemoryBeatStore } = await import("../beat/store_memory.ts");
    return () => Promise.resolve(new MemoryBeatStore());
  },
  rateLimiter: async () => {
    const { MemoryRateLimiter } = await import("../worker/_rate_limiter.ts");
    return (url) => {
      let limiter = memoryLimiters.get(url);
      if (!limiter) memoryLimiters.set(url, limiter = new MemoryRateLimiter());
      return limiter;
    };
  },
};

// One in-process limiter per `memory://` URL, shared by every worker of the process.
const memoryLimiters = new Map<string, RateLimiter>();

const kv = (secure: boolean): Entry => ({
  transport: "kv",
  secure,
  broker: async () => {
    const { KvBroker } = await import("../brokers/kv.ts");
    return (url, options) =>
      new KvBroker(url, { ...options.transportOptions, ...definedOf(options) });
  },
  backend: async () => {
    const { KvBackend } = await import("../backends/kv.ts");
    return (url, options) =>
      new KvBackend(url, {
        ...options.transportOptions,
        ...(options.resultExpires === undefined ? {} : { resultExpires: options.resultExpires }),
      });
  },
  beatStore: async () => {
    const { KvBeatStore } = await import("../beat/store_kv.ts");
    const { kvTarget } = await import("../_kv.ts");
    return async (url) => {
      const { target, local } = kvTarget(url);
      if (local) {
        await Deno.mkdir(target.replace(/\/[^/]*$/, ""), { recursive: true }).catch(() => {});
      }
      return new KvBeatStore(target);
    };
  },
  rateLimiter: async () => {
    const { KvRateLimiter } = await import("../worker/rate_limit_kv.ts");
    return (url, { prefix }) =>
      new KvRateLimiter(
        url,
        prefix === undefined ? {} : { prefix: [prefix, "celeriac", "ratelimit"] },
      );
  },
});

const redis = (secure: boolean): Entry => ({
  transport: "redis",
  secure,
  broker: async () => (await import("../brokers/redis.ts")).redisBrokerFromUrl,
  backend: async () => (await import("../backends/redis.ts")).redisBackendFromUrl,
  beatStore: async () => {
    const { RedisBeatStore } = await import("../beat/store_redis.ts");
    return (url) => Promise.resolve(new RedisBeatStore(url));
  },
  rateLimiter: async () => {
    const { RedisRateLimiter } = await import("../worker/rate_limit_redis.ts");
    return (url, { prefix }) =>
      new RedisRateLimiter(
        url,
        prefix === undefined ? {} : { prefix: `${prefix}celeriac:ratelimit:` },
      );
  },
});

const amqp = (secure: boolean): Entry => ({
  transport: "amqp",
  secure,
  broker: async () => {
    const { AmqpBroker } = await import("../brokers/amqp.ts");
    return (url, options) =>
      new AmqpBroker(url, {
        ...options.transportOptions,
        ...definedOf(options),
        ...(options.onError === undefined ? {} : { onError: options.onError }),
      });
  },
});

const sqs: Entry = {
  transport: "sqs",
  secure: true,
  broker: async () => (await import("../brokers/sqs.ts")).sqsBrokerFromUrl,
};

const SCHEMES: Record<string, Entry> = {
  "memory:": memory,
  "kv:": kv(false),
  "kv+http:": kv(false),
  "kv+https:": kv(true),
  "redis:": redis(false),
  "rediss:": redis(true),
  // kombu's Sentinel transport: `sentinel://h1:26379;sentinel://h2:26379`, `master_name`.
  "sentinel:": { ...redis(false), transport: "sentinel" },
  // Redis Cluster: `redis+cluster://h1:p1,h2:p2`, queue keys hash-tagged `{queue}`.
  "redis+cluster:": redis(false),
  "rediss+cluster:": redis(true),
  "amqp:": amqp(false),
  "amqps:": amqp(true),
  "sqs:": sqs,
  "rpc:": {
    transport: "rpc",
    secure: false,
    backend: async () => {
      const { RpcBackend } = await import("../backends/rpc.ts");
      return (url, options) => new RpcBackend(url, options);
    },
  },
};

const KIND_KEY = {
  "broker": "broker",
  "backend": "backend",
  "beat store": "beatStore",
  "rate limiter": "rateLimiter",
} as const satisfies Record<SchemeKind, keyof Entry>;

const KIND_LABEL: Record<SchemeKind, string> = {
  "broker": "broker",
  "backend": "result backend",
  "beat store": "beat store",
  "rate limiter": "global rate limit",
};

/**
 * The scheme of a URL, with its colon, lower case.
 *
 * @param url A URL.
 * @returns `"redis:"`, `"kv+https:"` ...
 * @throws {TypeError} When the URL has no scheme.
 * @example
 * ```ts
 * import { schemeOf } from "./registry.ts";
 * console.assert(schemeOf("Redis://localhost") === "redis:");
 * ```
 */
export function schemeOf(url: string): string {
  const match = typeof url === "string" ? /^([a-z][a-z0-9+.-]*:)/i.exec(url) : null;
  if (!match) {
    throw new TypeError(
      `Cannot use URL "${redact(String(url))}": it has no scheme (e.g. memory://, redis://)`,
    );
  }
  return match[1]!.toLowerCase();
}

/**
 * The schemes that offer an implementation of a kind.
 *
 * @param kind `broker`, `backend`, `beat store` or `rate limiter`.
 * @returns The schemes with their colon, e.g. `["memory:", "kv:", ...]`.
 * @example
 * ```ts
 * import { knownSchemes } from "./registry.ts";
 * console.assert(knownSchemes("backend").includes("rpc:"));
 * console.assert(!knownSchemes("broker").includes("rpc:"));
 * ```
 */
export function knownSchemes(kind: SchemeKind): string[] {
  return Object.entries(SCHEMES).filter(([, e]) => e[KIND_KEY[kind]]).map(([s]) => s);
}

/**
 * What the registry knows about a URL's scheme, or `null` when it does not know it.
 *
 * @param url A URL.
 * @returns The scheme's transport name, whether it is encrypted, and what it offers.
 * @example
 * ```ts
 * import { schemeInfo } from "./registry.ts";
 * console.assert(schemeInfo("amqps://host")?.transport === "amqp");
 * console.assert(schemeInfo("amqps://host")?.secure === true);
 * console.assert(schemeInfo("reddis://host") === null);
 * ```
 */
export function schemeInfo(url: string): SchemeInfo | null {
  let scheme: string;
  try {
    scheme = schemeOf(url);
  } catch {
    return null;
  }
  const entry = SCHEMES[scheme];
  if (!entry) return null;
  const kinds = (Object.keys(KIND_KEY) as SchemeKind[]).filter((k) => entry[KIND_KEY[k]]);
  return { scheme, transport: entry.transport, secure: entry.secure, kinds };
}

/**
 * Whether a URL's scheme offers an implementation of a kind.
 *
 * @param url A URL.
 * @param kind The kind.
 * @returns `true` when `create...` of that kind accepts the URL.
 * @example
 * ```ts
 * import { supports } from "./registry.ts";
 * console.assert(supports("redis://h", "beat store"));
 * console.assert(!supports("rpc://", "beat store"));
 * ```
 */
export function supports(url: string, kind: SchemeKind): boolean {
  return schemeInfo(url)?.kinds.includes(kind) ?? false;
}

function lookup<K extends keyof typeof KIND_KEY>(
  url: string,
  kind: K,
): NonNullable<Entry[(typeof KIND_KEY)[K]]> {
  const scheme = schemeOf(url);
  const entry = SCHEMES[scheme];
  const load = entry?.[KIND_KEY[kind]];
  const label = KIND_LABEL[kind];
  const known = knownSchemes(kind).map((s) => `${s}//`).join(", ");
  if (!entry) {
    throw new TypeError(
      `Cannot use ${label} URL "${
        redact(url)
      }": unknown scheme "${scheme}" (supported schemes: ${known})`,
    );
  }
  if (!load) {
    throw new TypeError(
      `Cannot use ${label} URL "${
        redact(url)
      }": ${scheme}// offers no ${label} (supported schemes: ${known})`,
    );
  }
  return load as NonNullable<Entry[(typeof KIND_KEY)[K]]>;
}

/**
 * Makes a broker from its URL.
 *
 * @param url `memory://`, `kv://`, `redis://`, `amqp://` ...
 * @param options Options.
 * @returns The broker; it connects on first use.
 * @throws {TypeError} For an unknown scheme (the message lists the known ones) or one that
 * has no broker.
 * @example
 * ```ts
 * import { createBroker } from "./registry.ts";
 * await using broker = await createBroker("memory://");
 * ```
 */
export async function createBroker(
  url: string,
  options: BrokerConnectOptions = {},
): Promise<Broker> {
  const load = lookup(url, "broker");
  return (await load())(url, options);
}

/**
 * Makes a result backend from its URL.
 *
 * @param url `memory://`, `kv://`, `redis://`, `rpc://` ...
 * @param options Options.
 * @returns The backend; it connects on first use.
 * @throws {TypeError} For an unknown scheme (the message lists the known ones) or one that
 * has no result backend.
 * @example
 * ```ts
 * import { createBackend } from "./registry.ts";
 * await using backend = await createBackend("memory://");
 * ```
 */
export async function createBackend(
  url: string,
  options: BackendConnectOptions = {},
): Promise<Backend> {
  const load = lookup(url, "backend");
  return (await load())(url, options);
}

/**
 * Makes the beat store that keeps its state where a URL points: Redis for `redis://`, Deno KV
 * for `kv://` and `kv+https://`, this process's memory for `memory://`.
 *
 * @param url A result backend or broker URL.
 * @returns The store; closing it is the caller's job.
 * @throws {TypeError} For an unknown scheme, or one that cannot keep beat's state
 * (`rpc://`, `amqp://`): never silently an in-memory store that replicas would not share.
 * @example
 * ```ts
 * import { createBeatStore } from "./registry.ts";
 * await using store = await createBeatStore("memory://");
 * ```
 */
export async function createBeatStore(url: string): Promise<BeatStore> {
  const load = lookup(url, "beat store");
  return await (await load())(url);
}

/**
 * Makes the limiter for `globalRateLimit` on a broker URL: Redis (a Lua GCRA script), Deno KV
 * (an atomic check-and-set), or one limiter per `memory://` URL shared in the process.
 *
 * @param url The broker URL.
 * @param options The broker's key prefix.
 * @returns The limiter; close it when done.
 * @throws {TypeError} For a broker whose store cannot share a limit (e.g. AMQP), or an
 * unknown scheme.
 * @example
 * ```ts
 * import { createRateLimiter } from "./registry.ts";
 * await using limiter = await createRateLimiter("memory://doc-registry");
 * await limiter.acquire("tasks.x", "10/s");
 * ```
 */
export async function createRateLimiter(
  url: string,
  options: RateLimiterConnectOptions = {},
): Promise<RateLimiter> {
  const load = lookup(url, "rate limiter");
  return (await load())(url, options);
}
