/**
 * Worker metrics, from the App's signals and the worker's state: tasks by name and final
 * state, runtime and queue-wait histograms, active/reserved/prefetched tasks and queue depth.
 * They are kept in this process for the Prometheus text endpoint (`worker --metrics-port`),
 * and, when a meter provider is registered (Deno's built-in OpenTelemetry with
 * `OTEL_DENO=true`), recorded as OpenTelemetry instruments too.
 *
 * Queue wait: Celery's message has no "sent" time stamp, so the wait measured is from when
 * this worker received the message (or from its ETA, for a task that had one and became due
 * later) to when it started: time spent prefetched, waiting for a slot or a rate limit.
 *
 * Prometheus names (Flower's, so dashboards carry over): `flower_events_total{type,task,
 * worker}`, `flower_task_runtime_seconds{task,worker}` (histogram),
 * `flower_task_prefetch_time_seconds{task,worker}`, `flower_worker_prefetched_tasks{task,
 * worker}`, `flower_worker_online{worker}`,
 * `flower_worker_number_of_currently_executing_tasks{worker}`; and celeriac's own:
 * `celeriac_tasks_total{task,state,worker}`, `celeriac_task_queue_wait_seconds{task,worker}`
 * (histogram), `celeriac_worker_tasks{state,worker}` (active, reserved, scheduled,
 * prefetched), `celeriac_queue_messages{queue,state}` (waiting, reserved, scheduled,
 * dead_lettered).
 *
 * @module
 */

import {
  type Attributes,
  type Counter,
  createNoopMeter,
  type Histogram,
  type Meter,
  metrics,
  type ObservableResult,
} from "@opentelemetry/api";
import type { Broker, QueueCounts } from "../brokers/broker.ts";
import type { AppEvent, AppEventType } from "../signals.ts";
import type { HeldRequest } from "../worker/control.ts";
import {
  type HistogramSeries,
  type MetricFamily,
  renderPrometheus,
  type Sample,
} from "./prometheus.ts";

/** Histogram bounds, in seconds (Prometheus client defaults). */
export const SECONDS_BUCKETS: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
  30,
  60,
  120,
  300,
];

/** What the metrics read of the worker; a {@linkcode Consumer} has it. */
export interface MetricsWorker {
  /** The App whose signals are counted. */
  readonly app: EventTarget;
  /** The node name. */
  readonly hostname: string;
  /** The queues consumed. */
  readonly queues: readonly string[];
  /** The tasks held: running, waiting for a slot, or for their ETA. */
  requests(): HeldRequest[];
}

/** Options of {@linkcode WorkerMetrics}. */
export interface WorkerMetricsOptions {
  /** The broker, for queue depth (`queueCounts`); without it, no depth is reported. */
  broker?: Broker;
  /**
   * Record OpenTelemetry instruments too.
   * @default {true when a meter provider is registered}
   */
  otel?: boolean;
  /**
   * How often queue depth is read for OpenTelemetry's gauges, in ms (Prometheus reads it
   * on each scrape).
   * @default {10000}
   */
  queuePollMs?: number;
  /** Most distinct task names kept (a flood of names cannot grow memory). @default {1000} */
  maxTasks?: number;
}

/**
 * Whether a meter provider is registered (so instruments would be exported).
 *
 * @returns True when OpenTelemetry metrics are on.
 * @example
 * ```ts
 * import { otelMetricsEnabled } from "./metrics.ts";
 * console.assert(typeof otelMetricsEnabled() === "boolean");
 * ```
 */
export function otelMetricsEnabled(): boolean {
  return !(metrics.getMeterProvider().getMeter("celeriac") instanceof NOOP_METER_CLASS);
}

// The API's no-op meter class is not exported; a no-op meter made once gives it.
const NOOP_METER_CLASS = createNoopMeter().constructor as new () => Meter;

const EVENT_TYPES: Partial<Record<AppEventType, string>> = {
  taskReceived: "task-received",
  taskPrerun: "task-started",
  taskSuccess: "task-succeeded",
  taskFailure: "task-failed",
  taskRetry: "task-retried",
  taskRevoked: "task-revoked",
  taskRejected: "task-rejected",
};

