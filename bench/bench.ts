// deno-lint-ignore-file no-console -- a benchmark script: JSON lines on stdout, progress on stderr
/**
 * celeriac's side of the peer benchmark harness (`bench/peers` in the shared folder): the same
 * scenarios as `celery_bench.py` and `bullmq_bench.mjs`, printed as the same JSON-line records.
 *
 * ```sh
 * deno task bench                                   # every scenario, N=10000, LAT_N=500
 * N=2000 LAT_N=100 BENCH_ONLY=e2e-inline-batch deno task bench
 * EXTRA_BENCH_CMD='deno run -A /path/to/bench/bench.ts' ./run-all.sh   # in the peer harness
 * ```
 *
 * Scenarios (ids for `BENCH_ONLY`, each run once per broker in `BENCH_BROKERS`):
 * - `enq-seq`, `enq-conc`, `enq-batch`: N `add.delay(i, i)` with no worker running: one at a
 *   time, all N in flight, or chunks of `BENCH_CHUNK` (1000) in flight.
 * - `e2e-{workers,inline}-{seq,batch}`: a worker process (`cli.ts worker`, Web Worker pool or
 *   inline pool, defaults otherwise) is started and warmed up with 50 tasks; then the time from
 *   the first send until all N results are received (`GroupResult.join`), with a sequential or a
 *   chunked producer. The worker's RSS is recorded at idle and at its peak under load.
 * - `e2e-lookahead-batch`: the same with `--pool workers --lookahead 3` (runs sent ahead to
 *   each Web Worker; off by default because an early-ack run sent ahead is acked when it
 *   starts, as Celery's prefork pool does, instead of before).
 * - `io-workers`: `BENCH_IO_N` (5000) async tasks that each wait `BENCH_IO_MS` (10) ms, on the
 *   workers pool with `--child-concurrency BENCH_IO_CHILD` (100): throughput, and the most
 *   runs in progress at once in one Web Worker (`peak_in_flight_per_web_worker`).
 * - `lat-{workers,inline}`: LAT_N sequential `delay()` → `get()` round trips.
 * - `backlog-inline`: `BENCH_BACKLOG` (100 000) tasks queued first, then the worker starts: the
 *   drain rate per 10 000 results, first slice (deepest backlog) against last.
 *
 * Env: N [10000], LAT_N [500], BENCH_REP [1], REDIS_HOST [127.0.0.1], REDIS_PORT [6379],
 * AMQP_URL [amqp://guest:guest@127.0.0.1:5672], BENCH_BROKERS [redis] (also `amqp`, `kv`),
 * BENCH_ONLY [all], BENCH_CHUNK [1000], BENCH_BACKLOG [100000; 0 skips],
 * BENCH_BACKLOG_BROKERS [redis] (brokers the backlog scenario runs on),
 * BENCH_WORKER_DENO_FLAGS (extra `deno run` flags for the worker, e.g. `--cpu-prof
 * --cpu-prof-dir=/tmp/prof`), BENCH_WORKER_ARGS (extra `cli.ts worker` arguments, e.g.
 * `--lookahead 3`).
 *
 * @module
 */

import { App, type AsyncResult, GroupResult } from "../mod.ts";
import denoJson from "../deno.json" with { type: "json" };
import process from "node:process";

const env = (name: string, fallback: string) => Deno.env.get(name) || fallback;
const N = Number(env("N", "10000"));
const LAT_N = Number(env("LAT_N", "500"));
const REP = Number(env("BENCH_REP", "1"));
const CHUNK = Number(env("BENCH_CHUNK", "1000"));
const BACKLOG = Number(env("BENCH_BACKLOG", "100000"));
const IO_N = Number(env("BENCH_IO_N", "5000"));
const IO_MS = Number(env("BENCH_IO_MS", "10"));
const IO_CHILD = Number(env("BENCH_IO_CHILD", "100"));
const REDIS = `redis://${env("REDIS_HOST", "127.0.0.1")}:${env("REDIS_PORT", "6379")}`;
const AMQP = env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672");
const BROKERS = env("BENCH_BROKERS", "redis").split(/[ ,]+/).filter(Boolean);
const BACKLOG_BROKERS = env("BENCH_BACKLOG_BROKERS", "redis").split(/[ ,]+/).filter(Boolean);
const ONLY = Deno.env.get("BENCH_ONLY")?.split(",").map((s) => s.trim()).filter(Boolean);
const WORKER_FLAGS = env("BENCH_WORKER_DENO_FLAGS", "").split(/\s+/).filter(Boolean);
const WORKER_ARGS = env("BENCH_WORKER_ARGS", "").split(/\s+/).filter(Boolean);
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const APP_MODULE = new URL("./bench_app.ts", import.meta.url).pathname;
const RUN_ID = crypto.randomUUID().slice(0, 8);

