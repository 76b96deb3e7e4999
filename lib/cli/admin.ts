// deno-lint-ignore-file no-console -- command-line output
/**
 * The queue admin commands of the CLI: `queues` (waiting, reserved, scheduled and dead-lettered
 * counts per queue) and `dlq list|replay|purge <queue>`, over the brokers' optional admin
 * methods (`queueCounts`, `browseScheduled`, `browseDeadLetters`, `replayDeadLetters`,
 * `purgeDeadLetters`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { App } from "../app.ts";
import type { Broker } from "../brokers/broker.ts";
import { redact } from "../_url.ts";
import { preflight } from "./preflight.ts";

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Usage texts of `queues` and `dlq`. */
export const ADMIN_USAGE: Record<string, string> = {
  queues: `Usage: deno run -A cli.ts queues [options]

Counts per queue: waiting, reserved (delivered, not yet acked), scheduled (held for an ETA) and
dead-lettered messages. '-' is a count the broker cannot tell.

Options:
  -Q, --queues Q1,Q2       Queues to count (default: the app's default queue)
      --scheduled          Also list the scheduled (ETA) messages, soonest first
      --limit N            With --scheduled: at most N per queue (default: 20)
  -j, --json               Print the counts as JSON
  -a, --app MODULE         Module exporting the App (for its broker)
  -b, --broker URL         Broker URL (default: the app's, CELERIAC_BROKER_URL, kv://)
  -h, --help               Show this help`,
  dlq: `Usage: deno run -A cli.ts dlq <list|replay|purge> <queue> [ids...] [options]

  list QUEUE               The dead letters of QUEUE, oldest first (id, task, reason)
  replay QUEUE [ID...]     Move them (all, or these ids) back onto QUEUE, delivery count reset
  purge QUEUE              Delete them (asks for confirmation on a terminal; -f skips it)

Options:
      --limit N            With list: at most N (default: 100)
  -j, --json               With list: print JSON
  -f, --force              With purge: do not ask for confirmation
  -a, --app MODULE         Module exporting the App (for its broker)
  -b, --broker URL         Broker URL (default: the app's, CELERIAC_BROKER_URL, kv://)
  -h, --help               Show this help`,
};

async function appFor(values: { app?: string | undefined; broker?: string | undefined }) {
  const app = await loadApp(values);
  preflight(app.conf, { backend: false });
  return app;
}

async function loadApp(values: { app?: string | undefined; broker?: string | undefined }) {
  if (values.broker) return new App({ broker: values.broker });
  if (values.app) {
    const url = /^[a-z][a-z0-9+.-]*:/i.test(values.app)
      ? new URL(values.app)
      : new URL(values.app, `file://${Deno.cwd()}/`);
    const mod = await import(url.href);
    for (const candidate of [mod.default, mod.app]) {
      if (candidate instanceof App) return candidate;
    }
    throw new UsageError(`${values.app} exports no App (as its default export or as 'app')`);
  }
  return new App();
}

function limitOf(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(`--limit must be an integer >= 1, got '${value}'`);
  }
  return n;
}

function unsupported(broker: Broker, what: string): Error {
  return new Error(`broker ${redact(broker.url)} cannot ${what}`);
}

function cell(n: number | null): string {
  return n === null ? "-" : String(n);
}

/** Confirms a destructive step: on a terminal it asks; elsewhere it needs `--force`. */
function confirmed(question: string, force: boolean | undefined): boolean {
  if (force) return true;
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError("this deletes messages: pass --force (-f) to confirm");
  }
  return confirm(question);
}

/**
 * `queues`: waiting, reserved, scheduled and dead-lettered counts per queue.
 *
 * @param argv Arguments after `queues`.
 * @returns The exit code.
 */
