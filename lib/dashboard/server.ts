/**
 * The web dashboard (Flower for celeriac): a page and a JSON API on `Deno.serve`, with live
 * updates as server-sent events. It works on every broker: events come from
 * `app.events()`, worker details and actions from remote control (`app.control`), queue
 * counts and the dead-letter queue from the broker's optional admin methods, results from the
 * backend and beat entries from the app's `beatSchedule` and the beat store. What a broker
 * does not support is shown as such instead of failing.
 *
 * ```ts ignore
 * import { App } from "@celeriac/celeriac";
 * import { Dashboard } from "@celeriac/celeriac/dashboard";
 * const app = new App({ broker: "redis://127.0.0.1:6379/0" });
 * await using dashboard = new Dashboard(app);
 * await dashboard.start();
 * Deno.serve({ hostname: "127.0.0.1", port: 5555 }, dashboard.fetch);
 * ```
 *
 * @module
 */

import type { App } from "../app.ts";
import type { Broker } from "../brokers/broker.ts";
import type { BeatStore } from "../beat/store.ts";
import { entryList } from "../beat/entry.ts";
import type { CeleryEvent } from "../worker/events.ts";
import { DashboardState, RUNTIME_BUCKETS, type TaskInfo, type WorkerInfo } from "./state.ts";
import { metricsText } from "./_metrics.ts";
import { INDEX_HTML, STATIC_FILES } from "./_assets.ts";
import { truthy } from "../protocol/truthy.ts";

/** Options of {@linkcode Dashboard}. */
export interface DashboardOptions {
  /** `user:password`: every request must carry it as HTTP basic auth. */
  auth?: string;
  /** A bearer token every request must carry (`Authorization: Bearer`, or `?token=` once). */
  token?: string;
  /**
   * Most tasks kept in memory.
   * @default {10_000}
   */
  maxTasks?: number;
  /** Queues shown on the Queues page, besides the app's default queue and workers' queues. */
  queues?: string[];
  /**
   * How often worker details are asked for (`inspect stats/active_queues/registered`) and
   * queue depths sampled, in ms.
   * @default {5_000}
   */
  pollInterval?: number;
  /** Stops the dashboard (same as `close()`). */
  signal?: AbortSignal;
}

/** What remote control can do on the app's broker. */
export type ControlSupport = "replies" | "commands" | "none";

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};
const WORKER_ACTIONS = new Set([
  "pool_grow",
  "pool_shrink",
  "add_consumer",
  "cancel_consumer",
  "rate_limit",
  "time_limit",
  "shutdown",
]);

function json(data: unknown, status = 200): Response {
  return new Response(JSON.stringify(data), {
    status,
    headers: { ...JSON_HEADERS, ...SECURITY_HEADERS },
  });
}

function problem(status: number, message: string): Response {
  return json({ error: message }, status);
}

function equalText(a: string, b: string): boolean {
  // Length-independent comparison time is not needed for a local tool, but equal work is cheap.
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  }
  return diff === 0;
}

// Task ids (uuids, or any string without separators) inside Celery's nested `children` lists.
function childIds(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) {
    if (typeof value[0] === "string" && (value.length === 2 || value.length === 1)) {
      out.push(value[0]);
      return out;
    }
    for (const v of value) childIds(v, out);
  }
  return out;
}

/**
 * Whether a host name or address is loopback only.
 *
 * @param hostname A host name or address.
 * @returns `true` for `127.x.x.x`, `::1` and `localhost`.
 * @example
 * ```ts
 * import { isLoopback } from "./server.ts";
 * console.assert(isLoopback("127.0.0.1") && !isLoopback("0.0.0.0"));
 * ```
 */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * The dashboard: state from events, the JSON API, the live stream and the page.
 * `fetch` is a `Deno.serve` handler.
 */