type Pool = "workers" | "lookahead" | "io" | "inline";

// `cli.ts worker` arguments of each pool.
const POOL_ARGS: Record<Pool, string[]> = {
  workers: ["--pool", "workers"],
  // Sends up to 3 runs ahead to each Web Worker (off by default: see the README's Worker section).
  lookahead: ["--pool", "workers", "--lookahead", "3"],
  // Async I/O tasks: 100 at once in each Web Worker (`--child-concurrency`, default 1).
  io: ["--pool", "workers", "--child-concurrency", String(IO_CHILD)],
  inline: ["--pool", "inline"],
};
type Producer = "seq" | "conc" | "batch";

interface Target {
  broker: string;
  brokerUrl: string;
  backendUrl: string;
}

function target(broker: string): Target {
  switch (broker) {
    case "redis":
      return { broker, brokerUrl: `${REDIS}/0`, backendUrl: `${REDIS}/1` };
    case "amqp":
      return { broker, brokerUrl: AMQP, backendUrl: `${REDIS}/1` };
    case "kv": {
      const path = `${Deno.makeTempDirSync({ prefix: "celeriac-bench-kv-" })}/bench.sqlite3`;
      return { broker, brokerUrl: `kv://${path}`, backendUrl: `kv://${path}` };
    }
    default:
      throw new TypeError(`unknown broker '${broker}' (use redis, amqp, kv)`);
  }
}

const log = (...a: unknown[]) =>
  console.error(`[celeriac ${new Date().toISOString().slice(11, 19)}]`, ...a);
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Nearest-rank percentile of sorted values, as the peer suites: the `ceil(p/100·n)`-th smallest.
 *
 * @param sorted Values in ascending order.
 * @param p Percentile, 0–100.
 * @returns The value.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function emit(t: Target, record: Record<string, unknown>): void {
  console.log(JSON.stringify({
    system: "celeriac",
    version: denoJson.version,
    broker: t.broker,
    backend: t.backendUrl.split(":")[0],
    rep: REP,
    ...record,
  }));
}

/** The resident set size of a process in MiB, from /proc (Linux), or null. */
function rssMiB(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return Number.isFinite(kb) ? r1(kb / 1024) : null;
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux), or null. */
function cpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
  } catch {
    return null;
  }
}

/** This process's CPU time in ms. */
function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

let redisPid: number | null | undefined;
async function redisServerPid(): Promise<number | null> {
  if (redisPid !== undefined) return redisPid;
  try {
    const { createClient } = await import("redis");
    const c = createClient({ url: REDIS });
    await c.connect();
    const info = await c.info("server");
    await c.quit();
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    redisPid = Number.isFinite(pid) && cpuMs(pid) !== null ? pid : null;
  } catch {
    redisPid = null;
  }
  return redisPid;
}

/**
 * The RabbitMQ server's process (the Erlang VM, `beam.smp`, whose command line names the
 * rabbit application; private test nodes named `celeriac-test-*` are skipped), or null.
 */
function rabbitServerPid(): number | null {
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      let cmdline: string;
      try {
        cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      } catch {
        continue;
      }
      if (
        cmdline.includes("beam.smp") && cmdline.includes("rabbit") &&
        !cmdline.includes("celeriac-test-")
      ) return Number(entry.name);
    }
  } catch {
    // Not Linux.
  }
  return null;
}

/**
 * CPU ms per task of the worker, this producer and the broker's server (redis-server or
 * RabbitMQ) over a timed section.
 */