export async function queues(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      queues: { type: "string", short: "Q" },
      scheduled: { type: "boolean" },
      limit: { type: "string" },
      json: { type: "boolean", short: "j" },
      app: { type: "string", short: "a" },
      broker: { type: "string", short: "b" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(ADMIN_USAGE.queues);
    return 0;
  }
  if (positionals.length) throw new UsageError("queues takes no arguments (use -Q)");
  const limit = limitOf(values.limit, 20);
  const app = await appFor(values);
  try {
    const names = values.queues
      ? values.queues.split(",").map((q) => q.trim()).filter(Boolean)
      : [app.conf.defaultQueue];
    const broker = await app.getBroker();
    if (!broker.queueCounts) throw unsupported(broker, "count queues");
    const counts = await broker.queueCounts(names);
    const scheduled = values.scheduled && broker.browseScheduled
      ? await Promise.all(names.map((q) => broker.browseScheduled!(q, { limit })))
      : undefined;
    if (values.scheduled && !broker.browseScheduled) {
      throw unsupported(broker, "list scheduled messages");
    }
    if (values.json) {
      const out = counts.map((c, i) =>
        scheduled
          ? {
            ...c,
            scheduledMessages: scheduled[i]!.map((s) => ({
              id: s.id,
              eta: new Date(s.eta).toISOString(),
              task: s.message.headers.task ?? null,
            })),
          }
          : c
      );
      console.log(JSON.stringify(out));
      return 0;
    }
    const width = Math.max(5, ...names.map((q) => q.length)) + 2;
    console.log(
      "QUEUE".padEnd(width) + "WAITING".padStart(9) + "RESERVED".padStart(10) +
        "SCHEDULED".padStart(11) + "DEAD".padStart(8),
    );
    for (const c of counts) {
      console.log(
        c.queue.padEnd(width) + cell(c.waiting).padStart(9) + cell(c.reserved).padStart(10) +
          cell(c.scheduled).padStart(11) + cell(c.deadLettered).padStart(8),
      );
    }
    if (scheduled) {
      scheduled.forEach((list, i) => {
        console.log(`\nScheduled in ${names[i]}:${list.length ? "" : " - empty -"}`);
        for (const s of list) {
          console.log(
            `  ${new Date(s.eta).toISOString()}  ${s.id}  ${s.message.headers.task ?? ""}`,
          );
        }
      });
    }
    return 0;
  } finally {
    await app.close();
  }
}

/**
 * `dlq list|replay|purge <queue>`: look at, replay or delete a queue's dead letters.
 *
 * @param argv Arguments after `dlq`.
 * @returns The exit code.
 */
export async function dlq(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      limit: { type: "string" },
      json: { type: "boolean", short: "j" },
      force: { type: "boolean", short: "f" },
      app: { type: "string", short: "a" },
      broker: { type: "string", short: "b" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(ADMIN_USAGE.dlq);
    return 0;
  }
  const [action, queue, ...ids] = positionals;
  if (action !== "list" && action !== "replay" && action !== "purge") {
    throw new UsageError(`dlq needs list, replay or purge, got '${action ?? ""}'`);
  }
  if (!queue) throw new UsageError(`dlq ${action} needs a queue name`);
  if (action !== "replay" && ids.length) throw new UsageError(`dlq ${action} takes one queue`);
  const limit = limitOf(values.limit, 100);
  const app = await appFor(values);
  try {
    const broker = await app.getBroker();
    if (action === "list") {
      if (!broker.browseDeadLetters) throw unsupported(broker, "list dead letters");
      const letters = await broker.browseDeadLetters(queue, { limit });
      if (values.json) {
        console.log(JSON.stringify(letters.map((d) => ({
          id: d.id,
          task: d.message.headers.task ?? null,
          taskId: d.message.headers.id ?? null,
          reason: d.reason ?? null,
          headers: d.message.headers,
          body: d.message.body,
        }))));
        return 0;
      }
      if (!letters.length) {
        console.log(`No dead letters in ${queue}.`);
        return 0;
      }
      for (const d of letters) {
        const task = String(d.message.headers.task ?? "?");
        const args = d.message.headers.argsrepr;
        console.log(
          `${d.id}  ${task}${typeof args === "string" ? ` ${args.slice(0, 60)}` : ""}${
            d.reason ? `  (${d.reason})` : ""
          }`,
        );
      }
      console.log(`\n${letters.length} dead ${letters.length === 1 ? "letter" : "letters"}.`);
      return 0;
    }
    if (action === "replay") {
      if (!broker.replayDeadLetters) throw unsupported(broker, "replay dead letters");
      const n = await broker.replayDeadLetters(queue, ids.length ? ids : undefined);
      console.log(`Replayed ${n} dead ${n === 1 ? "letter" : "letters"} onto ${queue}.`);
      return 0;
    }
    if (!broker.purgeDeadLetters) throw unsupported(broker, "purge dead letters");
    if (!confirmed(`Delete every dead letter of ${queue}?`, values.force)) return 1;
    const n = await broker.purgeDeadLetters(queue);
    console.log(`Purged ${n} dead ${n === 1 ? "letter" : "letters"} from ${queue}.`);
    return 0;
  } finally {
    await app.close();
  }
}
