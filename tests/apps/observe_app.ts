// The app of the observability tests (tests/observe_test.ts): worker subprocesses import it.
// Broker, backend and key prefix come from CELERIAC_BROKER_URL, CELERIAC_RESULT_BACKEND and
// CELERIAC_TEST_PREFIX; CELERIAC_TEST_BEAT adds a periodic entry sent every second.
import { App, every, type TaskContext } from "@celeriac/celeriac";

const env = (name: string) => Deno.env.get(name);

export const app: App = new App({
  broker: env("CELERIAC_BROKER_URL") ?? "redis://127.0.0.1:6379/0",
  backend: env("CELERIAC_RESULT_BACKEND") ?? "redis://127.0.0.1:6379/1",
  transportOptions: { global_keyprefix: env("CELERIAC_TEST_PREFIX") ?? "" },
  defaultQueue: env("CELERIAC_TEST_QUEUE") ?? "celery",
});

export const add = app.task("obs.add", (x: number, y: number) => x + y);

app.task("obs.boom", () => {
  throw new TypeError("boom");
});

// Sends obs.add from inside the task (in a Web Worker with the workers pool): its PRODUCER
// span must be a child of this task's CONSUMER span.
app.task("obs.nested", async (x: number) => {
  const r = await add.delay(x, 1);
  return r.id;
});

// Retries once: the retry's PRODUCER span is a child of the first run.
app.task("obs.flaky", function (this: TaskContext) {
  if (this.retries < 1) this.retry({ countdown: 0 });
  return this.retries;
});

if (env("CELERIAC_TEST_BEAT")) {
  app.addPeriodicTask("obs-tick", { task: "obs.add", schedule: every(1), args: [1, 1] });
}

export default app;