class CpuMeter {
  #pids: (number | null)[];
  #start: (number | null)[];
  #own = ownCpuMs();
  #server: string;
  constructor(worker: number | null, server: number | null, serverName = "redis") {
    this.#pids = [worker, server];
    this.#server = serverName;
    this.#start = this.#pids.map((p) => p === null ? null : cpuMs(p));
  }
  perTask(n: number): Record<string, number | null> {
    const [w, r] = this.#pids.map((p, i) => {
      const a = this.#start[i], b = p === null ? null : cpuMs(p);
      return a === null || a === undefined || b === null ? null : r3((b - a) / n);
    });
    return {
      worker_cpu_ms_per_task: w ?? null,
      producer_cpu_ms_per_task: r3((ownCpuMs() - this.#own) / n),
      [`${this.#server}_cpu_ms_per_task`]: r ?? null,
    };
  }
}

// The CPU figures of a section with no worker running.
function withoutWorker(perTask: Record<string, number | null>): Record<string, number | null> {
  const { worker_cpu_ms_per_task: _, ...rest } = perTask;
  return rest;
}

// The meter of a timed section on `t`'s broker.
async function meter(t: Target, worker: number | null): Promise<CpuMeter> {
  if (t.broker === "redis") return new CpuMeter(worker, await redisServerPid());
  if (t.broker === "amqp") return new CpuMeter(worker, rabbitServerPid(), "rabbitmq");
  return new CpuMeter(worker, null);
}

class WorkerProcess {
  readonly child: Deno.ChildProcess;
  constructor(t: Target, queue: string, pool: Pool) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...WORKER_FLAGS,
        CLI,
        "worker",
        "--app",
        APP_MODULE,
        "-Q",
        queue,
        ...POOL_ARGS[pool],
        "-l",
        "warn",
        ...WORKER_ARGS,
      ],
      env: {
        CELERIAC_BROKER_URL: t.brokerUrl,
        CELERIAC_RESULT_BACKEND: t.backendUrl,
        BENCH_QUEUE: queue,
      },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  }
  get pid(): number {
    return this.child.pid;
  }
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      return; // already gone
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        log(`worker ${this.pid} did not stop on SIGTERM; SIGKILL`);
        try {
          this.child.kill("SIGKILL");
        } catch { /* gone */ }
        resolve();
      }, 15_000);
    });
    await Promise.race([this.child.status, killed]);
    clearTimeout(timer);
    await this.child.status;
  }
}

interface Session {
  t: Target;
  queue: string;
  app: App;
  add: (x: number, y: number) => Promise<AsyncResult<number>>;
  io: (ms: number) => Promise<AsyncResult<number>>;
  sent: string[];
}

function session(t: Target, tag: string): Session {
  const queue = `celeriac-bench-${tag}-${REP}-${RUN_ID}`;
  const app = new App({
    broker: t.brokerUrl,
    backend: t.backendUrl,
    defaultQueue: queue,
    resultExpires: 600_000,
  });
  const task = app.task("bench.add", (x: number, y: number) => x + y);
  const ioTask = app.task("bench.io", (_ms: number): number => 0);
  const sent: string[] = [];
  return {
    t,
    queue,
    app,
    sent,
    add: async (x, y) => {
      const r = await task.delay(x, y);
      sent.push(r.id);
      return r;
    },
    io: async (ms) => {
      const r = await ioTask.delay(ms);
      sent.push(r.id);
      return r;
    },
  };
}

async function produce(
  s: Session,
  n: number,
  how: Producer,
  offset = 0,
): Promise<AsyncResult<number>[]> {
  const out: AsyncResult<number>[] = new Array(n);
  if (how === "seq") {
    for (let i = 0; i < n; i++) out[i] = await s.add(offset + i, offset + i);
  } else {
    const chunk = how === "conc" ? n : CHUNK;
    for (let start = 0; start < n; start += chunk) {
      const ps: Promise<AsyncResult<number>>[] = [];
      for (let i = start; i < Math.min(n, start + chunk); i++) {
        ps.push(s.add(offset + i, offset + i));
      }
      const got = await Promise.all(ps);
      for (let k = 0; k < got.length; k++) out[start + k] = got[k]!;
    }
  }
  return out;
}

async function join(s: Session, results: AsyncResult<number>[], timeout: number) {
  return await new GroupResult(crypto.randomUUID(), results, s.app).join({ timeout });
}

