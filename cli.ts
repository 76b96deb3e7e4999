// deno-lint-ignore-file no-console -- the CLI is the one place that writes to the terminal
/**
 * The celeriac command line: `deno run -A cli.ts <command> [options]`.
 *
 * ```sh
 * deno run -A cli.ts worker --app ./tasks.ts -Q celery -c 2 --pool workers
 * deno run -A cli.ts call tasks.add --args '[2, 2]' --app ./tasks.ts --wait
 * deno run -A cli.ts result <task-id> --app ./tasks.ts
 * ```
 *
 * This is the only module that listens to OS signals: the first SIGINT/SIGTERM starts a warm
 * shutdown (finish running tasks, requeue the rest, exit 0); a second one is cold (terminate
 * Web Workers, requeue late-ack messages, exit 1).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { App } from "./lib/app.ts";
import {
  createLogger,
  type LevelLogger,
  type LogLevel,
  parseLogLevel,
} from "./lib/observe/logger.ts";
import { logTaskLines } from "./lib/observe/task_log.ts";
import { otelMetricsEnabled, WorkerMetrics } from "./lib/observe/metrics.ts";
import { type MetricsServer, serveMetrics } from "./lib/observe/metrics_server.ts";
import { startBeat } from "./lib/beat/beat.ts";
import { Consumer } from "./lib/worker/consumer.ts";
import { redact } from "./lib/_url.ts";
import { events, purge, remote, status } from "./lib/cli/monitor.ts";
import { dlq, queues } from "./lib/cli/admin.ts";
import { failureLine, follow, WaitTimeoutError } from "./lib/cli/wait.ts";
import { preflight } from "./lib/cli/preflight.ts";
import denoJson from "./deno.json" with { type: "json" };

const USAGE: Record<string, string> = {
  main: `celeriac: Celery-compatible task queue for Deno

Usage: deno run -A cli.ts <command> [options]

Commands:
  worker   Run a worker over an app's tasks
  beat     Send the app's periodic tasks on schedule (safe to run several)
  call     Send a task by name
  result   Print a task's result
  inspect  Ask workers about their state (ping, stats, active, registered, ...)
  control  Change workers (revoke, terminate, rate_limit, pool_grow, shutdown, ...)
  status   List the workers online
  events   Watch workers and tasks live, or dump events as JSON lines (--dump)
  purge    Remove every waiting message from queues
  queues   Count waiting, reserved, scheduled and dead-lettered messages per queue
  dlq      List, replay or purge a queue's dead letters
  dashboard  Serve the web dashboard (workers, tasks, queues, beat, charts)

Options: --version prints celeriac's and Deno's versions.
The app module is --app or -a everywhere; -A belongs to Deno (before the script name).
Run 'deno run -A cli.ts <command> --help' for a command's options.`,
  worker: `Usage: deno run -A cli.ts worker --app ./tasks.ts [options]

Options:
  -a, --app MODULE             Module exporting the App (default export or 'app'); required
  -Q, --queues Q1,Q2           Queues to consume (default: the app's default queue)
  -c, --concurrency N          Web Workers (workers pool) or tasks at once (inline pool)
  -P, --pool workers|inline    Where tasks run (default: workers)
      --child-concurrency N    Tasks one Web Worker runs at once (default: 1); async I/O
                               tasks can run hundreds at once per Web Worker (e.g. 100)
      --lookahead N            Tasks sent ahead to one Web Worker beyond the ones it runs
                               (about 1.5x throughput for short tasks, e.g. 3); early-ack
                               ones are acked when their Web Worker starts them, as Celery's
                               prefork pool does, not before (default: 0)
      --prefetch-multiplier N  Messages reserved per task slot; 0 = unlimited (default: 4)
      --shutdown-timeout S     Warm shutdown waits S seconds for running tasks, then stops
                               them as a cold shutdown does; 0 = wait for ever (default: 0)
  -n, --hostname NAME          Node name (default: celeriac@<host>)
      --time-limit S           Hard time limit per task, seconds
      --soft-time-limit S      Soft time limit per task, seconds
      --max-tasks-per-child N  Recycle a Web Worker after N tasks
      --max-memory-per-child K Recycle a Web Worker after a task once its heap exceeds K KiB
      --autoscale MAX,MIN      Grow the pool to MAX while tasks wait, shrink to MIN when idle
  -E, --task-events            Send task events (for 'celery events', Flower, 'events')
      --heartbeat-interval S   Seconds between worker-heartbeat events (default: 2)
      --without-heartbeat      Send no worker-heartbeat events
      --without-mingle         Do not ask other workers for revoked ids at start-up
      --statedb FILE           Keep revoked task ids in FILE across restarts (JSON)
  -B, --beat                   Also run beat (the app's periodic tasks) in this process
  -l, --loglevel LEVEL         debug, info, warning or error (default: info)
      --log-format text|json   Log lines as text or as one JSON object each (default: text)
  -f, --logfile PATH           Append log lines to PATH instead of stderr
      --metrics-port N         Serve Prometheus metrics at http://ADDRESS:N/metrics
      --metrics-address HOST   Address of the metrics endpoint (default: 127.0.0.1)
  -h, --help                   Show this help

Signals: SIGINT/SIGTERM once = warm shutdown (exit 0); twice = cold shutdown (exit 1).`,
  beat: `Usage: deno run -A cli.ts beat --app ./tasks.ts [options]

Sends the app's periodic tasks (its beatSchedule and addPeriodicTask entries). Any number of
beat processes may run: they share a leader lease and claim each tick in the result backend's
store (Redis or Deno KV), so each tick is sent once.

Options:
  -a, --app MODULE       Module exporting the App; required
  -l, --loglevel LEVEL   debug, info, warning or error (default: info)
      --log-format F     text or json (default: text)
  -f, --logfile PATH     Append log lines to PATH instead of stderr
  -h, --help             Show this help`,
  call: `Usage: deno run -A cli.ts call <task-name> [options]

Options:
      --args JSON        Positional arguments, a JSON list (default: [])
      --kwargs JSON      Keyword arguments, a JSON object (default: {})
      --countdown S      Run no sooner than S seconds from now
      --eta ISO          Run no sooner than this time
      --expires S        Revoke if not started within S seconds
  -Q, --queue NAME       Target queue
  -a, --app MODULE       Module exporting the App (for its broker and routes)
  -b, --broker URL       Broker URL (default: the app's, else CELERIAC_BROKER_URL, else kv://)
      --backend URL      Result backend URL, for --wait (default: the app's, else
                         CELERIAC_RESULT_BACKEND, else kv://)
      --wait             Wait for the result and print it; progress states (PROGRESS and
                         custom ones) are shown on stderr as they are stored
      --timeout MS       With --wait: give up after MS milliseconds (default: 60000)
  -j, --json             Print one JSON object: {id} or, with --wait, the result's meta
  -h, --help             Show this help

Exit code with --wait: 0 on SUCCESS, 1 on FAILURE or REVOKED (printed as 'Type: message').`,
  result: `Usage: deno run -A cli.ts result <task-id> [options]

Options:
  -a, --app MODULE       Module exporting the App (for its backend)
      --backend URL      Result backend URL (default: the app's, CELERIAC_RESULT_BACKEND, kv://)
      --wait             Wait until the task is ready, showing progress states on stderr
      --timeout MS       With --wait: give up after MS milliseconds (default: 60000)
      --traceback        Print the traceback of a failure
  -j, --json             Print the result's meta as JSON ({"status": "PENDING"} when none)
  -h, --help             Show this help

Prints 'STATUS result' (a failure as 'FAILURE Type: message'); exits 1 on FAILURE.`,
  dashboard: `Usage: deno run -A cli.ts dashboard --app ./tasks.ts [options]

Serves the web dashboard: workers, tasks (live), queues and dead letters, beat, charts, and
Prometheus metrics at /metrics. Workers need -E (task events) for the task list.

Options:
  -a, --app MODULE       Module exporting the App (for its broker, backend and beat schedule)
  -b, --broker URL       Broker URL (default: the app's, CELERIAC_BROKER_URL)
  -p, --port N           Port; 0 picks a free one (default: 5555)
      --address HOST     Address to listen on (default: 127.0.0.1)
      --auth USER:PASS   Require HTTP basic auth (needed for a non-loopback --address)
      --token TOKEN      Require this token (Bearer header, or ?token= once; or --auth)
  -Q, --queues Q1,Q2     Queues to show besides the default queue and the workers' queues
      --max-tasks N      Tasks kept in memory (default: 10000)
  -l, --loglevel LEVEL   debug, info, warn or error (default: info)
  -h, --help             Show this help`,
};

class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

// How long a stopping worker with no task running waits for its connections (ms).
const STOP_GRACE = 3_000;

// The CLI's logger: stderr (or --logfile), text (or --log-format json), escaped lines.
function consoleLogger(
  level: string,
  options: { format?: string | undefined; logfile?: string | undefined } = {},
): LevelLogger {
  let parsed: LogLevel;
  try {
    parsed = parseLogLevel(level);
  } catch {
    throw new UsageError(`unknown log level '${level}' (use debug, info, warning, error)`);
  }
  const format = options.format ?? "text";
  if (format !== "text" && format !== "json") {
    throw new UsageError(`--log-format must be 'text' or 'json', got '${format}'`);
  }
  let write = (line: string) => console.error(line);
  if (options.logfile) {
    const file = Deno.openSync(options.logfile, { append: true, create: true });
    const encoder = new TextEncoder();
    write = (line) => {
      const bytes = encoder.encode(line + "\n");
      for (let n = 0; n < bytes.length;) n += file.writeSync(bytes.subarray(n));
    };
  }
  return createLogger({ level: parsed, format, write });
}

function toModuleUrl(path: string): URL {
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return new URL(path);
  return new URL(path, `file://${Deno.cwd()}/`);
}

async function loadApp(path: string): Promise<{ app: App; url: URL }> {
  const url = toModuleUrl(path);
  const mod = await import(url.href);
  for (const candidate of [mod.default, mod.app]) {
    if (candidate instanceof App) return { app: candidate, url };
  }
  throw new UsageError(`${path} exports no App (as its default export or as 'app')`);
}

function int(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got '${value}'`);
  }
  return n;
}

function num(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) {
    throw new UsageError(`--${name} must be a number >= 0, got '${value}'`);
  }
  return n;
}

function json<T>(
  value: string | undefined,
  name: string,
  check: (v: unknown) => boolean,
  fallback: T,
): T {
  if (value === undefined) return fallback;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new UsageError(`--${name} is not valid JSON: ${value}`);
  }
  if (!check(parsed)) throw new UsageError(`--${name} has the wrong shape: ${value}`);
  return parsed as T;
}

async function worker(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      app: { type: "string", short: "a" },
      queues: { type: "string", short: "Q" },
      concurrency: { type: "string", short: "c" },
      pool: { type: "string", short: "P" },
      "child-concurrency": { type: "string" },
      lookahead: { type: "string" },
      "prefetch-multiplier": { type: "string" },
      "shutdown-timeout": { type: "string" },
      hostname: { type: "string", short: "n" },
      "time-limit": { type: "string" },
      "soft-time-limit": { type: "string" },
      "max-tasks-per-child": { type: "string" },
      "max-memory-per-child": { type: "string" },
      autoscale: { type: "string" },
      "task-events": { type: "boolean", short: "E" },
      "heartbeat-interval": { type: "string" },
      "without-heartbeat": { type: "boolean" },
      "without-mingle": { type: "boolean" },
      statedb: { type: "string" },
      beat: { type: "boolean", short: "B" },
      loglevel: { type: "string", short: "l" },
      "log-format": { type: "string" },
      logfile: { type: "string", short: "f" },
      "metrics-port": { type: "string" },
      "metrics-address": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE.worker);
    return 0;
  }
  if (!values.app) throw new UsageError("worker needs --app ./tasks.ts");
  const pool = values.pool ?? "workers";
  if (pool !== "workers" && pool !== "inline") {
    throw new UsageError(`--pool must be 'workers' or 'inline', got '${pool}'`);
  }
  const metricsPort = int(values["metrics-port"], "metrics-port");
  const logger = consoleLogger(values.loglevel ?? "info", {
    format: values["log-format"],
    logfile: values.logfile,
  });
  const { app, url } = await loadApp(values.app);
  preflight(app.conf);
  app.logger = logger;
  const controller = new AbortController();
  const options: ConstructorParameters<typeof Consumer>[1] = {
    pool,
    appModule: url,
    signal: controller.signal,
  };
  if (values.queues) options.queues = values.queues.split(",").map((q) => q.trim()).filter(Boolean);
  const set = <K extends keyof typeof options>(key: K, value: (typeof options)[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set("concurrency", int(values.concurrency, "concurrency", 1));
  set("childConcurrency", int(values["child-concurrency"], "child-concurrency", 1));
  set("lookahead", int(values.lookahead, "lookahead", 0));
  set("prefetchMultiplier", int(values["prefetch-multiplier"], "prefetch-multiplier", 0));
  set("hostname", values.hostname);
  set("timeLimit", num(values["time-limit"], "time-limit"));
  set("softTimeLimit", num(values["soft-time-limit"], "soft-time-limit"));
  set("shutdownTimeout", num(values["shutdown-timeout"], "shutdown-timeout"));
  set("maxTasksPerChild", int(values["max-tasks-per-child"], "max-tasks-per-child", 1));
  set("maxMemoryPerChild", int(values["max-memory-per-child"], "max-memory-per-child", 1));
  if (values.autoscale !== undefined) {
    const [max, min = "1"] = values.autoscale.split(",");
    const scale = { max: int(max, "autoscale max", 1)!, min: int(min, "autoscale min", 1)! };
    if (scale.max < scale.min) {
      throw new UsageError(`--autoscale needs MAX >= MIN, got ${values.autoscale}`);
    }
    options.autoscale = scale;
  }
  set("taskEvents", values["task-events"]);
  set("heartbeatInterval", num(values["heartbeat-interval"], "heartbeat-interval"));
  if (values["without-heartbeat"]) options.heartbeatInterval = 0;
  options.mingleTimeout = values["without-mingle"] ? 0 : 1000;
  set("statedb", values.statedb);
  const consumer = new Consumer(app, options);
  logger.node = consumer.hostname;
  logger.info(`broker ${redact(app.conf.brokerUrl)}, backend ${redact(app.conf.backendUrl)}`);
  // Celery's task lines; with -l warning or above no listener is added at all.
  const stopTaskLines = logTaskLines(app, { logger, info: logger.enabled("info") });
  // Metrics are kept only when something reads them: the endpoint, or an OTel meter.
  const metrics = metricsPort !== undefined || otelMetricsEnabled()
    ? new WorkerMetrics(consumer, { broker: await app.getBroker() })
    : undefined;
  let metricsServer: MetricsServer | undefined;
  if (metrics && metricsPort !== undefined) {
    metricsServer = serveMetrics(metrics, {
      port: metricsPort,
      hostname: values["metrics-address"] ?? "127.0.0.1",
    });
    logger.info(`metrics at ${metricsServer.url}`);
  }

  let exitCode = 0;
  let signals = 0;
  // Once no task runs, what is left of a shutdown is clean-up on the connections (requeues,
  // the offline event). Against a broker that does not answer that could wait for minutes:
  // after STOP_GRACE the connections are closed, which ends every pending command at once.
  let watchdog: ReturnType<typeof setInterval> | undefined;
  let idleSince = 0;
  const forceClose = (why: string) => {
    clearInterval(watchdog);
    logger.warn(`${why}: closing the connections`);
    app.close().catch(() => {});
  };
  const onSignal = (name: Deno.Signal) => () => {
    signals++;
    if (signals === 1) {
      logger.info(`${name}: warm shutdown (finishing running tasks; ${name} again to stop now)`);
      controller.abort();
      watchdog = setInterval(() => {
        if (consumer.active > 0) return void (idleSince = 0);
        idleSince ||= Date.now();
        if (Date.now() - idleSince >= STOP_GRACE) {
          forceClose("shutdown: the broker does not answer");
        }
      }, 250);
    } else if (signals === 2) {
      logger.warn(`${name}: cold shutdown`);
      exitCode = 1;
      consumer.terminate();
      clearInterval(watchdog);
      watchdog = setInterval(() => forceClose("cold shutdown still waiting"), STOP_GRACE);
    }
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, onSignal(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  const beat = values.beat ? await startBeat(app, { signal: controller.signal }) : undefined;
  try {
    await consumer.run();
  } finally {
    clearInterval(watchdog);
    await beat?.close();
    await metricsServer?.close();
    metrics?.close();
    stopTaskLines();
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    // Never hides the error that ended the run (it propagates to main's one line).
    await app.close().catch((e) => logger.error(`closing: ${(e as Error)?.message ?? e}`));
  }
  return exitCode;
}

async function beat(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      app: { type: "string", short: "a" },
      loglevel: { type: "string", short: "l" },
      "log-format": { type: "string" },
      logfile: { type: "string", short: "f" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE.beat);
    return 0;
  }
  if (!values.app) throw new UsageError("beat needs --app ./tasks.ts");
  const logger = consoleLogger(values.loglevel ?? "info", {
    format: values["log-format"],
    logfile: values.logfile,
  });
  const { app } = await loadApp(values.app);
  preflight(app.conf);
  app.logger = logger;
  logger.info(`broker ${redact(app.conf.brokerUrl)}, backend ${redact(app.conf.backendUrl)}`);
  const controller = new AbortController();
  const stop = () => controller.abort();
  for (const s of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(s, stop);
  try {
    const running = await startBeat(app, { signal: controller.signal });
    logger.info(`beat: ${app.periodicTasks.size} periodic tasks, owner ${running.scheduler.owner}`);
    await running.done;
    await running.close();
  } finally {
    for (const s of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(s, stop);
    await app.close();
  }
  return 0;
}

async function appFor(
  values: { app?: string | undefined; broker?: string | undefined; backend?: string | undefined },
) {
  if (values.app) {
    const { app } = await loadApp(values.app);
    return app;
  }
  const options: ConstructorParameters<typeof App>[0] = {};
  if (values.broker) options.broker = values.broker;
  if (values.backend) options.backend = values.backend;
  return new App(options);
}

async function call(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      args: { type: "string" },
      kwargs: { type: "string" },
      countdown: { type: "string" },
      eta: { type: "string" },
      expires: { type: "string" },
      queue: { type: "string", short: "Q" },
      app: { type: "string", short: "a" },
      broker: { type: "string", short: "b" },
      backend: { type: "string" },
      wait: { type: "boolean" },
      timeout: { type: "string" },
      json: { type: "boolean", short: "j" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE.call);
    return 0;
  }
  const name = positionals[0];
  if (!name || positionals.length > 1) throw new UsageError("call needs exactly one task name");
  const args = json<unknown[]>(values.args, "args", Array.isArray, []);
  const kwargs = json<Record<string, unknown>>(
    values.kwargs,
    "kwargs",
    (v) => v !== null && typeof v === "object" && !Array.isArray(v),
    {},
  );
  const timeout = num(values.timeout, "timeout") ?? 60_000;
  const app = await appFor(values);
  try {
    preflight(app.conf, { backend: values.wait ?? false });
    await app.getBroker({ signal: AbortSignal.timeout(timeout) });
    if (values.wait) await app.getBackend({ signal: AbortSignal.timeout(timeout) });
    const options: Parameters<App["sendTask"]>[3] = {};
    const countdown = num(values.countdown, "countdown");
    if (countdown !== undefined) options.countdown = countdown;
    if (values.eta) {
      if (Number.isNaN(new Date(values.eta).getTime())) {
        throw new UsageError(`--eta is not a time: ${values.eta}`);
      }
      options.eta = values.eta;
    }
    const expires = num(values.expires, "expires");
    if (expires !== undefined) options.expires = expires;
    if (values.queue) options.queue = values.queue;
    const result = await app.sendTask(name, args, kwargs, options);
    if (!values.wait) {
      console.log(values.json ? JSON.stringify({ id: result.id }) : result.id);
      return 0;
    }
    if (!values.json) console.log(result.id);
    const meta = await follow(result, { timeout }).catch((error) => {
      if (!(error instanceof WaitTimeoutError)) throw error;
      throw new Error(
        `${error.message}; is a worker consuming ${values.queue ?? "the task's queue"} on ` +
          `${redact(app.conf.brokerUrl)}?`,
      );
    });
    return printMeta(meta, { json: values.json ?? false, traceback: false });
  } finally {
    await closeQuietly(app);
  }
}

// Prints a ready (or missing) meta; FAILURE and REVOKED keep their exception type.
function printMeta(
  meta: Awaited<ReturnType<ReturnType<App["asyncResult"]>["meta"]>>,
  { json, traceback, id }: { json: boolean; traceback: boolean; id?: string },
): number {
  const failed = meta?.status === "FAILURE" || meta?.status === "REVOKED";
  if (json) {
    console.log(JSON.stringify(meta ?? { task_id: id ?? null, status: "PENDING", result: null }));
    return failed ? 1 : 0;
  }
  if (!meta) {
    console.log("PENDING");
    return 0;
  }
  if (failed) {
    console.log(failureLine(meta));
  } else if (meta.status === "SUCCESS") {
    console.log(JSON.stringify(meta.result));
  } else {
    console.log(`${meta.status} ${JSON.stringify(meta.result)}`);
  }
  if (traceback && meta.traceback) console.log(meta.traceback);
  return failed ? 1 : 0;
}

async function result(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      app: { type: "string", short: "a" },
      backend: { type: "string" },
      wait: { type: "boolean" },
      timeout: { type: "string" },
      traceback: { type: "boolean" },
      json: { type: "boolean", short: "j" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE.result);
    return 0;
  }
  const id = positionals[0];
  if (!id || positionals.length > 1) throw new UsageError("result needs exactly one task id");
  const timeout = num(values.timeout, "timeout") ?? 60_000;
  const app = await appFor(values);
  try {
    preflight(app.conf, { broker: false });
    await app.getBackend({ signal: AbortSignal.timeout(timeout) });
    const r = app.asyncResult(id);
    const meta = values.wait ? await follow(r, { timeout }) : await r.meta();
    if (values.json || !meta) {
      return printMeta(meta, { json: values.json ?? false, traceback: false, id });
    }
    const failed = meta.status === "FAILURE" || meta.status === "REVOKED";
    console.log(failed ? failureLine(meta) : `${meta.status} ${JSON.stringify(meta.result)}`);
    if (values.traceback && meta.traceback) console.log(meta.traceback);
    return failed ? 1 : 0;
  } finally {
    await closeQuietly(app);
  }
}

// Closes a client command's app; a close error goes to stderr and never replaces the error
// the command failed with.
async function closeQuietly(app: App): Promise<void> {
  try {
    await app.close();
  } catch (error) {
    console.error(`celeriac: closing: ${(error as Error)?.message ?? error}`);
  }
}

async function dashboard(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      app: { type: "string", short: "a" },
      broker: { type: "string", short: "b" },
      port: { type: "string", short: "p" },
      address: { type: "string" },
      auth: { type: "string" },
      token: { type: "string" },
      queues: { type: "string", short: "Q" },
      "max-tasks": { type: "string" },
      loglevel: { type: "string", short: "l" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE.dashboard);
    return 0;
  }
  const { isLoopback, serveDashboard } = await import("./lib/dashboard/server.ts");
  const address = values.address ?? "127.0.0.1";
  if (!isLoopback(address) && !values.auth && !values.token) {
    throw new UsageError(`--address ${address} is not loopback: give --auth USER:PASS or --token`);
  }
  if (values.auth !== undefined && !values.auth.includes(":")) {
    throw new UsageError("--auth must be USER:PASS");
  }
  const logger = consoleLogger(values.loglevel ?? "info");
  const app = values.app
    ? values.broker ? new App({ broker: values.broker }) : (await loadApp(values.app)).app
    : new App(values.broker ? { broker: values.broker } : {});
  preflight(app.conf);
  app.logger = logger;
  return await untilSignal(async (signal) => {
    const options: Parameters<typeof serveDashboard>[1] = {
      port: int(values.port, "port") ?? 5555,
      hostname: address,
    };
    if (values.auth) options.auth = values.auth;
    if (values.token) options.token = values.token;
    if (values.queues) options.queues = values.queues.split(",").filter(Boolean);
    const maxTasks = int(values["max-tasks"], "max-tasks", 1);
    if (maxTasks !== undefined) options.maxTasks = maxTasks;
    const server = await serveDashboard(app, options);
    try {
      console.log(`celeriac dashboard at ${server.url} (broker ${redact(app.conf.brokerUrl)})`);
      if (!signal.aborted) {
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      }
    } finally {
      await server.close();
      await app.close().catch((e) => logger.error(`closing: ${e}`));
    }
    return 0;
  });
}

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  dashboard,
  worker,
  beat,
  call,
  result,
  inspect: (argv) => remote("inspect", argv),
  control: (argv) => remote("control", argv),
  status,
  events: (argv) => untilSignal((signal) => events(argv, signal)),
  purge,
  queues,
  dlq,
};

/** `--version`: celeriac's version (from deno.json) and the runtime's. */
function version(): number {
  console.log(`celeriac ${denoJson.version} (deno ${Deno.version.deno}, v8 ${Deno.version.v8})`);
  return 0;
}

