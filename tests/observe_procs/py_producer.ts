// A producer process of tests/observe_test.ts: sends py.trace_context to a Python worker's
// queue (CELERIAC_TEST_PY_QUEUE) and prints its result: the trace context Python received.
// deno-lint-ignore-file no-console -- a test subprocess: one JSON line on stdout
import { app } from "../apps/observe_app.ts";

const queue = Deno.env.get("CELERIAC_TEST_PY_QUEUE")!;
const r = await app.sendTask("py.trace_context", [], {}, { queue });
console.log(JSON.stringify({ id: r.id, seen: await r.get({ timeout: 20_000 }) }));
await app.close();
