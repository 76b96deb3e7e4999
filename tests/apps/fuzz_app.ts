// The app of the fuzz suite's worker process. Broker, backend and key prefix come from the
// environment (CELERIAC_BROKER_URL, CELERIAC_RESULT_BACKEND, CELERIAC_TEST_PREFIX).
import { App } from "@celeriac/celeriac";

const prefix = Deno.env.get("CELERIAC_TEST_PREFIX") ?? "";
export const app = new App({
  broker: Deno.env.get("CELERIAC_BROKER_URL") ?? "memory://fuzz",
  backend: Deno.env.get("CELERIAC_RESULT_BACKEND") ?? "memory://fuzz",
  transportOptions: prefix ? { global_keyprefix: prefix } : {},
  maxDeliveries: 3,
});

app.task("fuzz.good", (i: number) => i);

// Returns whatever it was given (big ints must come back as the same JSON integers).
app.task("fuzz.echo", (x: unknown) => x);

// The depth of a nested list, counted without recursion.
app.task("fuzz.depth", (x: unknown) => {
  let depth = 0;
  let node = x;
  while (Array.isArray(node)) {
    depth++;
    node = node[0];
  }
  return depth;
});

app.task("fuzz.len", (s: string) => s.length);

app.task("fuzz.cyclic", () => {
  const a: Record<string, unknown> = { name: "a" };
  a.self = a;
  return a;
});

app.task("fuzz.fail", (i: number) => {
  throw new Error(`fuzz failure ${i}`);
});

// The errback of fuzz.fail: gets the failed task's id first, then its own arguments.
app.task("fuzz.errback", (failedId: string, big: unknown) => ({ failedId, big }), {
  params: ["failedId", "big"],
});

export default app;
