/**
 * Checks, before a CLI process starts its work, that Deno grants what the app's broker and
 * backend need: the `--unstable-kv` flag and read/write access to a local Deno KV file, network
 * access to a server. A missing one is one clear line naming the flag, instead of an error deep
 * in a connection (and a worker that says `ready` before it dies).
 *
 * @module
 */

import { dirname } from "node:path";
import { kvTarget } from "../_kv.ts";

/** A permission or unstable flag the process lacks; its message names the flag. */
export class MissingPermissionError extends Error {
  /**
   * @param message One line naming the flag to add.
   */
  constructor(message: string) {
    super(message);
    this.name = "MissingPermissionError";
  }
}

function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

function hostOf(url: string): string | undefined {
  try {
    const u = new URL(url);
    const port = u.port ||
      ({ "redis:": "6379", "rediss:": "6380", "amqp:": "5672", "amqps:": "5671" } as Record<
        string,
        string
      >)[u.protocol] || "";
    return u.hostname ? `${u.hostname}${port ? `:${port}` : ""}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The first missing permission or flag for one broker or backend URL, as a sentence.
 *
 * @param url The URL.
 * @param role What uses it (`broker`, `backend`).
 * @returns The sentence, or `undefined` when nothing is missing (or the URL is not known here).
 */
export function missingFor(url: string, role: string): string | undefined {
  if (/^kv(\+https?)?:/i.test(url)) {
    if (typeof Deno.openKv !== "function") {
      return `the ${role} ${url.split("?")[0]} is Deno KV, which needs --unstable-kv ` +
        `(or "unstable": ["kv"] in your deno.json)`;
    }
    let target: { target: string; local: boolean };
    try {
      target = kvTarget(url);
    } catch {
      return undefined;
    }
    if (!target.local) {
      const host = hostOf(target.target);
      if (host && !granted({ name: "net", host })) {
        return `the ${role} is KV Connect at ${host}, which needs --allow-net=${host}`;
      }
      return undefined;
    }
    const dir = dirname(target.target);
    for (const name of ["read", "write"] as const) {
      if (!granted({ name, path: dir })) {
        return `the ${role} is the Deno KV file ${target.target}, which needs ` +
          `--allow-read and --allow-write (at least --allow-${name}=${dir})`;
      }
    }
    return undefined;
  }
  if (/^(rediss?|amqps?):/i.test(url)) {
    const host = hostOf(url);
    if (host && !granted({ name: "net", host })) {
      return `the ${role} ${
        url.split(":")[0]
      }://${host} needs --allow-net (at least --allow-net=${host})`;
    }
  }
  return undefined;
}

/**
 * Throws when the broker or backend cannot work with this process's permissions.
 *
 * @param conf The app's URLs.
 * @param needs Which of broker and backend are used (both by default); `cron: true` also
 * requires `Deno.cron` (`--unstable-cron`).
 * @throws {MissingPermissionError} Naming the first missing flag.
 */
export function preflight(
  conf: { brokerUrl: string; backendUrl: string },
  needs: { broker?: boolean; backend?: boolean; cron?: boolean } = {},
): void {
  const missing = (needs.broker === false ? undefined : missingFor(conf.brokerUrl, "broker")) ??
    (needs.backend === false ? undefined : missingFor(conf.backendUrl, "result backend"));
  if (missing) throw new MissingPermissionError(missing);
  if (needs.cron && typeof Deno.cron !== "function") {
    throw new MissingPermissionError(
      'Deno.cron is missing: run with --unstable-cron (or "unstable": ["cron"] in deno.json)',
    );
  }
}
