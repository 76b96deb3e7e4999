/**
 * The dashboard's picture of the cluster, built from Celery events (as Flower's `State`):
 * workers with their heartbeats and counters, the most recent tasks (bounded), succeeded and
 * failed counts per minute, a runtime histogram, and event counts for `/metrics`.
 *
 * @module
 */

import type { CeleryEvent } from "../worker/events.ts";

/** A worker, as the dashboard sees it. */
export interface WorkerInfo {
  /** Node name. */
  hostname: string;
  /** Online: sent a heartbeat within twice its interval and no `worker-offline` since. */
  online: boolean;
  /** Last heartbeat or online event, in ms since the epoch. */
  lastHeartbeat: number | null;
  /** Heartbeat interval in seconds. */
  freq: number;
  /** Tasks running now (from heartbeats). */
  active: number;
  /** Tasks processed (from heartbeats). */
  processed: number;
  /** Load averages. */
  loadavg: number[];
  /** Software, e.g. `celeriac 0.1.0` or `py-celery 5.2.7`. */
  software: string;
  /** Process id. */
  pid: number | null;
  /** Task outcomes seen in events. */
  succeeded: number;
  /** Tasks failed. */
  failed: number;
  /** Tasks retried. */
  retried: number;
  /** Tasks revoked. */
  revoked: number;
  /** From `inspect stats`: pool implementation. */
  pool: string | null;
  /** From `inspect stats`: pool size. */
  concurrency: number | null;
  /** From `inspect active_queues`. */
  queues: string[] | null;
  /** From `inspect registered`. */
  registered: string[] | null;
}

/** A task, as the dashboard sees it. */
export interface TaskInfo {
  /** Task id. */
  uuid: string;
  /** Task name. */
  name: string | null;
  /** `RECEIVED`, `STARTED`, `SUCCESS`, `FAILURE`, `RETRY`, `REVOKED`, `REJECTED`, `PENDING`. */
  state: string;
  /** Positional arguments (repr). */
  args: string | null;
  /** Keyword arguments (repr). */
  kwargs: string | null;
  /** Result (repr). */
  result: string | null;
  /** Exception (repr). */
  exception: string | null;
  /** Traceback. */
  traceback: string | null;
  /** Runtime in seconds. */
  runtime: number | null;
  /** Worker node name. */
  worker: string | null;
  /** Retries so far. */
  retries: number;
  /** Parent task id. */
  parentId: string | null;
  /** Root task id. */
  rootId: string | null;
  /** ETA (ISO). */
  eta: string | null;
  /** Expiry (ISO). */
  expires: string | null;
  /** Received, in ms since the epoch. */
  received: number | null;
  /** Started, in ms. */
  started: number | null;
  /** Finished (succeeded, failed, revoked), in ms. */
  finished: number | null;
  /** Last change, in ms. */
  updated: number;
  /** Sender timestamp (seconds) of the event that set `state`. */
  stateAt: number;
}

/** Options of {@linkcode DashboardState}. */
export interface DashboardStateOptions {
  /**
   * Most tasks kept; the oldest are dropped first.
   * @default {10_000}
   */
  maxTasks?: number;
}

/** Upper bounds (seconds) of the runtime histogram's buckets; the last one is open. */
export const RUNTIME_BUCKETS: readonly number[] = [
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.5,
  1,
  5,
  10,
  30,
  60,
];

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

// The order of stages of one delivery; final states rank 3.
const RANK: Record<string, number> = { PENDING: 0, RECEIVED: 1, STARTED: 2, RETRY: 2 };

const str = (v: unknown): string | null => typeof v === "string" ? v : null;
const num = (v: unknown): number | null => typeof v === "number" && Number.isFinite(v) ? v : null;

/** What one event changed. */
export interface StateChange {
  /** The worker changed, if any. */
  worker?: WorkerInfo;
  /** The task changed, if any. */
  task?: TaskInfo;
}

/**
 * Workers and tasks from events.
 *
 * @example
 * ```ts
 * import { DashboardState } from "./state.ts";
 * const state = new DashboardState();
 * state.apply({ type: "task-received", uuid: "1", name: "add", args: "(2, 2)", hostname: "w" });
 * console.assert(state.tasks.get("1")?.state === "RECEIVED");
 * ```
 */
