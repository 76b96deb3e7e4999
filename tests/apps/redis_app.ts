// The app module of the Redis end-to-end tests (worker subprocesses import it). Broker, backend,
// key prefix and visibility timeout come from the environment, so that each test run uses its
// own keys: CELERIAC_BROKER_URL, CELERIAC_RESULT_BACKEND, CELERIAC_TEST_PREFIX (kombu's
// global_keyprefix), CELERIAC_TEST_VISIBILITY (seconds).
import { App, type TaskContext } from "@celeriac/celeriac";

/** Options of {@linkcode makeApp}. */
export interface RedisAppOptions {
  broker: string;
  backend: string;
  prefix: string;
  /** Visibility timeout in seconds. */
  visibility?: number;
}

/** What a task that may be redelivered reports about its run. */
export interface RunReport {
  lang: "ts";
  pid: number;
  redelivered: boolean;
  deliveryCount: number;
}

/** Builds the app with every task of the Redis end-to-end tests. */
export function makeApp(o: RedisAppOptions): App {
  const transportOptions: Record<string, unknown> = { global_keyprefix: o.prefix };
  if (o.visibility !== undefined) transportOptions.visibility_timeout = o.visibility;
  const app = new App({ broker: o.broker, backend: o.backend, transportOptions });

  app.task("ts.add", (x: number, y: number) => ({ sum: x + y, lang: "ts" }));

  // Calls the Python task py.mul on the Python worker's queue and returns its result.
  app.task("ts.call_py", async (x: number, y: number, queue: string) => {
    const result = await app.sendTask("py.mul", [x], { y, via: "ts.call_py" }, { queue });
    return { from_py: await result.get({ timeout: 20_000 }), lang: "ts" };
  });

  // Long, acks late: announces the process running it (RUNNING state with its pid), then
  // sleeps. Killing that process leaves the message in kombu's `unacked` hash.
  const slow = async function (this: TaskContext, ms: number): Promise<RunReport> {
    await this.updateState("RUNNING", { pid: Deno.pid });
    await new Promise((r) => setTimeout(r, ms));
    return {
      lang: "ts",
      pid: Deno.pid,
      redelivered: this.deliveryInfo.redelivered,
      deliveryCount: this.deliveryInfo.deliveryCount,
    };
  };
  app.task("ts.slow", slow, { acksLate: true });
  // The same task under a name the Python worker also registers (tests/python/pytasks.py).
  app.task("shared.slow", slow, { acksLate: true });

  app.task("ts.square", (n: number) => n * n);
  return app;
}

const env = (name: string) => Deno.env.get(name);
const visibility = env("CELERIAC_TEST_VISIBILITY");

/** The app as configured by the environment. */
export const app: App = makeApp({
  broker: env("CELERIAC_BROKER_URL") ?? "redis://127.0.0.1:6379/0",
  backend: env("CELERIAC_RESULT_BACKEND") ?? "redis://127.0.0.1:6379/1",
  prefix: env("CELERIAC_TEST_PREFIX") ?? "",
  ...(visibility ? { visibility: Number(visibility) } : {}),
});

export default app;
