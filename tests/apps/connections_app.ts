// The app module of the connection tests (worker subprocesses import it). Broker, backend and
// the connection retry options come from the environment: CELERIAC_BROKER_URL,
// CELERIAC_RESULT_BACKEND, CELERIAC_TEST_MAX_RETRIES, CELERIAC_TEST_PREFIX (kombu's
// global_keyprefix), CELERIAC_TEST_ACKS_LATE.
import { App } from "@celeriac/celeriac";

const env = (name: string) => Deno.env.get(name);
const retries = env("CELERIAC_TEST_MAX_RETRIES");
const prefix = env("CELERIAC_TEST_PREFIX");

/** The app as configured by the environment. */
export const app: App = new App({
  broker: env("CELERIAC_BROKER_URL") ?? "redis://127.0.0.1:6379/0",
  backend: env("CELERIAC_RESULT_BACKEND") ?? "redis://127.0.0.1:6379/1",
  acksLate: env("CELERIAC_TEST_ACKS_LATE") === "1",
  ...(retries ? { brokerConnectionMaxRetries: Number(retries) } : {}),
  ...(prefix ? { transportOptions: { global_keyprefix: prefix } } : {}),
});

app.task("conn.add", (x: number, y: number) => x + y);
app.task("conn.sleep", async (i: number, ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return i;
});

export default app;
