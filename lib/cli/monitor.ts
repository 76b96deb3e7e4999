// deno-lint-ignore-file no-console -- command-line output
/**
 * The monitoring commands of the CLI: `inspect`, `control`, `status`, `events`, `purge`.
 * Output follows Celery's (`->  node: OK` then the reply, `N nodes online.`); `--json`
 * prints Celery's JSON shapes.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { App } from "../app.ts";
import type { CeleryEvent } from "../worker/events.ts";
import { preflight } from "./preflight.ts";

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Celery's exit code when no node replied (`EX_UNAVAILABLE`). */
const EX_UNAVAILABLE = 69;

const COMMON = `      --timeout S          Seconds to wait for replies (default: 1)
  -d, --destination N1,N2  Only these node names
  -j, --json               Print the replies as JSON
  -a, --app MODULE         Module exporting the App (for its broker)
  -b, --broker URL         Broker URL (default: the app's, CELERIAC_BROKER_URL)
  -h, --help               Show this help`;

const INSPECT = [
  "ping",
  "stats",
  "active",
  "reserved",
  "scheduled",
  "revoked",
  "registered",
  "active_queues",
  "query_task",
  "conf",
  "report",
  "clock",
];

const CONTROL = [
  "revoke",
  "revoke_by_stamped_headers",
  "terminate",
  "rate_limit",
  "time_limit",
  "enable_events",
  "disable_events",
  "heartbeat",
  "add_consumer",
  "cancel_consumer",
  "pool_grow",
  "pool_shrink",
  "autoscale",
  "shutdown",
];

/** Usage texts by command. */
export const MONITOR_USAGE: Record<string, string> = {
  inspect: `Usage: deno run -A cli.ts inspect <command> [args] [options]

Commands: ${INSPECT.join(", ")}
  query_task ID...        registered [ATTR...]

Options:
${COMMON}`,
  control: `Usage: deno run -A cli.ts control <command> [args] [options]

Commands:
  revoke ID... [--terminate] [--signal SIGTERM]
  revoke_by_stamped_headers NAME=VALUE... [--terminate] [--signal SIGTERM]
  terminate SIGNAL ID...
  rate_limit TASK RATE      (e.g. 10/s, 5/m; 0 removes it)
  time_limit TASK SOFT [HARD]
  enable_events | disable_events | heartbeat | shutdown
  add_consumer QUEUE | cancel_consumer QUEUE
  pool_grow [N] | pool_shrink [N] | autoscale MAX [MIN]

Options:
      --terminate          With revoke, revoke_by_stamped_headers: stop running tasks
      --signal NAME        With --terminate (default: SIGTERM)
${COMMON}`,
  status: `Usage: deno run -A cli.ts status [options]

Options:
${COMMON}`,
  events: `Usage: deno run -A cli.ts events [options]

Shows workers and recent tasks, refreshed every second, until Ctrl-C.

Options:
      --dump               Print every event as one JSON line instead
      --types T1,T2        Only these event types (a trailing * matches a prefix)
  -a, --app MODULE         Module exporting the App (for its broker)
  -b, --broker URL         Broker URL
  -h, --help               Show this help`,
  purge: `Usage: deno run -A cli.ts purge [options]

Options:
  -Q, --queues Q1,Q2       Queues to purge (default: the app's default queue)
  -f, --force              Do not ask for confirmation (asked on a terminal; anywhere
                           else purge refuses to run without --force)
  -a, --app MODULE         Module exporting the App (for its broker)
  -b, --broker URL         Broker URL
  -h, --help               Show this help`,
};

async function appFor(values: { app?: string | undefined; broker?: string | undefined }) {
  const app = await loadApp(values);
  preflight(app.conf, { backend: false });
  return app;
}

async function loadApp(values: { app?: string | undefined; broker?: string | undefined }) {
  if (values.app) {
    const url = /^[a-z][a-z0-9+.-]*:/i.test(values.app)
      ? new URL(values.app)
      : new URL(values.app, `file://${Deno.cwd()}/`);
    const mod = await import(url.href);
    for (const candidate of [mod.default, mod.app]) {
      if (candidate instanceof App) {
        if (!values.broker) return candidate;
        // A broker given on the command line wins over the app's.
        return new App({ broker: values.broker });
      }
    }
    throw new UsageError(`${values.app} exports no App (as its default export or as 'app')`);
  }
  return new App(values.broker ? { broker: values.broker } : {});
}