class Histo {
  readonly counts: number[] = new Array(SECONDS_BUCKETS.length + 1).fill(0);
  sum = 0;
  observe(seconds: number): void {
    let i = SECONDS_BUCKETS.findIndex((b) => seconds <= b);
    if (i < 0) i = SECONDS_BUCKETS.length;
    this.counts[i]!++;
    this.sum += seconds;
  }
}

interface OtelInstruments {
  tasks: Counter;
  runtime: Histogram;
  wait: Histogram;
  queues: QueueCounts[];
  timer: ReturnType<typeof setInterval> | undefined;
}

interface Timing {
  received: number;
  eta: number | null;
  started: number | null;
}

/**
 * Counts a worker's tasks from its App's signals and renders them for Prometheus; records
 * OpenTelemetry instruments when a meter provider is registered.
 *
 * @example
 * ```ts
 * import { App, Consumer } from "@celeriac/celeriac";
 * import { WorkerMetrics } from "./metrics.ts";
 * const app = new App({ broker: "memory://m-doc", backend: "memory://m-doc" });
 * const consumer = new Consumer(app, { pool: "inline" });
 * const m = new WorkerMetrics(consumer);
 * console.assert((await m.prometheus()).includes("celeriac_tasks_total"));
 * m.close();
 * await app.close();
 * ```
 */
export class WorkerMetrics {
  readonly #worker: MetricsWorker;
  readonly #broker: Broker | undefined;
  readonly #maxTasks: number;
  readonly #tasks = new Map<string, number>();
  readonly #events = new Map<string, number>();
  readonly #runtimes = new Map<string, Histo>();
  readonly #waits = new Map<string, Histo>();
  readonly #lastWait = new Map<string, number>();
  // Per delivery would be better, but signals carry ids; a duplicate id in flight at the same
  // time shares one entry (its timings then come from the later delivery).
  readonly #timing = new Map<string, Timing>();
  readonly #names = new Set<string>();
  readonly #listeners: [string, EventListener][] = [];
  #otel: OtelInstruments | undefined;
  #closed = false;

