// A Python celery worker and a celeriac worker on two queues of one Redis, each calling the
// other: celeriac's ts.call_py sends py.mul to the Python worker's queue and returns its result;
// Python's py.call_ts sends ts.add to celeriac's queue and returns its result. A TS client calls
// both and checks the values that came back across the two languages.
import assert from "node:assert/strict";
import { Consumer } from "../lib/worker/consumer.ts";
import { makeApp } from "./apps/redis_app.ts";
import { deleteByPrefix, REDIS, REDIS_BACKEND, spawnPythonWorker } from "./_redis_helpers.ts";

Deno.test("redis cross-calls: a celeriac task calls a Python task and a Python task calls a celeriac task", async () => {
  const id = crypto.randomUUID();
  const prefix = `celeriac-test-${id}:`;
  const tsQueue = `cross-ts-${id}`;
  const pyQueue = `cross-py-${id}`;
  const python = spawnPythonWorker(pyQueue, { broker: REDIS, backend: REDIS_BACKEND, prefix });
  // The worker's app and the client's app are separate App instances, as in two processes.
  const workerApp = makeApp({ broker: REDIS, backend: REDIS_BACKEND, prefix });
  const client = makeApp({ broker: REDIS, backend: REDIS_BACKEND, prefix });
  const stop = new AbortController();
  const worker = new Consumer(workerApp, {
    pool: "inline",
    queues: [tsQueue],
    signal: stop.signal,
  });
  const running = worker.run();
  try {
    // TS → celeriac worker → Python worker → back.
    const viaTs = await client.sendTask("ts.call_py", [6, 7, pyQueue], {}, { queue: tsQueue });
    // TS → Python worker → celeriac worker → back.
    const viaPy = await client.sendTask("py.call_ts", ["ts.add", [40, 2], tsQueue], {}, {
      queue: pyQueue,
    });
    assert.deepEqual(await viaTs.get({ timeout: 40_000 }), {
      from_py: { product: 42, extra: { via: "ts.call_py" }, lang: "py" },
      lang: "ts",
    });
    assert.deepEqual(await viaPy.get({ timeout: 40_000 }), {
      from_ts: { sum: 42, lang: "ts" },
      lang: "py",
    });
    assert.equal(worker.processed, 2, "ts.call_py and ts.add ran on the celeriac worker");
  } finally {
    stop.abort();
    await running;
    await workerApp.close();
    await client.close();
    const status = await python.stop("SIGTERM");
    assert.ok(status.code === 0 || status.signal === "SIGTERM", python.log());
    await deleteByPrefix(prefix);
  }
});