export class Dashboard implements AsyncDisposable {
  /** The app watched. */
  readonly app: App;
  /** Workers and tasks from events. */
  readonly state: DashboardState;
  /** The per-process token actions must carry in `X-CSRF-Token`. */
  readonly csrfToken: string = crypto.randomUUID().replaceAll("-", "");
  #options: DashboardOptions;
  #stop = new AbortController();
  #loops: Promise<void>[] = [];
  #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #dirtyWorkers = new Set<string>();
  #dirtyTasks = new Set<string>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #timers: ReturnType<typeof setInterval>[] = [];
  #broker: Broker | undefined;
  #control: ControlSupport = "none";
  #eventsError: string | null = null;
  #queues = new Set<string>();
  #depth: { t: number; counts: Record<string, number> }[] = [];
  #beatStore: Promise<BeatStore> | undefined;
  #inspecting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #encoder = new TextEncoder();

  /**
   * Creates the dashboard; `start()` starts listening to events.
   *
   * @param app The app.
   * @param options Auth, bounds, polling.
   * @throws {TypeError} For an `auth` without a colon.
   */
  constructor(app: App, options: DashboardOptions = {}) {
    if (options.auth !== undefined && !options.auth.includes(":")) {
      throw new TypeError("Cannot use auth: it must be user:password");
    }
    this.app = app;
    this.#options = options;
    this.state = new DashboardState(
      options.maxTasks !== undefined ? { maxTasks: options.maxTasks } : {},
    );
    this.#queues.add(app.conf.defaultQueue);
    for (const q of options.queues ?? []) this.#queues.add(q);
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  /** What remote control can do on this broker (known after `start()`). */
  get controlSupport(): ControlSupport {
    return this.#control;
  }

  /**
   * Connects, subscribes to events (resolves once the subscription is in place) and starts
   * polling workers and queues.
   *
   * @returns When events are being received.
   */
  async start(): Promise<void> {
    const broker = this.#broker = await this.app.getBroker();
    this.#control = broker.broadcast && broker.publishDirect && broker.consumeDirect
      ? "replies"
      : broker.broadcast
      ? "commands"
      : "none";
    if (broker.subscribe) {
      const ready = Promise.withResolvers<void>();
      this.#loops.push(this.#receive(ready.resolve).finally(ready.resolve));
      await ready.promise;
    } else {
      this.#eventsError = "this broker carries no events";
    }
    const every = this.#options.pollInterval ?? 5_000;
    this.#timers.push(setInterval(() => {
      for (const w of this.state.expire()) this.#markWorker(w);
    }, 1_000));
    this.#timers.push(setInterval(() => void this.#poll(), every));
    void this.#poll();
  }

  async #receive(onReady: () => void): Promise<void> {
    const signal = this.#stop.signal;
    try {
      for await (const event of this.app.events({ signal, onReady })) {
        this.#apply(event);
      }
    } catch (error) {
      if (!signal.aborted) {
        this.#eventsError = `events stopped: ${error instanceof Error ? error.message : error}`;
        this.app.logger.error(`dashboard: ${this.#eventsError}`);
      }
    }
  }

  #apply(event: CeleryEvent): void {
    const change = this.state.apply(event);
    if (change.worker) {
      const known = change.worker.pool !== null;
      this.#markWorker(change.worker);
      if (!known && event.type === "worker-online") void this.#inspect();
    }
    if (change.task) {
      this.#dirtyTasks.add(change.task.uuid);
      this.#schedule();
    }
  }

  #markWorker(w: WorkerInfo): void {
    this.#dirtyWorkers.add(w.hostname);
    this.#schedule();
  }

  #schedule(): void {
    this.#flushTimer ??= setTimeout(() => this.#flush(), 150);
  }

  #flush(): void {
    this.#flushTimer = undefined;
    const workers = [...this.#dirtyWorkers].map((h) => this.state.workers.get(h)).filter(Boolean);
    const tasks = [...this.#dirtyTasks].map((id) => this.state.tasks.get(id)).filter(Boolean);
    this.#dirtyWorkers.clear();
    this.#dirtyTasks.clear();
    if (workers.length || tasks.length) this.#send("update", { workers, tasks });
  }

  #send(event: string, data: unknown): void {
    const chunk = this.#encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    for (const c of this.#clients) {
      try {
        c.enqueue(chunk);
      } catch {
        this.#clients.delete(c);
      }
    }
  }

  async #poll(): Promise<void> {
    if (this.#stop.signal.aborted) return;
    await Promise.allSettled([this.#inspect(), this.#sampleQueues()]);
  }

  // Worker details by remote control; on brokers without replies there are none.
  #inspect(): Promise<void> {
    if (this.#control !== "replies") return Promise.resolve();
    return this.#inspecting ??= (async () => {
      try {
        const inspect = this.app.control.inspect({ timeout: 1000, signal: this.#stop.signal });
        const [stats, queues, registered] = await Promise.all([
          inspect.stats().toArray(),
          this.app.control.inspect({ timeout: 1000, signal: this.#stop.signal }).activeQueues()
            .toArray(),
          this.app.control.inspect({ timeout: 1000, signal: this.#stop.signal }).registered()
            .toArray(),
        ]);
        for (const { hostname, reply } of stats) {
          const w = this.state.worker(hostname);
          const pool = (reply as { pool?: Record<string, unknown> })?.pool;
          if (pool) {
            w.pool = typeof pool.implementation === "string" ? pool.implementation : null;
            const max = pool["max-concurrency"];
            w.concurrency = typeof max === "number" ? max : null;
          }
          this.#markWorker(w);
        }
        for (const { hostname, reply } of queues) {
          if (!Array.isArray(reply)) continue;
          const w = this.state.worker(hostname);
          w.queues = reply.map((q) => String((q as { name?: unknown })?.name ?? "")).filter(
            Boolean,
          );
          for (const q of w.queues) this.#queues.add(q);
          this.#markWorker(w);
        }
        for (const { hostname, reply } of registered) {
          if (!Array.isArray(reply)) continue;
          const w = this.state.worker(hostname);
          w.registered = reply.map(String);
          this.#markWorker(w);
        }
      } catch (error) {
        if (!this.#stop.signal.aborted) {
          this.app.logger.debug(`dashboard: inspect failed: ${error}`);
        }
      } finally {
        this.#inspecting = undefined;
      }
    })();
  }

  async #sampleQueues(): Promise<void> {
    const broker = this.#broker;
    if (!broker?.queueCounts) return;
    try {
      const counts = await broker.queueCounts([...this.#queues]);
      const sample = { t: Date.now(), counts: {} as Record<string, number> };
      for (const c of counts) sample.counts[c.queue] = c.waiting;
      this.#depth.push(sample);
      if (this.#depth.length > 720) this.#depth.shift();
      this.#send("queues", counts);
    } catch (error) {
      this.app.logger.debug(`dashboard: queue counts failed: ${error}`);
    }
  }

  #authorized(req: Request, url: URL): boolean | Response {
    const { auth, token } = this.#options;
    if (auth === undefined && token === undefined) return true;
    const header = req.headers.get("authorization") ?? "";
    if (auth !== undefined && header.startsWith("Basic ")) {
      let decoded = "";
      try {
        decoded = atob(header.slice(6));
      } catch {
        // Not base64.
      }
      if (equalText(decoded, auth)) return true;
    }
    if (token !== undefined) {
      if (header.startsWith("Bearer ") && equalText(header.slice(7), token)) return true;
      const cookie = /(?:^|;\s*)celeriac_dashboard=([^;]*)/.exec(req.headers.get("cookie") ?? "");
      if (cookie && equalText(decodeURIComponent(cookie[1]!), token)) return true;
      const query = url.searchParams.get("token");
      if (query !== null && equalText(query, token)) {
        // Swap the token in the address for a cookie, so it does not stay in the history.
        url.searchParams.delete("token");
        return new Response(null, {
          status: 303,
          headers: {
            location: url.pathname + url.search + url.hash,
            "set-cookie": `celeriac_dashboard=${
              encodeURIComponent(token)
            }; HttpOnly; SameSite=Strict; Path=/`,
          },
        });
      }
    }
    const headers: Record<string, string> = { ...JSON_HEADERS };
    if (auth !== undefined) headers["www-authenticate"] = 'Basic realm="celeriac dashboard"';
    return new Response(JSON.stringify({ error: "unauthorized" }), { status: 401, headers });
  }

  // Actions need the page's token in a header (a form on another site cannot set one) and,
  // when the browser sends one, an Origin equal to ours.
  #csrf(req: Request, url: URL): Response | null {
    const origin = req.headers.get("origin");
    if (origin !== null && origin !== url.origin) {
      return problem(403, "cross-origin request refused");
    }
    const given = req.headers.get("x-csrf-token") ?? "";
    if (!equalText(given, this.csrfToken)) return problem(403, "missing or wrong X-CSRF-Token");
    return null;
  }

  /**
   * Handles one request (a `Deno.serve` handler).
   *
   * @param req The request.
   * @returns The response.
   */
  fetch = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const allowed = this.#authorized(req, url);
    if (allowed !== true) return allowed as Response;
    try {
      if (req.method === "POST") {
        const refused = this.#csrf(req, url);
        if (refused) return refused;
        return await this.#action(req, url.pathname);
      }
      if (req.method !== "GET" && req.method !== "HEAD") return problem(405, "method not allowed");
      return await this.#get(url);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return problem(
        error instanceof TypeError || error instanceof RangeError ? 400 : 500,
        message,
      );
    }
  };

  async #get(url: URL): Promise<Response> {
    const path = url.pathname;
    if (path === "/" || path === "/index.html") {
      return new Response(INDEX_HTML.replace("__CSRF_TOKEN__", this.csrfToken), {
        headers: { "content-type": "text/html; charset=utf-8", ...SECURITY_HEADERS },
      });
    }
    const file = STATIC_FILES[path];
    if (file) {
      return new Response(file.body, {
        headers: { "content-type": file.type, ...SECURITY_HEADERS },
      });
    }
    if (path === "/favicon.ico") return new Response(null, { status: 204 });
    if (path === "/api/stream") return this.#stream();
    if (path === "/api/overview") return json(this.#overview());
    if (path === "/api/workers") return json(this.#workers());
    if (path === "/api/tasks") return json(this.#tasks(url.searchParams));
    if (path.startsWith("/api/tasks/")) {
      return json(await this.#task(decodeURIComponent(path.slice("/api/tasks/".length))));
    }
    if (path === "/api/queues") return json(await this.#queueList());
    const dead = /^\/api\/queues\/([^/]+)\/(dead|scheduled)$/.exec(path);
    if (dead) return json(await this.#browse(decodeURIComponent(dead[1]!), dead[2]!));
    if (path === "/api/beat") return json(await this.#beat());
    if (path === "/api/charts") return json(this.#charts());
    if (path === "/metrics") {
      return new Response(metricsText(this.state), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    return problem(404, "not found");
  }

  #overview() {
    return {
      broker: this.app.conf.brokerUrl.replace(/\/\/[^@/]*@/, "//***@"),
      backend: this.app.conf.backendUrl.replace(/\/\/[^@/]*@/, "//***@"),
      control: this.#control,
      events: this.#eventsError,
      admin: Boolean(this.#broker?.queueCounts),
      csrf: true,
    };
  }

  #workers(): WorkerInfo[] {
    return [...this.state.workers.values()].sort((a, b) => a.hostname.localeCompare(b.hostname));
  }

  #tasks(params: URLSearchParams): { total: number; tasks: TaskInfo[] } {
    const state = params.get("state");
    const name = params.get("name");
    const worker = params.get("worker");
    const search = params.get("search");
    const limit = Math.max(1, Math.min(Number(params.get("limit")) || 200, 10_000));
    const out: TaskInfo[] = [];
    const all = [...this.state.tasks.values()];
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const t = all[i]!;
      if (state && t.state !== state) continue;
      if (name && !(t.name ?? "").includes(name)) continue;
      if (worker && t.worker !== worker) continue;
      if (search && !t.uuid.includes(search)) continue;
      out.push(t);
    }
    return { total: this.state.tasks.size, tasks: out };
  }

  async #task(id: string) {
    const known = this.state.tasks.get(id) ?? null;
    let meta: Record<string, unknown> | null = null;
    let backendError: string | null = null;
    try {
      meta = await (await this.app.getBackend()).get(id) as Record<string, unknown> | null;
    } catch (error) {
      backendError = error instanceof Error ? error.message : String(error);
    }
    const children = new Set(this.state.children.get(id) ?? []);
    for (const c of childIds(meta?.children)) children.add(c);
    const brief = async (taskId: string | null | undefined) => {
      if (!taskId) return null;
      const t = this.state.tasks.get(taskId);
      if (t) return { uuid: taskId, name: t.name, state: t.state };
      try {
        const m = await (await this.app.getBackend()).get(taskId);
        return { uuid: taskId, name: null, state: m?.status ?? "PENDING" };
      } catch {
        return { uuid: taskId, name: null, state: "UNKNOWN" };
      }
    };
    const parentId = known?.parentId ??
      (typeof meta?.parent_id === "string" ? meta.parent_id : null);
    const groupId = typeof meta?.group_id === "string" ? meta.group_id : null;
    return {
      task: known,
      meta: meta === null ? null : {
        status: meta.status ?? null,
        result: meta.result ?? null,
        traceback: meta.traceback ?? null,
        date_done: meta.date_done ?? null,
        group_id: groupId,
        parent_id: meta.parent_id ?? null,
      },
      backendError,
      parent: await brief(parentId),
      root: await brief(known?.rootId !== id ? known?.rootId : null),
      children: await Promise.all([...children].slice(0, 200).map((c) => brief(c))),
      group: groupId,
    };
  }

  async #queueList() {
    const broker = this.#broker ?? await this.app.getBroker();
    const queues = [...this.#queues];
    if (!broker.queueCounts) {
      return { supported: false, queues: queues.map((queue) => ({ queue })) };
    }
    return {
      supported: true,
      dlq: Boolean(broker.browseDeadLetters),
      queues: await broker.queueCounts(queues),
    };
  }

  async #browse(queue: string, what: string) {
    const broker = this.#broker ?? await this.app.getBroker();
    const list = what === "dead"
      ? await broker.browseDeadLetters?.(queue, { limit: 200 })
      : await broker.browseScheduled?.(queue, { limit: 200 });
    if (!list) return { supported: false, items: [] };
    return {
      supported: true,
      items: list.map((item) => {
        const h = item.message.headers;
        return {
          id: item.id,
          task: typeof h.task === "string" ? h.task : null,
          taskId: typeof h.id === "string" ? h.id : null,
          args: typeof h.argsrepr === "string" ? h.argsrepr : null,
          kwargs: typeof h.kwargsrepr === "string" ? h.kwargsrepr : null,
          eta: "eta" in item ? item.eta : null,
          reason: "reason" in item ? item.reason ?? null : null,
        };
      }),
    };
  }

  async #beat() {
    const entries = entryList(this.app.periodicTasks);
    let store: BeatStore | null = null;
    let storeError: string | null = null;
    if (entries.length) {
      try {
        this.#beatStore ??= import("../beat/beat.ts").then((m) =>
          m.beatStoreFor(this.app.conf.backendUrl)
        );
        store = await this.#beatStore;
      } catch (error) {
        storeError = error instanceof Error ? error.message : String(error);
      }
    }
    const now = Date.now();
    return {
      storeError,
      entries: await Promise.all(entries.map(async ([name, entry]) => {
        const s = await store?.getState(name).catch(() => null) ?? null;
        const after = new Date(Math.max(now, s?.lastRunAt ?? 0));
        return {
          name,
          task: entry.task,
          schedule: entry.schedule.toString(),
          args: JSON.stringify(entry.args ?? []),
          kwargs: JSON.stringify(entry.kwargs ?? {}),
          lastRun: s?.lastRunAt ?? null,
          totalRunCount: s?.totalRunCount ?? 0,
          nextRun: entry.schedule.next(after)?.getTime() ?? null,
        };
      })),
    };
  }

  #charts() {
    return {
      minutes: this.state.minutes(30),
      histogram: { buckets: RUNTIME_BUCKETS, counts: this.state.histogram() },
      depth: { queues: [...this.#queues], samples: this.#depth.slice(-360) },
    };
  }

  #stream(): Response {
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    let ping: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.#clients.add(controller);
        const snapshot = {
          overview: this.#overview(),
          workers: this.#workers(),
          tasks: this.#tasks(new URLSearchParams({ limit: "500" })).tasks,
        };
        controller.enqueue(
          this.#encoder.encode(
            `retry: 2000\nevent: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`,
          ),
        );
        ping = setInterval(() => {
          try {
            controller.enqueue(this.#encoder.encode(": ping\n\n"));
          } catch {
            clearInterval(ping);
          }
        }, 15_000);
      },
      cancel: () => {
        clearInterval(ping);
        if (self) this.#clients.delete(self);
      },
    });
    this.#pings.add(() => clearInterval(ping));
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  #pings = new Set<() => void>();

  async #action(req: Request, path: string): Promise<Response> {
    let body: Record<string, unknown> = {};
    const text = await req.text();
    if (text) {
      const parsed = JSON.parse(text);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new TypeError("Cannot run the action: the body must be a JSON object");
      }
      body = parsed;
    }
    const control = this.app.control;
    const replies = this.#control === "replies";
    const note = replies ? null : "sent; this broker carries no replies";
    const worker = /^\/api\/workers\/([^/]+)\/([a-z_]+)$/.exec(path);
    if (worker) {
      if (this.#control === "none") {
        return problem(501, "remote control is not supported on this broker");
      }
      const hostname = decodeURIComponent(worker[1]!);
      const action = worker[2]!;
      if (!WORKER_ACTIONS.has(action)) return problem(404, `unknown action ${action}`);
      const options = { destination: [hostname], reply: replies, timeout: 2000 };
      const n = Number(body.n ?? 1);
      const text = (key: string) => {
        const v = body[key];
        if (typeof v !== "string" || v === "") {
          throw new TypeError(`Cannot run ${action}: ${key} is required`);
        }
        return v;
      };
      const seconds = (key: string) => {
        const v = body[key];
        if (v === undefined || v === null || v === "") return null;
        const x = Number(v);
        if (!Number.isFinite(x) || x < 0) {
          throw new RangeError(`Cannot run ${action}: ${key} must be a number >= 0, got ${v}`);
        }
        return x;
      };
      if ((action === "pool_grow" || action === "pool_shrink") && !(Number.isInteger(n) && n > 0)) {
        throw new RangeError(`Cannot run ${action}: n must be a positive integer, got ${body.n}`);
      }
      const result = action === "pool_grow"
        ? await control.poolGrow(n, options)
        : action === "pool_shrink"
        ? await control.poolShrink(n, options)
        : action === "add_consumer"
        ? await control.addConsumer(text("queue"), options)
        : action === "cancel_consumer"
        ? await control.cancelConsumer(text("queue"), options)
        : action === "rate_limit"
        ? await control.rateLimit(text("task"), text("rate"), options)
        : action === "time_limit"
        ? await control.timeLimit(
          text("task"),
          { soft: seconds("soft"), hard: seconds("hard") },
          options,
        )
        : await control.shutdown(options);
      if (action === "add_consumer") this.#queues.add(text("queue"));
      setTimeout(() => void this.#inspect(), 300);
      return json({ ok: true, replies: result, note });
    }
    const task = /^\/api\/tasks\/([^/]+)\/revoke$/.exec(path);
    if (task) {
      if (this.#control === "none") {
        return problem(501, "remote control is not supported on this broker");
      }
      const id = decodeURIComponent(task[1]!);
      const terminate = truthy(body.terminate);
      const result = await control.revoke(id, {
        terminate,
        signal: typeof body.signal === "string" ? body.signal : "SIGTERM",
        reply: replies,
        timeout: 1000,
      });
      return json({ ok: true, replies: result, note });
    }
    const dead = /^\/api\/queues\/([^/]+)\/dead\/(replay|purge)$/.exec(path);
    if (dead) {
      const queue = decodeURIComponent(dead[1]!);
      const broker = this.#broker ?? await this.app.getBroker();
      if (dead[2] === "replay") {
        if (!broker.replayDeadLetters) return problem(501, "not supported on this broker");
        const ids = Array.isArray(body.ids) ? body.ids.map(String) : undefined;
        const moved = await broker.replayDeadLetters(queue, ids);
        void this.#sampleQueues();
        return json({ ok: true, replayed: moved });
      }
      if (!broker.purgeDeadLetters) return problem(501, "not supported on this broker");
      const removed = await broker.purgeDeadLetters(queue);
      void this.#sampleQueues();
      return json({ ok: true, purged: removed });
    }
    return problem(404, "not found");
  }

  /**
   * Stops receiving events, ends live streams and closes the beat store. Does not close the
   * app. Idempotent.
   *
   * @returns When stopped.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#stop.abort();
      for (const t of this.#timers) clearInterval(t);
      clearTimeout(this.#flushTimer);
      for (const stop of this.#pings) stop();
      for (const c of this.#clients) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
      this.#clients.clear();
      await Promise.allSettled(this.#loops);
      await this.#inspecting;
      const store = await this.#beatStore?.catch(() => undefined);
      await store?.close();
    })();
  }

  /** Same as {@linkcode Dashboard.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Options of {@linkcode serveDashboard}. */
export interface ServeDashboardOptions extends DashboardOptions {
  /**
   * The port; `0` picks a free one.
   * @default {5555}
   */
  port?: number;
  /**
   * The address to listen on. Anything but loopback needs `auth` or `token`.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
}

/** A running dashboard server. */
export interface DashboardServer extends AsyncDisposable {
  /** The dashboard. */
  readonly dashboard: Dashboard;
  /** Its address, e.g. `http://127.0.0.1:5555/`. */
  readonly url: string;
  /** Stops the server and the dashboard (not the app). */
  close(): Promise<void>;
}

/**
 * Starts the dashboard on `Deno.serve`.
 *
 * @param app The app.
 * @param options Address, port, auth.
 * @returns The server.
 * @throws {TypeError} When a non-loopback address is asked for without `auth` or `token`.
 * @example
 * ```ts ignore
 * import { App } from "@celeriac/celeriac";
 * import { serveDashboard } from "@celeriac/celeriac/dashboard";
 * const server = await serveDashboard(new App(), { port: 5555 });
 * console.log(server.url);
 * ```
 */
export async function serveDashboard(
  app: App,
  options: ServeDashboardOptions = {},
): Promise<DashboardServer> {
  const { port = 5555, hostname = "127.0.0.1", ...rest } = options;
  if (!isLoopback(hostname) && rest.auth === undefined && rest.token === undefined) {
    throw new TypeError(
      `Cannot listen on ${hostname}: a dashboard on a non-loopback address needs auth or a token`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Cannot listen: port must be an integer 0-65535, got ${port}`);
  }
  const dashboard = new Dashboard(app, rest);
  await dashboard.start();
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port,
    hostname,
    onListen: (addr) => listening.resolve(addr as Deno.NetAddr),
  }, dashboard.fetch);
  const addr = await listening.promise;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      await dashboard.close();
      await server.shutdown();
    })();
  return { dashboard, url: `http://${host}:${addr.port}/`, close, [Symbol.asyncDispose]: close };
}
