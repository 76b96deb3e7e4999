/**
 * A {@linkcode BeatStore} on Redis: `SET NX PX` for the lease, Lua scripts for the owner
 * checks and the per-entry compare-and-set.
 *
 * @module
 */

import { createClient } from "redis";
import {
  closeRedisClient,
  connectRedisClient,
  createRedisClient,
  isClusterClient,
  parseRedisUrl,
  RedisScript,
} from "../_redis.ts";
import { LEASE_RELEASE_LUA } from "./_lua_lease_release.ts";
import { LEASE_RENEW_LUA } from "./_lua_lease_renew.ts";
import { STATE_CAS_LUA } from "./_lua_state_cas.ts";
import { type BeatStore, decodeState, encodeState, type EntryState } from "./store.ts";

type RedisClient = ReturnType<typeof createClient>;

/** Options of {@linkcode RedisBeatStore}. */
export interface RedisBeatStoreOptions {
  /**
   * Prefix of every key: `<prefix>lease` and `<prefix>entry:<name>`.
   * @default {"celeriac:beat:"}
   */
  prefix?: string;
}

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A {@linkcode BeatStore} on Redis, shared by every beat replica that uses the same prefix.
 *
 * @example
 * ```ts ignore
 * import { RedisBeatStore } from "./store_redis.ts";
 * await using store = new RedisBeatStore("redis://127.0.0.1:6379/0", { prefix: "app:beat:" });
 * await store.acquireLease("me", 30_000);
 * ```
 */
export class RedisBeatStore implements BeatStore {
  /** The prefix of every key. */
  readonly prefix: string;
  #client: RedisClient;
  #owned: boolean;
  #connecting: Promise<RedisClient> | null = null;
  #closing: Promise<void> | null = null;
  #shas = new Map<string, Promise<string>>();
  #clusterScripts = new Map<string, RedisScript>();

  /**
   * Creates the store. Connects on first use.
   *
   * @param url A `redis://` or `rediss://` URL, or a client you own (not closed by `close()`).
   * @param options Options.
   */
  constructor(
    url: string | RedisClient = "redis://127.0.0.1:6379/0",
    options: RedisBeatStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? "celeriac:beat:";
    this.#owned = typeof url === "string";
    // Behind Sentinel (`sentinel://`) the shared client code follows the master; on a
    // cluster (`redis+cluster://`) it routes each single-key script to its node.
    this.#client = typeof url !== "string"
      ? url
      : /^(sentinel|rediss?\+cluster):/i.test(url)
      ? createRedisClient(parseRedisUrl(url), undefined, "celeriac-beat")
      : createClient({ url });
  }

  #connect(): Promise<RedisClient> {
    if (this.#closing) return Promise.reject(new Error("Cannot use a closed RedisBeatStore"));
    this.#connecting ??= (async () => {
      if (!this.#client.isOpen) {
        // Errors surface through commands; without a listener node's EventEmitter throws.
        this.#client.on("error", () => {});
        await connectRedisClient(this.#client);
      }
      return this.#client;
    })();
    // A failed first connect is not remembered: the next call tries again.
    const connecting = this.#connecting;
    connecting.catch(() => {
      if (this.#connecting === connecting) this.#connecting = null;
    });
    return this.#connecting;
  }

  async #script(source: string, keys: string[], args: string[]): Promise<number> {
    const client = await this.#connect();
    if (isClusterClient(client)) {
      // On a cluster the script must go to its key's node (RedisScript routes it).
      let script = this.#clusterScripts.get(source);
      if (!script) this.#clusterScripts.set(source, script = new RedisScript("beat", source));
      return Number(await script.run(client, keys, args));
    }
    let sha = this.#shas.get(source);
    if (!sha) this.#shas.set(source, sha = sha1(source));
    try {
      return Number(await client.evalSha(await sha, { keys, arguments: args }));
    } catch (error) {
      if (!String((error as Error)?.message).includes("NOSCRIPT")) throw error;
      return Number(await client.eval(source, { keys, arguments: args }));
    }
  }

  async acquireLease(owner: string, ttl: number): Promise<boolean> {
    const client = await this.#connect();
    const key = this.prefix + "lease";
    const set = await client.set(key, owner, { NX: true, PX: Math.ceil(ttl) });
    if (set === "OK") return true;
    return await this.#script(LEASE_RENEW_LUA, [key], [owner, String(Math.ceil(ttl))]) === 1;
  }

  async renewLease(owner: string, ttl: number): Promise<boolean> {
    const key = this.prefix + "lease";
    return await this.#script(LEASE_RENEW_LUA, [key], [owner, String(Math.ceil(ttl))]) === 1;
  }

  async releaseLease(owner: string): Promise<void> {
    await this.#script(LEASE_RELEASE_LUA, [this.prefix + "lease"], [owner]);
  }

  async getState(name: string): Promise<EntryState | null> {
    const client = await this.#connect();
    const text = await client.get(this.prefix + "entry:" + name);
    return text === null ? null : decodeState(text);
  }

  async compareAndSet(
    name: string,
    expected: EntryState | null,
    next: EntryState,
  ): Promise<boolean> {
    const key = this.prefix + "entry:" + name;
    const before = expected === null ? "" : encodeState(expected);
    return await this.#script(STATE_CAS_LUA, [key], [before, encodeState(next)]) === 1;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (!this.#owned) return;
      if (this.#connecting) await this.#connecting.catch(() => {});
      await closeRedisClient(this.#client);
    })();
    return this.#closing;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