// Removes what a scenario left: its queue (and kombu binding) and its results.
async function cleanup(s: Session): Promise<void> {
  try {
    const broker = await s.app.getBroker();
    await broker.purge(s.queue);
    const backend = await s.app.getBackend();
    const ids = s.sent.splice(0);
    for (let i = 0; i < ids.length; i += 1000) {
      await Promise.all(ids.slice(i, i + 1000).map((id) => backend.forget(id)));
    }
    if (s.t.broker === "redis") {
      const { createClient } = await import("redis");
      const c = createClient({ url: s.t.brokerUrl });
      await c.connect();
      await c.del(`_kombu.binding.${s.queue}`);
      await c.quit();
    }
    if (s.t.broker === "amqp") {
      // The queue, its direct exchange (Celery's layout) and a dead-letter queue, if made.
      const amqp = await import("amqplib");
      const conn = await amqp.connect(s.t.brokerUrl);
      try {
        const ch = await conn.createChannel();
        await ch.deleteQueue(s.queue);
        await ch.deleteExchange(s.queue);
        await ch.deleteQueue(`${s.queue}.dlq`);
        await ch.close();
      } finally {
        await conn.close();
      }
    }
  } catch (error) {
    log(`cleanup of ${s.queue} failed: ${error}`);
  } finally {
    await s.app.close().catch(() => {});
  }
}

async function warmup(s: Session, k = 50): Promise<void> {
  const results = await produce(s, k, "batch", 0);
  const values = await join(s, results, 60_000);
  if (values.length !== k) throw new Error("warm-up failed");
  // One untimed sequential round trip too (the client's own first-use costs).
  await (await s.add(1, 1)).get({ timeout: 30_000 });
}

const POOL_DESC: Record<Pool, string> = {
  workers: `workers pool c=${navigator.hardwareConcurrency}`,
  lookahead: `workers pool c=${navigator.hardwareConcurrency} --lookahead 3`,
  io: `workers pool c=${navigator.hardwareConcurrency} --child-concurrency ${IO_CHILD}`,
  inline: "inline pool c=100",
};
const PRODUCER_DESC: Record<Producer, string> = {
  seq: "sequential await delay()",
  conc: "all N delay() in flight (Promise.all)",
  batch: `delay() in chunks of ${CHUNK} (Promise.all per chunk)`,
};

async function scEnqueue(t: Target, how: Producer): Promise<void> {
  const s = session(t, `enq-${how}`);
  try {
    await s.add(0, 0); // connection and queue declaration outside the timing
    const cpu = await meter(t, null);
    const t0 = performance.now();
    await produce(s, N, how);
    const dt = (performance.now() - t0) / 1000;
    const queued = await (await s.app.getBroker()).purge(s.queue);
    emit(t, {
      scenario: "enqueue",
      variant: `${t.broker} broker, ${PRODUCER_DESC[how]}`,
      n: N,
      elapsed_s: r3(dt),
      tasks_per_sec: r1(N / dt),
      ...withoutWorker(cpu.perTask(N)),
      load: r1(Deno.loadavg()[0]!),
      ok: queued === N + 1,
    });
  } finally {
    await cleanup(s);
  }
}

async function scE2E(t: Target, pool: Pool, how: Producer): Promise<void> {
  const s = session(t, `e2e-${pool}-${how}`);
  const worker = new WorkerProcess(t, s.queue, pool);
  try {
    await warmup(s);
    const rssIdle = rssMiB(worker.pid);
    let rssPeak = rssIdle ?? 0;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, rssMiB(worker.pid) ?? 0);
    }, 50);
    let values: number[];
    let t0: number, tSent: number, t1: number;
    const cpu = await meter(t, worker.pid);
    try {
      t0 = performance.now();
      const results = await produce(s, N, how, 0);
      tSent = performance.now();
      values = await join(s, results, 300_000);
      t1 = performance.now();
    } finally {
      clearInterval(sampler);
    }
    const sum = values.reduce((a, b) => a + b, 0);
    const dt = (t1 - t0) / 1000;
    emit(t, {
      scenario: "e2e",
      variant: `${t.broker} broker, ${POOL_DESC[pool]}, results, producer ${PRODUCER_DESC[how]}`,
      n: N,
      send_s: r3((tSent - t0) / 1000),
      elapsed_s: r3(dt),
      tasks_per_sec: r1(N / dt),
      rss_idle_mib: rssIdle,
      rss_peak_mib: rssPeak || null,
      ...cpu.perTask(N),
      load: r1(Deno.loadavg()[0]!),
      ok: values.length === N && sum === N * (N - 1),
    });
  } finally {
    await worker.stop();
    await cleanup(s);
  }
}

