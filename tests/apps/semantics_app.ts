// Tasks for the execution-semantics tests (retries, limits, acks, pool hygiene). `defineTasks`
// registers them on any App, so inline-pool tests can use a fresh App per test; the default
// export is the App the Web Workers load.
import { App, Ignore, Reject } from "@celeriac/celeriac";

/** Counts runs in this isolate (a recycled Web Worker starts again at 1). */
let runs = 0;
const hoard: Uint8Array[] = [];

export function defineTasks(app: App) {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  return {
    add: app.task("sem.add", (x: number, y: number) => x + y),
    sleep: app.task("sem.sleep", async (ms: number) => {
      await sleep(ms);
      return ms;
    }),
    now: app.task("sem.now", () => Date.now()),
    limited: app.task("sem.limited", () => Date.now(), { rateLimit: "10/s" }),
    global: app.task("sem.global", function () {
      return { at: Date.now(), host: this.hostname };
    }, { globalRateLimit: "10/s" }),
    // Autoretry with exponential backoff, no jitter: countdowns 0.1, 0.2, 0.4 s.
    backoff: app.task("sem.backoff", function () {
      throw new TypeError(`attempt ${this.retries}`);
    }, { autoretryFor: [TypeError], retryBackoff: 0.1, retryJitter: false, maxRetries: 3 }),
    // Full jitter: each countdown is random in [0, 0.2 * 2 ** retries].
    jitter: app.task("sem.jitter", function () {
      throw new TypeError(`attempt ${this.retries}`);
    }, { autoretryFor: [TypeError], retryBackoff: 0.2, maxRetries: 3 }),
    // The predicate would retry everything, but RangeError is unrecoverable.
    unrecoverable: app.task("sem.unrecoverable", function (kind: string) {
      if (kind === "range") throw new RangeError("bad input");
      if (this.retries < 2) throw new Error(`transient ${this.retries}`);
      return this.retries;
    }, {
      autoretryFor: () => true,
      dontAutoretryFor: [RangeError],
      retryKwargs: { countdown: 0 },
    }),
    retryExc: app.task("sem.retry_exc", function () {
      this.retry({ countdown: 0.05, exc: new RangeError(`try ${this.retries}`), maxRetries: 1 });
    }),
    retryLater: app.task("sem.retry_later", function () {
      this.retry({ countdown: 600, exc: new TypeError("later") });
    }),
    retryNoExc: app.task("sem.retry_no_exc", function () {
      this.retry({ countdown: 0 });
    }, { maxRetries: 2 }),
    forever: app.task("sem.forever", function () {
      if (this.retries < 5) this.retry({ countdown: 0 });
      return this.retries;
    }, { maxRetries: null }),
    defaultDelay: app.task("sem.default_delay", function () {
      if (this.retries === 0) this.retry();
      return this.retries;
    }, { defaultRetryDelay: 0.2 }),
    reject: app.task("sem.reject", () => {
      throw new Reject("no thanks", { requeue: false });
    }, { acksLate: true }),
    ignore: app.task("sem.ignore", () => {
      throw new Ignore();
    }),
    counter: app.task("sem.counter", () => ++runs),
    hoard: app.task("sem.hoard", (mb: number) => {
      const block = new Uint8Array(mb * 1024 * 1024);
      block.fill(1);
      hoard.push(block);
      const memory = Deno.memoryUsage();
      return { runs: ++runs, heapUsed: memory.heapUsed + memory.external };
    }),
    poison: app.task("sem.poison", () => {
      setTimeout(() => {
        throw new Error("poison: kills its Web Worker");
      });
      return new Promise(() => {});
    }, { acksLate: true, rejectOnWorkerLost: true }),
    lostEarly: app.task("sem.lost_early", () => {
      setTimeout(() => {
        throw new Error("kills its Web Worker");
      });
      return new Promise(() => {});
    }),
    progress: app.task("sem.progress", async function (steps: number) {
      for (let i = 1; i <= steps; i++) {
        await sleep(30);
        await this.updateState("PROGRESS", { current: i, total: steps });
      }
      return "done";
    }),
    started: app.task("sem.started", async () => {
      await sleep(200);
      return "ok";
    }, { trackStarted: true }),
    ignored: app.task("sem.ignored", () => 1, { ignoreResult: true }),
    ignoredFail: app.task("sem.ignored_fail", () => {
      throw new Error("not stored");
    }, { ignoreResult: true }),
    ignoredFailStored: app.task("sem.ignored_fail_stored", () => {
      throw new Error("stored anyway");
    }, { ignoreResult: true, storeErrorsEvenIfIgnored: true }),
    lateFailAck: app.task("sem.late_fail_ack", () => {
      throw new Error("fails");
    }, { acksLate: true }),
    lateFailReject: app.task("sem.late_fail_reject", () => {
      throw new Error("fails");
    }, { acksLate: true, acksOnFailureOrTimeout: false }),
    spin: app.task("sem.spin", () => {
      while (true) {
        // Never yields: only terminating the Web Worker stops it.
      }
    }),
    spinLimited: app.task("sem.spin_limited", () => {
      while (true) {
        // Stopped by the task's own hard limit.
      }
    }, { timeLimit: 0.5 }),
    soft: app.task("sem.soft", function () {
      return new Promise((resolve) => {
        this.signal.addEventListener("abort", () => resolve(this.signal.reason.name));
      });
    }, { softTimeLimit: 0.2 }),
    expected: app.task("sem.expected", () => {
      throw new RangeError("expected");
    }, { throws: [RangeError] }),
  };
}

const prefix = Deno.env.get("CELERIAC_TEST_PREFIX");
export const app = new App({
  broker: Deno.env.get("CELERIAC_BROKER_URL") ?? "memory://semantics",
  backend: Deno.env.get("CELERIAC_RESULT_BACKEND") ?? "memory://semantics",
  maxDeliveries: 3,
  transportOptions: prefix ? { global_keyprefix: prefix } : {},
});

export const tasks = defineTasks(app);

export default app;