export class DashboardState {
  /** Workers by node name. */
  readonly workers: Map<string, WorkerInfo> = new Map();
  /** Tasks by id, oldest first. */
  readonly tasks: Map<string, TaskInfo> = new Map();
  /** Child task ids by parent id. */
  readonly children: Map<string, Set<string>> = new Map();
  /** Events received, by type, task name and worker (for `/metrics`). */
  readonly eventCounts: Map<string, number> = new Map();
  /** Runtime histogram counts by task name: one count per bucket, the last one open. */
  readonly runtimes: Map<string, number[]> = new Map();
  /** Runtime sums by task name (seconds). */
  readonly runtimeSums: Map<string, number> = new Map();
  /** Succeeded and failed tasks by minute (ms of the minute's start). */
  readonly perMinute: Map<number, { succeeded: number; failed: number }> = new Map();
  #maxTasks: number;

  /**
   * Creates an empty state.
   *
   * @param options Bounds.
   */
  constructor(options: DashboardStateOptions = {}) {
    this.#maxTasks = options.maxTasks ?? 10_000;
  }

  /**
   * The worker entry of a node, created when missing.
   *
   * @param hostname Node name.
   * @returns The entry.
   */
  worker(hostname: string): WorkerInfo {
    let w = this.workers.get(hostname);
    if (!w) {
      w = {
        hostname,
        online: false,
        lastHeartbeat: null,
        freq: 2,
        active: 0,
        processed: 0,
        loadavg: [],
        software: "",
        pid: null,
        succeeded: 0,
        failed: 0,
        retried: 0,
        revoked: 0,
        pool: null,
        concurrency: null,
        queues: null,
        registered: null,
      };
      this.workers.set(hostname, w);
    }
    return w;
  }

  /**
   * Marks workers offline whose heartbeats stopped (Celery's `heartbeat_expires`: twice the
   * interval).
   *
   * @param now The time, in ms.
   * @returns The workers that went offline.
   */
  expire(now: number = Date.now()): WorkerInfo[] {
    const gone: WorkerInfo[] = [];
    for (const w of this.workers.values()) {
      if (w.online && w.lastHeartbeat !== null && now - w.lastHeartbeat > w.freq * 2000 + 1000) {
        w.online = false;
        gone.push(w);
      }
    }
    return gone;
  }

  /**
   * Applies one event.
   *
   * @param event The event.
   * @param now When it was received, in ms.
   * @returns What changed.
   */
  apply(event: CeleryEvent, now: number = Date.now()): StateChange {
    const type = event.type;
    const hostname = str(event.hostname);
    const taskName = str(event.name) ??
      (typeof event.uuid === "string" ? this.tasks.get(event.uuid)?.name : null) ?? "";
    const counted = `${type}\0${type.startsWith("task-") ? taskName : ""}\0${hostname ?? ""}`;
    this.eventCounts.set(counted, (this.eventCounts.get(counted) ?? 0) + 1);
    if (type.startsWith("worker-")) {
      if (!hostname) return {};
      const w = this.worker(hostname);
      w.online = type !== "worker-offline";
      w.lastHeartbeat = now;
      w.freq = num(event.freq) ?? w.freq;
      w.active = num(event.active) ?? w.active;
      w.processed = num(event.processed) ?? w.processed;
      if (Array.isArray(event.loadavg)) w.loadavg = event.loadavg.filter((x) => num(x) !== null);
      const ident = str(event.sw_ident);
      if (ident) w.software = `${ident} ${str(event.sw_ver) ?? ""}`.trim();
      w.pid = num(event.pid) ?? w.pid;
      return { worker: w };
    }
    const state = TASK_STATES[type];
    const uuid = str(event.uuid);
    if (!state || !uuid) return {};
    const t = this.#task(uuid, now);
    const change: StateChange = { task: t };
    // Events of one task may come from several workers (retries, redeliveries, replays from
    // the dead-letter queue) and out of order: the latest by the sender's timestamp wins, and
    // at the same time the later stage.
    const at = num(event.timestamp) ?? now / 1000;
    if (at > t.stateAt || (at === t.stateAt && (RANK[state] ?? 3) >= (RANK[t.state] ?? 3))) {
      t.state = state;
      t.stateAt = at;
    }
    t.updated = now;
    if (hostname && type !== "task-sent") t.worker = hostname;
    const stamp = num(event.timestamp) !== null ? num(event.timestamp)! * 1000 : now;
    switch (type) {
      case "task-sent":
      case "task-received": {
        t.name = str(event.name) ?? t.name;
        t.args = str(event.args) ?? t.args;
        t.kwargs = str(event.kwargs) ?? t.kwargs;
        t.retries = num(event.retries) ?? t.retries;
        t.eta = str(event.eta) ?? t.eta;
        t.expires = str(event.expires) ?? t.expires;
        t.rootId = str(event.root_id) ?? t.rootId;
        const parent = str(event.parent_id);
        if (parent && parent !== t.parentId) {
          t.parentId = parent;
          let set = this.children.get(parent);
          if (!set) this.children.set(parent, set = new Set());
          set.add(uuid);
        }
        if (type === "task-received") t.received = stamp;
        break;
      }
      case "task-started":
        t.started = stamp;
        break;
      case "task-succeeded": {
        t.result = str(event.result) ?? t.result;
        t.runtime = num(event.runtime) ?? t.runtime;
        t.finished = stamp;
        this.#minute(now).succeeded++;
        if (hostname) this.worker(hostname).succeeded++;
        if (t.runtime !== null) this.#runtime(t.name ?? "", t.runtime);
        break;
      }
      case "task-failed":
        t.exception = str(event.exception) ?? t.exception;
        t.traceback = str(event.traceback) ?? t.traceback;
        t.finished = stamp;
        this.#minute(now).failed++;
        if (hostname) this.worker(hostname).failed++;
        break;
      case "task-retried":
        t.exception = str(event.exception) ?? t.exception;
        t.traceback = str(event.traceback) ?? t.traceback;
        t.retries++;
        if (hostname) this.worker(hostname).retried++;
        break;
      case "task-revoked":
        t.finished = stamp;
        if (event.terminated === true) t.exception = "terminated";
        else if (event.expired === true) t.exception = "expired";
        if (hostname) this.worker(hostname).revoked++;
        break;
    }
    if (hostname) change.worker = this.worker(hostname);
    return change;
  }

