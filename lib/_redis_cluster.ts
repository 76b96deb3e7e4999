/**
 * Redis Cluster support shared by the Redis broker, result backend, beat store and rate
 * limiter: the `redis+cluster://` URL, hash slots (to group keys per node), and the hash-tag
 * layout of one queue's keys.
 *
 * In cluster mode every multi-key script and `MULTI` touches keys of one slot: a queue's keys
 * all carry the hash tag `{queue}` (as BullMQ's `{queue}` prefixes), and result keys, which are
 * spread over the slots, are written and read in per-slot batches.
 *
 * @module
 */

import { parseUrl } from "./_url.ts";

/** One node of a cluster URL. */
export interface ClusterNode {
  /** Host name. */
  host: string;
  /** Port. */
  port: number;
}

// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
const CRC_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[i] = crc & 0xffff;
  }
  return table;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

const encoder = new TextEncoder();

/**
 * The hash slot of a key, as Redis Cluster computes it: CRC16 of the key, or of its hash tag
 * (the text between the first `{` and the next `}`, when not empty), modulo 16384.
 *
 * @param key A key.
 * @returns 0–16383.
 * @example
 * ```ts
 * import { keySlot } from "./_redis_cluster.ts";
 * console.assert(keySlot("foo") === 12182);
 * console.assert(keySlot("{user1000}.following") === keySlot("{user1000}.followers"));
 * ```
 */
export function keySlot(key: string): number {
  let bytes = encoder.encode(key);
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  return crc16(bytes) % 16384;
}

/**
 * Splits items into groups whose keys share a slot, in first-seen order.
 *
 * @param items The items.
 * @param keyOf The key of an item.
 * @returns The groups.
 * @example
 * ```ts
 * import { groupBySlot } from "./_redis_cluster.ts";
 * console.assert(groupBySlot(["{a}1", "{a}2", "b"], (k) => k).length === 2);
 * ```
 */
export function groupBySlot<T>(items: readonly T[], keyOf: (item: T) => string): T[][] {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const slot = keySlot(keyOf(item));
    let group = groups.get(slot);
    if (!group) groups.set(slot, group = []);
    group.push(item);
  }
  return [...groups.values()];
}

/**
 * Parses the node list of a `redis+cluster://[[user]:password@]h1:p1,h2:p2[/0]` URL (any one
 * node is enough to find the others). The rest of the URL (credentials, query) is read as a
 * `redis://` URL of the first node.
 *
 * @param url The URL.
 * @returns The nodes, and the same URL rewritten as `redis://` for its first node.
 * @throws {TypeError} For a URL without nodes or a node without a valid port.
 * @example
 * ```ts
 * import { parseClusterNodes } from "./_redis_cluster.ts";
 * const { nodes, single } = parseClusterNodes("redis+cluster://:pw@a:7000,b:7001");
 * console.assert(nodes.length === 2 && single === "redis://:pw@a:7000");
 * ```
 */
export function parseClusterNodes(url: string): { nodes: ClusterNode[]; single: string } {
  const match = /^[a-z+]+:\/\/(.*)$/is.exec(url);
  if (!match) throw new TypeError(`Cannot use Redis Cluster URL: it must look like scheme://host`);
  const rest = match[1]!;
  const at = rest.lastIndexOf("@");
  const creds = at < 0 ? "" : rest.slice(0, at + 1);
  const hostAndPath = at < 0 ? rest : rest.slice(at + 1);
  const end = hostAndPath.search(/[/?#]/);
  const hosts = end < 0 ? hostAndPath : hostAndPath.slice(0, end);
  const tail = end < 0 ? "" : hostAndPath.slice(end);
  const nodes: ClusterNode[] = [];
  for (const part of hosts.split(",").map((h) => h.trim()).filter((h) => h !== "")) {
    const { url: u } = parseUrl(`redis://${part}`);
    const port = u.port === "" ? 6379 : Number(u.port);
    nodes.push({ host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1", port });
  }
  if (nodes.length === 0) throw new TypeError(`Cannot use Redis Cluster URL: no node given`);
  const first = hosts.split(",")[0]!.trim();
  return { nodes, single: `redis://${creds}${first}${tail}` };
}