// `-A` is Deno's allow-all: given after the script name it reaches the CLI, where it used to
// mean --app. Say so instead of guessing.
function refuseAllowAll(argv: string[]): void {
  if (argv.includes("-A")) {
    throw new UsageError(
      "-A after cli.ts is not an option of celeriac: Deno's allow-all goes before the script " +
        "(deno run -A cli.ts ...), and the app module is --app or -a",
    );
  }
}

// Runs a command that streams until SIGINT/SIGTERM.
async function untilSignal(run: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, stop);
  try {
    return await run(controller.signal);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, stop);
  }
}

/**
 * Runs the command line.
 *
 * @param argv The arguments after the script name.
 * @returns The exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "-h" || command === "--help" || command === "help") {
    console.log(USAGE.main);
    return command ? 0 : 2;
  }
  if (command === "--version" || command === "-V" || command === "version") return version();
  const run = COMMANDS[command];
  try {
    if (!run) throw new UsageError(`unknown command '${command}'`);
    refuseAllowAll(rest);
    return await run(rest);
  } catch (error) {
    const usage = error instanceof UsageError || (error as Error)?.name === "UsageError" ||
      String((error as { code?: unknown })?.code ?? "").startsWith("ERR_PARSE_ARGS");
    if (usage) {
      console.error(`celeriac: ${(error as Error).message}. See --help.`);
      return 2;
    }
    console.error(`celeriac: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