  /**
   * Succeeded and failed counts of the last `minutes` minutes, oldest first.
   *
   * @param minutes How many.
   * @param now The time, in ms.
   * @returns One entry per minute.
   */
  minutes(minutes = 30, now: number = Date.now()): {
    t: number;
    succeeded: number;
    failed: number;
  }[] {
    const current = Math.floor(now / 60_000) * 60_000;
    const out = [];
    for (let i = minutes - 1; i >= 0; i--) {
      const t = current - i * 60_000;
      const m = this.perMinute.get(t);
      out.push({ t, succeeded: m?.succeeded ?? 0, failed: m?.failed ?? 0 });
    }
    return out;
  }

  /**
   * The runtime histogram over every task name.
   *
   * @returns Counts per bucket of {@linkcode RUNTIME_BUCKETS}, plus the open last bucket.
   */
  histogram(): number[] {
    const total = new Array(RUNTIME_BUCKETS.length + 1).fill(0);
    for (const counts of this.runtimes.values()) counts.forEach((c, i) => total[i] += c);
    return total;
  }

  #task(uuid: string, now: number): TaskInfo {
    let t = this.tasks.get(uuid);
    if (t) return t;
    t = {
      uuid,
      name: null,
      state: "PENDING",
      args: null,
      kwargs: null,
      result: null,
      exception: null,
      traceback: null,
      runtime: null,
      worker: null,
      retries: 0,
      parentId: null,
      rootId: null,
      eta: null,
      expires: null,
      received: null,
      started: null,
      finished: null,
      updated: now,
      stateAt: 0,
    };
    this.tasks.set(uuid, t);
    while (this.tasks.size > this.#maxTasks) {
      const oldest = this.tasks.keys().next().value as string;
      const old = this.tasks.get(oldest);
      this.tasks.delete(oldest);
      if (old?.parentId) this.children.get(old.parentId)?.delete(oldest);
      this.children.delete(oldest);
    }
    return t;
  }

  #minute(now: number): { succeeded: number; failed: number } {
    const t = Math.floor(now / 60_000) * 60_000;
    let m = this.perMinute.get(t);
    if (!m) {
      this.perMinute.set(t, m = { succeeded: 0, failed: 0 });
      // Keep two hours.
      for (const k of this.perMinute.keys()) if (k < t - 7_200_000) this.perMinute.delete(k);
    }
    return m;
  }

  #runtime(name: string, seconds: number): void {
    let counts = this.runtimes.get(name);
    if (!counts) {
      if (this.runtimes.size >= 1000) return;
      this.runtimes.set(name, counts = new Array(RUNTIME_BUCKETS.length + 1).fill(0));
    }
    let i = RUNTIME_BUCKETS.findIndex((b) => seconds <= b);
    if (i < 0) i = RUNTIME_BUCKETS.length;
    counts[i] = (counts[i] ?? 0) + 1;
    this.runtimeSums.set(name, (this.runtimeSums.get(name) ?? 0) + seconds);
  }
}