const remoteOptions = {
  timeout: { type: "string", short: "t" },
  destination: { type: "string", short: "d" },
  json: { type: "boolean", short: "j" },
  app: { type: "string", short: "a" },
  broker: { type: "string", short: "b" },
  help: { type: "boolean", short: "h" },
} as const;

function seconds(value: string | undefined): number {
  if (value === undefined) return 1000;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    throw new UsageError(`--timeout must be a number of seconds >= 0, got '${value}'`);
  }
  return n * 1000;
}

function numberArg(value: string | undefined, what: string, integer = false): number | null {
  if (value === undefined) return null;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${what} must be a${integer ? "n integer" : " number"}, got '${value}'`);
  }
  return n;
}

// Celery's `_compile_arguments`: positional words become the command's arguments.
function compileArguments(
  command: string,
  words: string[],
  flags: { terminate?: boolean | undefined; signal?: string | undefined },
): Record<string, unknown> {
  const need = (n: number, signature: string) => {
    if (words.length < n) throw new UsageError(`${command} takes arguments: ${signature}`);
  };
  switch (command) {
    case "query_task":
      return { ids: words };
    case "registered":
      return words.length ? { taskinfoitems: words } : {};
    case "conf":
      return { with_defaults: words[0] === "true" || words[0] === "1" };
    case "revoke":
      need(1, "ID...");
      return {
        task_id: words,
        terminate: flags.terminate ?? false,
        signal: flags.signal ?? "SIGTERM",
      };
    case "revoke_by_stamped_headers":
      // As Celery's CLI (variadic `headers`): the words go as a list of `name=value`.
      need(1, "NAME=VALUE...");
      return {
        headers: words,
        terminate: flags.terminate ?? false,
        signal: flags.signal ?? "SIGTERM",
      };
    case "terminate":
      need(2, "SIGNAL ID...");
      return { signal: words[0], task_id: words.slice(1), terminate: true };
    case "rate_limit":
      need(2, "TASK RATE");
      return { task_name: words[0], rate_limit: words[1] };
    case "time_limit":
      need(2, "TASK SOFT [HARD]");
      return {
        task_name: words[0],
        soft: numberArg(words[1], "SOFT"),
        hard: numberArg(words[2], "HARD"),
      };
    case "add_consumer":
      need(1, "QUEUE [EXCHANGE [TYPE [ROUTING_KEY]]]");
      return {
        queue: words[0],
        exchange: words[1] ?? null,
        exchange_type: words[2] ?? null,
        routing_key: words[3] ?? null,
      };
    case "cancel_consumer":
      need(1, "QUEUE");
      return { queue: words[0] };
    case "pool_grow":
    case "pool_shrink":
      return { n: numberArg(words[0], "N", true) ?? 1 };
    case "autoscale":
      need(1, "MAX [MIN]");
      return { max: numberArg(words[0], "MAX", true), min: numberArg(words[1], "MIN", true) };
    default:
      if (words.length) throw new UsageError(`${command} takes no arguments`);
      return {};
  }
}

function indent(text: string, n: number): string {
  const pad = " ".repeat(n);
  return text.split("\n").map((l) => pad + l).join("\n");
}

// Celery's `pretty()`: lists as bullets, {ok}/{error} unwrapped, other dicts as JSON.
function pretty(reply: unknown): [string, string] {
  if (Array.isArray(reply)) {
    return ["OK", reply.length ? reply.map((i) => `* ${show(i)}`).join("\n") : "- empty -"];
  }
  if (reply !== null && typeof reply === "object") {
    const r = reply as Record<string, unknown>;
    if ("ok" in r) return ["OK", indent(pretty(r.ok)[1], 4)];
    if ("error" in r) return ["ERROR", indent(pretty(r.error)[1], 4)];
    return ["OK", JSON.stringify(reply, null, 4)];
  }
  return ["OK", typeof reply === "string" ? reply : JSON.stringify(reply)];
}

function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * `inspect <command>` and `control <command>`.
 *
 * @param kind `inspect` or `control`.
 * @param argv Arguments after the command name.
 * @returns The exit code.
 */
export async function remote(kind: "inspect" | "control", argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      ...remoteOptions,
      terminate: { type: "boolean" },
      signal: { type: "string", short: "s" },
    },
  });
  if (values.help) {
    console.log(MONITOR_USAGE[kind]);
    return 0;
  }
  const [command, ...words] = positionals;
  const known = kind === "inspect" ? INSPECT : CONTROL;
  if (!command) throw new UsageError(`${kind} needs a command (${known.join(", ")})`);
  if (!known.includes(command)) {
    throw new UsageError(`unknown ${kind} command '${command}' (use ${known.join(", ")})`);
  }
  const args = compileArguments(command, words, values);
  const timeout = seconds(values.timeout);
  const destination = values.destination
    ? values.destination.split(",").map((d) => d.trim()).filter(Boolean)
    : null;
  const app = await appFor(values);
  try {
    // A broker that cannot be reached is one clear error within the timeout, not a hang.
    await app.getBroker({ signal: AbortSignal.timeout(Math.max(timeout, 4000)) });
    const replies: Record<string, unknown>[] = [];
    const stream = app.control.replies(command, args, { timeout, destination });
    for await (const { hostname, reply } of stream) {
      replies.push({ [hostname]: reply });
      if (!values.json) {
        const [status, body] = pretty(reply);
        console.log(`->  ${hostname}: ${status}`);
        if (body) console.log(indent(body, 4));
      }
    }
    if (!replies.length) {
      console.error("Error: No nodes replied within time constraint");
      return EX_UNAVAILABLE;
    }
    if (values.json) {
      console.log(
        JSON.stringify(kind === "inspect" ? Object.assign({}, ...replies) : replies),
      );
    } else {
      console.log(`\n${replies.length} ${replies.length === 1 ? "node" : "nodes"} online.`);
    }
    return 0;
  } finally {
    await app.close();
  }
}

/**
 * `status`: ping every worker and list those that reply.
 *
 * @param argv Arguments.
 * @returns The exit code.
 */
export async function status(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: remoteOptions,
  });
  if (values.help) {
    console.log(MONITOR_USAGE.status);
    return 0;
  }
  if (positionals.length) throw new UsageError("status takes no arguments");
  const app = await appFor(values);
  try {
    const destination = values.destination
      ? values.destination.split(",").map((d) => d.trim()).filter(Boolean)
      : null;
    const replies: Record<string, unknown> = {};
    const stream = app.control.inspect({ timeout: seconds(values.timeout), destination }).ping();
    for await (const { hostname, reply } of stream) {
      replies[hostname] = reply;
      if (!values.json) console.log(`->  ${hostname}: ${pretty(reply)[0]}`);
    }
    const n = Object.keys(replies).length;
    if (!n) {
      console.error("Error: No nodes replied within time constraint");
      return EX_UNAVAILABLE;
    }
    if (values.json) console.log(JSON.stringify(replies));
    else console.log(`\n${n} ${n === 1 ? "node" : "nodes"} online.`);
    return 0;
  } finally {
    await app.close();
  }
}

/**
 * `purge`: remove every waiting message from queues.
 *
 * @param argv Arguments.
 * @returns The exit code.
 */
export async function purge(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      queues: { type: "string", short: "Q" },
      force: { type: "boolean", short: "f" },
      app: { type: "string", short: "a" },
      broker: { type: "string", short: "b" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(MONITOR_USAGE.purge);
    return 0;
  }
  if (positionals.length) throw new UsageError("purge takes no arguments (use -Q)");
  const app = await appFor(values);
  try {
    const queues = values.queues
      ? values.queues.split(",").map((q) => q.trim()).filter(Boolean)
      : [app.conf.defaultQueue];
    if (!values.force) {
      if (!Deno.stdin.isTerminal()) {
        throw new UsageError("purge deletes messages: pass --force to confirm");
      }
      const yes = confirm(`Delete every waiting message in ${queues.join(", ")}?`);
      if (!yes) return 1;
    }
    const n = await app.control.purge(queues);
    console.log(
      `Purged ${n} ${n === 1 ? "message" : "messages"} from ${queues.length} known ${
        queues.length === 1 ? "task queue" : "task queues"
      }.`,
    );
    return 0;
  } finally {
    await app.close();
  }
}

interface WorkerView {
  hostname: string;
  online: boolean;
  lastSeen: number;
  freq: number;
  active: number;
  processed: number;
  loadavg: unknown;
  sw: string;
}

interface TaskView {
  uuid: string;
  name: string;
  state: string;
  hostname: string;
  at: number;
  info: string;
}

const TASK_STATES: Record<string, string> = {
  "task-sent": "PENDING",
  "task-received": "RECEIVED",
  "task-started": "STARTED",
  "task-succeeded": "SUCCESS",
  "task-failed": "FAILURE",
  "task-retried": "RETRY",
  "task-revoked": "REVOKED",
  "task-rejected": "REJECTED",
};

function render(workers: Map<string, WorkerView>, tasks: Map<string, TaskView>): string {
  const now = Date.now() / 1000;
  const lines = [`celeriac events  ${new Date().toISOString()}  (Ctrl-C to quit)`, ""];
  lines.push("WORKER".padEnd(40) + "STATUS".padEnd(10) + "ACTIVE".padEnd(8) + "PROCESSED");
  for (const w of [...workers.values()].sort((a, b) => a.hostname.localeCompare(b.hostname))) {
    // Celery's monitors expire a worker after two missed heartbeats.
    const alive = w.online && now - w.lastSeen <= w.freq * 2 + 1;
    lines.push(
      w.hostname.slice(0, 39).padEnd(40) + (alive ? "ONLINE" : "OFFLINE").padEnd(10) +
        String(w.active).padEnd(8) + String(w.processed),
    );
  }
  lines.push("", "TASK".padEnd(38) + "NAME".padEnd(24) + "STATE".padEnd(10) + "WORKER / INFO");
  const recent = [...tasks.values()].sort((a, b) => b.at - a.at).slice(0, 20);
  for (const t of recent) {
    lines.push(
      t.uuid.padEnd(38) + t.name.slice(0, 23).padEnd(24) + t.state.padEnd(10) +
        `${t.hostname} ${t.info}`.slice(0, 60),
    );
  }
  return lines.join("\n");
}

/**
 * `events`: a live view of workers and tasks, or `--dump` as JSON lines.
 *
 * @param argv Arguments.
 * @param signal Stops watching (the CLI aborts it on SIGINT/SIGTERM).
 * @returns The exit code.
 */
export async function events(argv: string[], signal?: AbortSignal): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      dump: { type: "boolean" },
      types: { type: "string" },
      app: { type: "string", short: "a" },
      broker: { type: "string", short: "b" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(MONITOR_USAGE.events);
    return 0;
  }
  if (positionals.length) throw new UsageError("events takes no arguments");
  const app = await appFor(values);
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  if (signal?.aborted) stop.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const workers = new Map<string, WorkerView>();
  const tasks = new Map<string, TaskView>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const encoder = new TextEncoder();
  const draw = () =>
    Deno.stdout.writeSync(encoder.encode(`\x1b[2J\x1b[H${render(workers, tasks)}\n`));
  try {
    const types = values.types?.split(",").map((t) => t.trim()).filter(Boolean);
    const options: Parameters<App["events"]>[0] = { signal: stop.signal };
    if (types?.length) options.types = types;
    if (values.dump) {
      options.onReady = () => console.error("-> events: listening (Ctrl-C to stop)");
    } else {
      options.onReady = draw;
      timer = setInterval(draw, 1000);
    }
    for await (const e of app.events(options)) {
      if (values.dump) {
        console.log(JSON.stringify(e));
        continue;
      }
      track(e, workers, tasks);
    }
    return 0;
  } finally {
    clearInterval(timer);
    signal?.removeEventListener("abort", onAbort);
    await app.close();
  }
}

function track(e: CeleryEvent, workers: Map<string, WorkerView>, tasks: Map<string, TaskView>) {
  const hostname = String(e.hostname ?? "?");
  const at = typeof e.timestamp === "number" ? e.timestamp : Date.now() / 1000;
  if (e.type.startsWith("worker-")) {
    workers.set(hostname, {
      hostname,
      online: e.type !== "worker-offline",
      lastSeen: at,
      freq: typeof e.freq === "number" ? e.freq : 2,
      active: typeof e.active === "number" ? e.active : 0,
      processed: typeof e.processed === "number" ? e.processed : 0,
      loadavg: e.loadavg,
      sw: `${e.sw_ident ?? ""} ${e.sw_ver ?? ""}`,
    });
    return;
  }
  const state = TASK_STATES[e.type];
  if (!state || typeof e.uuid !== "string") return;
  const known = tasks.get(e.uuid);
  const info = e.type === "task-succeeded"
    ? `result=${e.result} runtime=${Number(e.runtime ?? 0).toFixed(3)}s`
    : e.type === "task-failed" || e.type === "task-retried"
    ? String(e.exception ?? "")
    : e.type === "task-received"
    ? `args=${e.args} kwargs=${e.kwargs}`
    : known?.info ?? "";
  tasks.set(e.uuid, {
    uuid: e.uuid,
    name: typeof e.name === "string" ? e.name : known?.name ?? "",
    state,
    hostname,
    at,
    info,
  });
  if (tasks.size > 1000) tasks.delete(tasks.keys().next().value!);
}
