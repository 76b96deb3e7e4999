// The inline pool driven through run(): tasks on this isolate, uncaught async errors assigned
// to their task, terminates through the run's signal, and time limits past 2^31 ms.
import assert from "node:assert/strict";
import app, { aborts, runRequest } from "./apps/pool_app.ts";
import { InlinePool } from "../lib/worker/inline_pool.ts";
import type { Outcome } from "../lib/worker/outcome.ts";

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function value(outcome: Outcome): unknown {
  assert.equal(outcome.kind, "success", JSON.stringify(outcome));
  return (outcome as Extract<Outcome, { kind: "success" }>).value;
}

Deno.test("inline pool: an unhandled rejection from a task's timer fails that task, not the process", async () => {
  await using pool = new InlinePool(app, 4);
  await pool.start();
  const thrower = pool.run(runRequest("pool.async_throw", ["thrown in a timer"]));
  const neighbour = pool.run(runRequest("pool.echo", ["neighbour", 400]));
  const failed = await within(thrower, 5_000, "thrower");
  assert.equal(failed.kind, "failure", JSON.stringify(failed));
  assert.equal(
    (failed as Extract<Outcome, { kind: "failure" }>).error.message,
    "thrown in a timer",
  );
  // The rejection went to its own task only: the neighbour runs on and succeeds.
  assert.equal(value(await within(neighbour, 5_000, "neighbour")), "neighbour");
  assert.equal(value(await pool.run(runRequest("pool.echo", ["after", 0]))), "after");
});

Deno.test("inline pool: a synchronous throw in a timer is given to the only running task", async () => {
  await using pool = new InlinePool(app, 2);
  await pool.start();
  const run = pool.run(runRequest("pool.hang", []));
  setTimeout(() => {
    throw new Error("thrown synchronously in a timer");
  }, 20);
  const failed = await within(run, 5_000, "hang");
  assert.equal(failed.kind, "failure", JSON.stringify(failed));
  assert.match(
    (failed as Extract<Outcome, { kind: "failure" }>).error.message,
    /thrown synchronously/,
  );
});

Deno.test("inline pool: aborting a run's signal ends it lost at once and aborts the task's signal", async () => {
  await using pool = new InlinePool(app, 2);
  const stop = new AbortController();
  aborts.length = 0;
  const victim = pool.run(runRequest("pool.hang", []), { signal: stop.signal });
  const neighbour = pool.run(runRequest("pool.echo", ["n", 200]));
  await new Promise((r) => setTimeout(r, 20));
  stop.abort();
  const lost = await within(victim, 1_000, "victim");
  assert.equal(lost.kind, "lost", JSON.stringify(lost));
  assert.deepEqual(aborts, ["TaskRevokedError"]);
  assert.equal(value(await neighbour), "n");
});

Deno.test("inline pool: runs past capacity wait their turn, first in first out", async () => {
  await using pool = new InlinePool(app, 1);
  const order: string[] = [];
  const runs = ["a", "b", "c"].map((label) =>
    pool.run(runRequest("pool.echo", [label, 30])).then((o) => order.push(value(o) as string))
  );
  assert.equal(pool.waiting, 2);
  await within(Promise.all(runs), 5_000, "queue");
  assert.deepEqual(order, ["a", "b", "c"]);
});

Deno.test("inline pool: the hard limit still stops an async task", async () => {
  await using pool = new InlinePool(app, 1);
  const outcome = await within(
    pool.run(runRequest("pool.hang", []), { hardLimit: 0.1 }),
    5_000,
    "hard limit",
  );
  assert.deepEqual(outcome, { kind: "timeout", seconds: 0.1 });
});

Deno.test("inline pool: a hard time limit of 2^31 ms or more does not fire at once", async () => {
  await using pool = new InlinePool(app, 1);
  const huge = 2 ** 31 / 1000 + 1;
  const t0 = Date.now();
  const outcome = await pool.run(runRequest("pool.where", [200]), {
    hardLimit: huge,
    softLimit: huge,
  });
  assert.ok(value(outcome));
  assert.ok(Date.now() - t0 >= 190, `ended after ${Date.now() - t0} ms`);
});

Deno.test("inline pool: close() ends running and waiting runs lost and is idempotent", async () => {
  const pool = new InlinePool(app, 1);
  const running = pool.run(runRequest("pool.hang", []));
  const waiting = pool.run(runRequest("pool.echo", ["w", 0]));
  await pool.close();
  await pool.close();
  assert.equal((await running).kind, "lost");
  assert.equal((await waiting).kind, "lost");
  assert.equal((await pool.run(runRequest("pool.echo", ["x", 0]))).kind, "lost");
});
