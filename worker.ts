/**
 * The Web Worker entry of the `workers` pool. It imports the app module, then runs tasks by
 * name when the parent asks. Tasks that send tasks or read results do it through the parent's
 * connections.
 *
 * @module
 */

import type { App } from "./lib/app.ts";
import { makeMeta } from "./lib/app.ts";
import { SoftTimeLimitExceeded } from "./lib/errors.ts";
import { execute } from "./lib/worker/execute.ts";
import { toErrorShape } from "./lib/worker/outcome.ts";
import type { DoneMessage, FromWorker, RunMessage, ToWorker } from "./lib/worker/worker_pool.ts";
import { setLongTimeout } from "./lib/_timer.ts";
import { ProxyBackend, ProxyBroker, ProxyClient } from "./lib/worker/_proxy.ts";

interface WorkerScope {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  close(): void;
  addEventListener(type: "unload", listener: () => void): void;
}

const scope = globalThis as unknown as WorkerScope;
const client = new ProxyClient((m) => scope.postMessage(m));
// Runs by the parent's sequence number: task ids are not unique.
const running = new Map<number, AbortController>();
let app: App | undefined;

// A Web Worker that ends by itself sends no event to the parent. Tell it first, so that its
// tasks fail with WorkerLostError instead of staying active forever. `Deno.exit()` (and
// `process.exit()`) dispatch `unload`; `self.close()` does not, so it is wrapped.
let exiting = false;
function sayExiting(reason: string): void {
  if (exiting) return;
  exiting = true;
  try {
    scope.postMessage({ type: "exiting", reason });
  } catch {
    // Nothing more can be done from here.
  }
}
scope.addEventListener("unload", () => sayExiting("a task called Deno.exit()"));
const close = scope.close.bind(scope);
scope.close = () => {
  sayExiting("a task called self.close()");
  close();
};

// This isolate's memory: its JavaScript heap plus external memory (ArrayBuffers). RSS would be
// the whole process's, shared by every Web Worker.
function heapUsed(): number {
  try {
    const m = Deno.memoryUsage();
    return m.heapUsed + m.external;
  } catch {
    return 0;
  }
}

function findApp(mod: Record<string, unknown>): App {
  for (const candidate of [mod.default, mod.app]) {
    const c = candidate as Partial<App> | undefined;
    if (c && c.tasks instanceof Map && typeof c.useConnections === "function") return c as App;
  }
  throw new TypeError("The app module must export an App as its default export or as `app`");
}

async function init(m: Extract<ToWorker, { type: "init" }>): Promise<void> {
  try {
    app = findApp(await import(m.appModule));
    app.useConnections({
      broker: new ProxyBroker(m.brokerUrl, client),
      backend: new ProxyBackend(m.backendUrl, client),
    });
    scope.postMessage({ type: "ready", tasks: [...app.tasks.keys()] });
  } catch (error) {
    scope.postMessage({ type: "init-error", error: toErrorShape(error) });
  }
}

// Runs sent ahead wait here until a place frees; a run starts only if this isolate wins its
// claim (the parent may have taken it back meanwhile, see RunMessage).
const waiting: RunMessage[] = [];
let concurrency = 1;
// Deno.memoryUsage() costs more than a no-op task: only measured for maxMemoryPerChild.
let measureMemory = false;
let claims = new Int32Array(new SharedArrayBuffer(0));
// Results go out together, once per turn of the microtask queue, with the starts the parent
// asked to hear of.
let results: DoneMessage[] = [];
let started: number[] = [];

function pump(): void {
  while (running.size < concurrency && waiting.length) {
    const m = waiting.shift()!;
    if (Atomics.compareExchange(claims, m.cell, m.token, -m.token) !== m.token) continue;
    // The parent times a hard limit (and sends an early ack) from this message: it leaves,
    // with the results so far, before a busy loop can block this isolate.
    if (m.notify) {
      started.push(m.seq);
      flush();
    }
    run(m);
  }
}

function flush(): void {
  if (results.length === 0 && started.length === 0) return;
  const batch = results;
  const starts = started;
  results = [];
  started = [];
  try {
    scope.postMessage(
      starts.length
        ? { type: "done", results: batch, started: starts }
        : { type: "done", results: batch },
    );
  } catch {
    if (starts.length) scope.postMessage({ type: "done", results: [], started: starts });
    // A return value could not be cloned (a function, a class with private fields...): send
    // them one by one, so that only that run fails.
    for (const r of batch) {
      try {
        scope.postMessage({ type: "done", results: [r] });
      } catch (error) {
        scope.postMessage({
          type: "done",
          results: [{
            seq: r.seq,
            outcome: {
              kind: "failure",
              error: toErrorShape(
                new TypeError(`Task result cannot be sent: ${(error as Error).message}`),
              ),
              runtime: 0,
            },
          }],
        });
      }
    }
  }
}

async function run(m: RunMessage): Promise<void> {
  const controller = new AbortController();
  const { request, seq } = m;
  running.set(seq, controller);
  const soft = m.softLimit
    ? setLongTimeout(
      () => controller.abort(new SoftTimeLimitExceeded(m.softLimit!)),
      m.softLimit * 1000,
    )
    : undefined;
  try {
    const outcome = await execute(app!, request, controller.signal, async (state, meta) => {
      const backend = await app!.getBackend();
      await backend.store(request.id, makeMeta(request.id, state, meta), {
        replyTo: request.context.replyTo,
      });
    });
    if (results.length === 0) queueMicrotask(flush);
    results.push(measureMemory ? { seq, outcome, heapUsed: heapUsed() } : { seq, outcome });
  } finally {
    soft?.clear();
    running.delete(seq);
    // The next run starts after this turn's results are posted (or posts them with its start).
    if (waiting.length) queueMicrotask(pump);
  }
}

scope.onmessage = (event) => {
  const m = event.data;
  if (client.handle(m)) return;
  switch (m.type) {
    case "init":
      claims = new Int32Array(m.claims);
      concurrency = m.concurrency;
      measureMemory = m.memory;
      init(m);
      break;
    case "run":
      for (const r of m.runs) waiting.push(r);
      pump();
      break;
    case "ping":
      scope.postMessage({ type: "pong" });
      break;
  }
};