async function scLatency(t: Target, pool: Pool): Promise<void> {
  const s = session(t, `lat-${pool}`);
  const worker = new WorkerProcess(t, s.queue, pool);
  try {
    await warmup(s);
    const lat: number[] = [];
    const cpu = await meter(t, worker.pid);
    for (let i = 0; i < LAT_N; i++) {
      const t0 = performance.now();
      const v = await (await s.add(i, i)).get({ timeout: 30_000 });
      lat.push(performance.now() - t0);
      if (v !== 2 * i) throw new Error(`bad result ${v} for ${i}`);
    }
    const sorted = lat.slice().sort((a, b) => a - b);
    const total = sorted.reduce((a, b) => a + b, 0);
    emit(t, {
      scenario: "latency",
      variant: `${t.broker} broker, ${POOL_DESC[pool]}`,
      n: LAT_N,
      p50_ms: r3(percentile(sorted, 50)),
      p99_ms: r3(percentile(sorted, 99)),
      mean_ms: r3(total / sorted.length),
      max_ms: r3(sorted[sorted.length - 1]!),
      tasks_per_sec: r1(LAT_N / (total / 1000)),
      ...cpu.perTask(LAT_N),
      load: r1(Deno.loadavg()[0]!),
    });
  } finally {
    await worker.stop();
    await cleanup(s);
  }
}

// Async I/O tasks (a `setTimeout` of IO_MS each) on the workers pool with IO_CHILD of them at
// once per Web Worker: throughput, and the most runs seen in progress at once in one Web Worker.
async function scIo(t: Target): Promise<void> {
  const s = session(t, "io-workers");
  const worker = new WorkerProcess(t, s.queue, "io");
  try {
    await warmup(s);
    const cpu = await meter(t, worker.pid);
    const t0 = performance.now();
    const results: AsyncResult<number>[] = [];
    for (let start = 0; start < IO_N; start += CHUNK) {
      const ps: Promise<AsyncResult<number>>[] = [];
      for (let i = start; i < Math.min(IO_N, start + CHUNK); i++) ps.push(s.io(IO_MS));
      results.push(...await Promise.all(ps));
    }
    const seen = await join(s, results, 300_000);
    const dt = (performance.now() - t0) / 1000;
    const peak = Math.max(...seen);
    emit(t, {
      scenario: "e2e",
      variant: `${t.broker} broker, ${POOL_DESC.io}, async task (${IO_MS} ms setTimeout), results`,
      n: IO_N,
      elapsed_s: r3(dt),
      tasks_per_sec: r1(IO_N / dt),
      peak_in_flight_per_web_worker: peak,
      ...cpu.perTask(IO_N),
      load: r1(Deno.loadavg()[0]!),
      ok: seen.length === IO_N && peak >= Math.min(IO_CHILD, 100),
    });
  } finally {
    await worker.stop();
    await cleanup(s);
  }
}

