// The app of the dashboard tests (worker and dashboard subprocesses import it). Broker,
// backend and key prefix come from the environment: CELERIAC_BROKER_URL,
// CELERIAC_RESULT_BACKEND, CELERIAC_TEST_PREFIX, CELERIAC_TEST_QUEUE.
import { App, every, Reject, type TaskContext } from "@celeriac/celeriac";

const env = (name: string) => Deno.env.get(name);
const prefix = env("CELERIAC_TEST_PREFIX") ?? "";

/** The app as configured by the environment. */
export const app: App = new App({
  broker: env("CELERIAC_BROKER_URL") ?? "redis://127.0.0.1:6379/0",
  backend: env("CELERIAC_RESULT_BACKEND") ?? "redis://127.0.0.1:6379/1",
  transportOptions: prefix ? { global_keyprefix: prefix } : {},
  defaultQueue: env("CELERIAC_TEST_QUEUE") ?? "celery",
  beatSchedule: {
    "nightly-report": { task: "dash.echo", schedule: every("1h"), args: ["report"] },
  },
});

app.task("dash.echo", (value: unknown) => value);

// Sleeps until done or revoked (the signal aborts on terminate).
app.task("dash.sleep", function (this: TaskContext, ms: number) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(ms), ms);
    this.signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(this.signal.reason);
    }, { once: true });
  });
});

// Rejected the first time (late ack: the broker dead-letters it), succeeds once `marker` exists.
app.task("dash.once", async (marker: string) => {
  try {
    await Deno.stat(marker);
    return "replayed";
  } catch {
    await Deno.writeTextFile(marker, "seen");
    throw new Reject("first delivery is dead-lettered", { requeue: false });
  }
}, { acksLate: true });

app.task("dash.fail", () => {
  throw new Error("boom");
});

export default app;