  /**
   * Starts counting.
   *
   * @param worker The worker (a {@linkcode Consumer}).
   * @param options Broker for queue depth, OpenTelemetry.
   */
  constructor(worker: MetricsWorker, options: WorkerMetricsOptions = {}) {
    this.#worker = worker;
    this.#broker = options.broker;
    this.#maxTasks = options.maxTasks ?? 1000;
    const on = <K extends AppEventType>(type: K, fn: (d: AppEvent<K>["detail"]) => void) => {
      const listener: EventListener = (e) => fn((e as unknown as AppEvent<K>).detail);
      this.#listeners.push([type, listener]);
      worker.app.addEventListener(type, listener);
    };
    for (const [type, name] of Object.entries(EVENT_TYPES) as [AppEventType, string][]) {
      on(type, (d) => {
        const task = (d as { name: string | null }).name ?? "";
        this.#bump(this.#events, `${name}\0${this.#task(task)}`);
      });
    }
    on("taskReceived", (d) => {
      this.#timing.set(d.id, {
        received: Date.now(),
        eta: d.eta?.getTime() ?? null,
        started: null,
      });
    });
    on("taskPrerun", (d) => {
      const now = Date.now();
      const t = this.#timing.get(d.id);
      if (!t) return;
      t.started = now;
      const from = t.eta !== null && t.eta > t.received ? t.eta : t.received;
      const wait = Math.max(0, now - from) / 1000;
      const task = this.#task(d.name);
      this.#histo(this.#waits, task).observe(wait);
      this.#lastWait.set(task, wait);
      this.#otel?.wait.record(wait, { "celery.task_name": d.name });
    });
    on("taskSuccess", (d) => {
      const t = this.#timing.get(d.id);
      if (t) t.started = null; // the pool measured it: postrun must not observe again
      this.#runtime(d.name, "SUCCESS", d.runtime);
    });
    on("taskPostrun", (d) => {
      const t = this.#timing.get(d.id);
      this.#timing.delete(d.id);
      if (t?.started != null) this.#runtime(d.name, d.state, (Date.now() - t.started) / 1000);
      this.#final(d.name, d.state);
    });
    on("taskRevoked", (d) => {
      // A terminated task ends with a taskPostrun (REVOKED); one that never ran does not.
      if (d.terminated) return;
      this.#timing.delete(d.id);
      this.#final(d.name, "REVOKED");
    });
    if (options.otel ?? otelMetricsEnabled()) {
      this.#startOtel(metrics.getMeter("celeriac"), options);
    }
  }

  /** Stops counting (and polling queue depth). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [type, listener] of this.#listeners) {
      this.#worker.app.removeEventListener(type, listener);
    }
    if (this.#otel?.timer !== undefined) clearInterval(this.#otel.timer);
  }

  /**
   * Tasks by name and final state so far.
   *
   * @returns `name → state → count`.
   */
  taskCounts(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [key, n] of this.#tasks) {
      const [task, state] = key.split("\0") as [string, string];
      (out[task] ??= {})[state] = n;
    }
    return out;
  }

  /**
   * The metrics as Prometheus text; reads the queue depth from the broker first (at most
   * one second).
   *
   * @returns The text.
   */
  async prometheus(): Promise<string> {
    const worker = this.#worker.hostname;
    const queues = await this.#queueCounts(1000);
    const held = this.#worker.requests();
    const families: MetricFamily[] = [];
    const counter = (name: string, help: string, samples: Sample[]) =>
      families.push({ name, help, type: "counter", samples });
    const gauge = (name: string, help: string, samples: Sample[]) =>
      families.push({ name, help, type: "gauge", samples });
    const histogram = (name: string, help: string, series: HistogramSeries[]) =>
      families.push({ name, help, type: "histogram", buckets: SECONDS_BUCKETS, series });
    counter(
      "flower_events_total",
      "Number of events",
      [...this.#events].map(([key, value]) => {
        const [type, task] = key.split("\0") as [string, string];
        return { labels: { type, task, worker }, value };
      }),
    );
    histogram(
      "flower_task_runtime_seconds",
      "Task runtime",
      [...this.#runtimes].map(([task, h]) => ({
        labels: { task, worker },
        counts: h.counts,
        sum: h.sum,
      })),
    );
    gauge(
      "flower_task_prefetch_time_seconds",
      "The time the task spent waiting at the worker to be executed",
      [...this.#lastWait].map(([task, value]) => ({ labels: { task, worker }, value })),
    );
    const prefetchedByTask = new Map<string, number>();
    for (const name of this.#names) prefetchedByTask.set(name, 0);
    for (const r of held) {
      if (r.state === "active") continue;
      const task = this.#task(r.name);
      prefetchedByTask.set(task, (prefetchedByTask.get(task) ?? 0) + 1);
    }
    gauge(
      "flower_worker_prefetched_tasks",
      "The number of tasks of given type prefetched at a worker",
      [...prefetchedByTask].map(([task, value]) => ({ labels: { task, worker }, value })),
    );
    gauge("flower_worker_online", "Worker online status", [{ labels: { worker }, value: 1 }]);
    const count = (state: HeldRequest["state"]) => held.filter((r) => r.state === state).length;
    const active = count("active");
    gauge(
      "flower_worker_number_of_currently_executing_tasks",
      "Number of tasks currently executing at a worker",
      [{ labels: { worker }, value: active }],
    );
    counter(
      "celeriac_tasks_total",
      "Tasks finished, by name and final state",
      [...this.#tasks].map(([key, value]) => {
        const [task, state] = key.split("\0") as [string, string];
        return { labels: { task, state, worker }, value };
      }),
    );
    histogram(
      "celeriac_task_queue_wait_seconds",
      "Time from received (or from the ETA) to started",
      [...this.#waits].map(([task, h]) => ({
        labels: { task, worker },
        counts: h.counts,
        sum: h.sum,
      })),
    );
    gauge("celeriac_worker_tasks", "Tasks held by the worker, by state", [
      { labels: { state: "active", worker }, value: active },
      { labels: { state: "reserved", worker }, value: count("reserved") },
      { labels: { state: "scheduled", worker }, value: count("scheduled") },
      { labels: { state: "prefetched", worker }, value: held.length - active },
    ]);
    gauge("celeriac_queue_messages", "Messages of each queue, by state", queueSamples(queues));
    return renderPrometheus(families);
  }

  #task(name: string): string {
    if (this.#names.has(name)) return name;
    if (this.#names.size >= this.#maxTasks) return "other";
    this.#names.add(name);
    return name;
  }

  #bump(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  #histo(map: Map<string, Histo>, task: string): Histo {
    let h = map.get(task);
    if (!h) map.set(task, h = new Histo());
    return h;
  }

  #runtime(name: string, state: string, seconds: number): void {
    this.#histo(this.#runtimes, this.#task(name)).observe(seconds);
    this.#otel?.runtime.record(seconds, { "celery.task_name": name, "celery.state": state });
  }

  #final(name: string, state: string): void {
    this.#bump(this.#tasks, `${this.#task(name)}\0${state}`);
    this.#otel?.tasks.add(1, { "celery.task_name": name, "celery.state": state });
  }

  async #queueCounts(timeoutMs: number): Promise<QueueCounts[]> {
    const broker = this.#broker;
    if (!broker?.queueCounts) return [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        broker.queueCounts([...this.#worker.queues]),
        new Promise<QueueCounts[]>((resolve) => timer = setTimeout(() => resolve([]), timeoutMs)),
      ]);
    } catch {
      return [];
    } finally {
      clearTimeout(timer);
    }
  }

  #startOtel(meter: Meter, options: WorkerMetricsOptions): void {
    const otel: OtelInstruments = {
      tasks: meter.createCounter("celeriac.tasks", {
        description: "Tasks finished, by name and final state",
        unit: "{task}",
      }),
      runtime: meter.createHistogram("celeriac.task.runtime", {
        description: "Task runtime",
        unit: "s",
      }),
      wait: meter.createHistogram("celeriac.task.queue_wait", {
        description: "Time from received (or from the ETA) to started",
        unit: "s",
      }),
      queues: [],
      timer: undefined,
    };
    this.#otel = otel;
    const worker = this.#worker;
    const base: Attributes = { "celery.hostname": worker.hostname };
    const observe = (state: HeldRequest["state"] | "prefetched") => (result: ObservableResult) => {
      const held = worker.requests();
      const n = state === "prefetched"
        ? held.filter((r) => r.state !== "active").length
        : held.filter((r) => r.state === state).length;
      result.observe(n, base);
    };
    meter.createObservableGauge("celeriac.worker.active_tasks", { unit: "{task}" })
      .addCallback(observe("active"));
    meter.createObservableGauge("celeriac.worker.reserved_tasks", { unit: "{task}" })
      .addCallback(observe("reserved"));
    meter.createObservableGauge("celeriac.worker.prefetched_tasks", { unit: "{task}" })
      .addCallback(observe("prefetched"));
    if (this.#broker?.queueCounts) {
      meter.createObservableGauge("celeriac.queue.depth", {
        description: "Messages waiting in each queue",
        unit: "{message}",
      }).addCallback((result) => {
        for (const q of otel.queues) {
          result.observe(q.waiting, { "messaging.destination.name": q.queue });
        }
      });
      const poll = async () => {
        otel.queues = await this.#queueCounts(5000);
      };
      const timer = otel.timer = setInterval(poll, options.queuePollMs ?? 10_000);
      Deno.unrefTimer(timer as unknown as number);
      poll();
    }
  }
}

function queueSamples(queues: QueueCounts[]): Sample[] {
  const out: Sample[] = [];
  for (const q of queues) {
    out.push({ labels: { queue: q.queue, state: "waiting" }, value: q.waiting });
    if (q.reserved !== null) {
      out.push({ labels: { queue: q.queue, state: "reserved" }, value: q.reserved });
    }
    if (q.scheduled !== null) {
      out.push({ labels: { queue: q.queue, state: "scheduled" }, value: q.scheduled });
    }
    if (q.deadLettered !== null) {
      out.push({ labels: { queue: q.queue, state: "dead_lettered" }, value: q.deadLettered });
    }
  }
  return out;
}