// The drain rate of a deep queue: is the 10k slice at 100k deep slower than the last one?
async function scBacklog(t: Target, pool: Pool): Promise<void> {
  const s = session(t, `backlog-${pool}`);
  const slice = 10_000;
  const total = BACKLOG;
  let worker: WorkerProcess | undefined;
  try {
    const tq = performance.now();
    const results = await produce(s, total, "batch");
    const enqueueS = (performance.now() - tq) / 1000;
    const group = new GroupResult(crypto.randomUUID(), results, s.app);
    const stamps: number[] = [];
    let sum = 0;
    const done = (async () => {
      for await (const meta of group.completed({ timeout: 600_000 })) {
        stamps.push(performance.now());
        sum += meta.result as number;
      }
    })();
    await sleep(500); // let the subscriptions start before the worker does
    worker = new WorkerProcess(t, s.queue, pool);
    const rssIdle = rssMiB(worker.pid);
    let rssPeak = rssIdle ?? 0;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, rssMiB(worker!.pid) ?? 0);
    }, 100);
    try {
      await done;
    } finally {
      clearInterval(sampler);
    }
    const rates: number[] = [];
    for (let i = 0; i + slice <= stamps.length; i += slice) {
      const from = i === 0 ? stamps[0]! : stamps[i - 1]!;
      const to = stamps[i + slice - 1]!;
      rates.push(r1((i === 0 ? slice - 1 : slice) / ((to - from) / 1000)));
    }
    const drainS = (stamps[stamps.length - 1]! - stamps[0]!) / 1000;
    emit(t, {
      scenario: "e2e",
      variant: `${t.broker} broker, ${POOL_DESC[pool]}, results, ${total} queued first`,
      n: total,
      elapsed_s: r3(drainS),
      tasks_per_sec: r1((stamps.length - 1) / drainS),
      enqueue_per_sec: r1(total / enqueueS),
      slice_per_sec: rates,
      first_slice_per_sec: rates[0],
      last_slice_per_sec: rates[rates.length - 1],
      rss_peak_mib: rssPeak || null,
      ok: stamps.length === total && sum === total * (total - 1),
    });
  } finally {
    await worker?.stop();
    await cleanup(s);
  }
}

class Skipped extends Error {
  override name = "Skipped";
}
const skip = (): Promise<void> => Promise.reject(new Skipped());

interface Scenario {
  id: string;
  run: (t: Target) => Promise<void>;
  scenario: string;
  variant: (t: Target) => string;
}

const SCENARIOS: Scenario[] = [
  ...(["seq", "conc", "batch"] as const).map((how): Scenario => ({
    id: `enq-${how}`,
    scenario: "enqueue",
    run: (t) => scEnqueue(t, how),
    variant: (t) => `${t.broker} broker, ${PRODUCER_DESC[how]}`,
  })),
  ...(["workers", "inline"] as const).flatMap((pool) =>
    (["seq", "batch"] as const).map((how): Scenario => ({
      id: `e2e-${pool}-${how}`,
      scenario: "e2e",
      run: (t) => scE2E(t, pool, how),
      variant: (t) =>
        `${t.broker} broker, ${POOL_DESC[pool]}, results, producer ${PRODUCER_DESC[how]}`,
    }))
  ),
  {
    id: "e2e-lookahead-batch",
    scenario: "e2e",
    run: (t) => scE2E(t, "lookahead", "batch"),
    variant: (t) =>
      `${t.broker} broker, ${POOL_DESC.lookahead}, results, producer ${PRODUCER_DESC.batch}`,
  },
  {
    id: "io-workers",
    scenario: "e2e",
    run: scIo,
    variant: (t) =>
      `${t.broker} broker, ${POOL_DESC.io}, async task (${IO_MS} ms setTimeout), results`,
  },
  ...(["workers", "inline"] as const).map((pool): Scenario => ({
    id: `lat-${pool}`,
    scenario: "latency",
    run: (t) => scLatency(t, pool),
    variant: (t) => `${t.broker} broker, ${POOL_DESC[pool]}`,
  })),
  {
    id: "backlog-inline",
    scenario: "e2e",
    run: (t) => BACKLOG > 0 && BACKLOG_BROKERS.includes(t.broker) ? scBacklog(t, "inline") : skip(),
    variant: (t) => `${t.broker} broker, ${POOL_DESC.inline}, results, ${BACKLOG} queued first`,
  },
];

async function main(): Promise<number> {
  if (Deno.args[0] === "list") {
    for (const sc of SCENARIOS) console.log(sc.id);
    return 0;
  }
  let failures = 0;
  log(`load: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  for (const broker of BROKERS) {
    const t = target(broker);
    for (const sc of SCENARIOS) {
      if (ONLY && !ONLY.includes(sc.id)) continue;
      log(`${broker} ${sc.id}`);
      try {
        await sc.run(t);
      } catch (error) {
        if (error instanceof Skipped) continue;
        failures++;
        log(`${broker} ${sc.id} FAILED: ${(error as Error)?.stack ?? error}`);
        emit(t, { scenario: sc.scenario, variant: sc.variant(t), error: String(error) });
      }
    }
  }
  log(`load: ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  return failures ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
