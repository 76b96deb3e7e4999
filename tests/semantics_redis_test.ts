// Execution semantics over the real Redis broker and backend: a global rate limit shared by two
// `cli.ts worker` processes, a poison message dead-lettered after maxDeliveries, the backoff
// ETAs of retries, and a Python Celery client reading celeriac's RETRY and FAILURE metas.
import assert from "node:assert/strict";
import { assertRate, rateOf } from "./_rate.ts";
import { App, type AppEvent, Consumer, TaskError, WorkerLostError } from "@celeriac/celeriac";
import type { RedisBroker } from "../lib/brokers/redis.ts";
import { defineTasks } from "./apps/semantics_app.ts";
import { deleteByPrefix, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SEM_APP = new URL("./apps/semantics_app.ts", import.meta.url);

function redisApp(prefix: string) {
  const app = new App({
    broker: REDIS,
    backend: REDIS_BACKEND,
    maxDeliveries: 3,
    transportOptions: { global_keyprefix: prefix },
  });
  return { app, tasks: defineTasks(app) };
}

function fresh() {
  const id = crypto.randomUUID();
  return { id, prefix: `celeriac-test-${id}:`, queue: `sem-${id}` };
}

/** Reads a child's stderr until `pattern` shows up (or the stream ends). */
async function waitFor(stream: ReadableStream<Uint8Array>, pattern: RegExp, log: string[]) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`worker exited before ${pattern}: ${text}`);
    text += value;
  }
  log.push(text);
  // Keep draining so the child never blocks on a full pipe.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* drain */ }
    } catch { /* closed */ }
  })();
}

Deno.test("redis: two worker processes share a globalRateLimit of 10/s (measured within 10 %)", async () => {
  const { id, prefix, queue } = fresh();
  const children = ["a", "b"].map((n) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "cli.ts",
        "worker",
        "--app",
        SEM_APP.pathname,
        "-Q",
        queue,
        "-P",
        "inline",
        "-c",
        "2",
        "--prefetch-multiplier",
        "1",
        "-n",
        `${n}-${id}@test`,
      ],
      cwd: ROOT,
      env: {
        CELERIAC_BROKER_URL: REDIS,
        CELERIAC_RESULT_BACKEND: REDIS_BACKEND,
        CELERIAC_TEST_PREFIX: prefix,
      },
      stdout: "null",
      stderr: "piped",
    }).spawn()
  );
  const { app, tasks } = redisApp(prefix);
  const logs: string[] = [];
  try {
    await Promise.all(children.map((c) => waitFor(c.stderr, /ready/, logs)));
    const rs = await Promise.all(
      Array.from({ length: 31 }, () => tasks.global.applyAsync([], {}, { queue })),
    );
    const runs = await Promise.all(rs.map((r) => r.get({ timeout: 30_000 })));
    const hosts = new Set(runs.map((r) => r.host));
    assert.equal(hosts.size, 2, `both processes ran tasks: ${[...hosts]}`);
    assertRate(rateOf(runs.map((r) => r.at)), 10);
  } finally {
    for (const c of children) c.kill("SIGTERM");
    for (const c of children) await c.status;
    await app.close();
    await deleteByPrefix(prefix);
  }
});

Deno.test("redis: a poison task that kills its Web Worker is dead-lettered after maxDeliveries", async () => {
  const { prefix, queue } = fresh();
  const { app, tasks } = redisApp(prefix);
  const prerun: string[] = [];
  app.addEventListener("taskPrerun", (e) => prerun.push(e.detail.id));
  const stop = new AbortController();
  const worker = new Consumer(app, {
    pool: "workers",
    appModule: SEM_APP,
    concurrency: 1,
    queues: [queue],
    signal: stop.signal,
  });
  const running = worker.run();
  try {
    const r = await tasks.poison.applyAsync([], {}, { queue });
    await assert.rejects(() => r.get({ timeout: 30_000 }), (e: Error) => {
      assert.ok(e instanceof WorkerLostError, String(e));
      assert.match(e.message, /dead-lettered/);
      return true;
    });
    assert.equal(prerun.filter((id) => id === r.id).length, 3);
    const broker = await app.getBroker() as RedisBroker;
    const dead = await broker.deadLetters(queue);
    assert.deepEqual(dead.map((m) => m.headers.id), [r.id]);
  } finally {
    stop.abort();
    await running;
    await app.close();
    await deleteByPrefix(prefix);
  }
});

Deno.test("redis: retries are scheduled in the broker at ETAs following the backoff", async () => {
  const { prefix, queue } = fresh();
  const { app, tasks } = redisApp(prefix);
  const retries: { eta: number; at: number; retries: unknown }[] = [];
  const broker = await app.getBroker();
  const schedule = broker.schedule;
  broker.schedule = (q, message, eta, options) => {
    retries.push({ eta: eta.getTime(), at: Date.now(), retries: message.headers.retries });
    return schedule.call(broker, q, message, eta, options);
  };
  const stop = new AbortController();
  const running = new Consumer(app, { pool: "inline", queues: [queue], signal: stop.signal }).run();
  try {
    const r = await tasks.backoff.applyAsync([], {}, { queue });
    await assert.rejects(() => r.get({ timeout: 20_000 }), TaskError);
    assert.deepEqual(retries.map((x) => x.retries), [1, 2, 3]);
    retries.forEach((x, i) => {
      const countdown = x.eta - x.at;
      assert.ok(Math.abs(countdown - 100 * 2 ** i) <= 25, `retry ${i}: ${countdown} ms`);
    });
  } finally {
    broker.schedule = schedule;
    stop.abort();
    await running;
    await app.close();
    await deleteByPrefix(prefix);
  }
});

const PY_READ = `
import json, sys
from celery import Celery
app = Celery("reader", backend=sys.argv[1])
out = {}
for task_id in sys.argv[2:]:
    r = app.AsyncResult(task_id)
    exc = r.result
    out[task_id] = {
        "state": r.state,
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "is_exception": isinstance(exc, Exception),
        "is_type_error": isinstance(exc, TypeError),
        "args": list(getattr(exc, "args", [])),
    }
print(json.dumps(out))
`;

Deno.test("redis: a Python Celery client reads celeriac's RETRY and FAILURE metas as Python exceptions", async () => {
  const { prefix, queue } = fresh();
  const { app, tasks } = redisApp(prefix);
  const retried = Promise.withResolvers<void>();
  const stop = new AbortController();
  const running = new Consumer(app, { pool: "inline", queues: [queue], signal: stop.signal }).run();
  try {
    const later = await tasks.retryLater.applyAsync([], {}, { queue });
    app.addEventListener("taskRetry", (e: AppEvent<"taskRetry">) => {
      if (e.detail.id === later.id) retried.resolve();
    });
    const failed = await tasks.backoff.applyAsync([], {}, { queue });
    const ranged = await tasks.unrecoverable.applyAsync(["range"], {}, { queue });
    await assert.rejects(() => failed.get({ timeout: 20_000 }));
    await assert.rejects(() => ranged.get({ timeout: 20_000 }));
    await retried.promise;
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", PY_READ, REDIS_BACKEND, later.id, failed.id, ranged.id],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const seen = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(seen[later.id], {
      state: "RETRY",
      type: "TypeError",
      module: "builtins",
      is_exception: true,
      is_type_error: true,
      args: ["later"],
    });
    assert.deepEqual(seen[failed.id], {
      state: "FAILURE",
      type: "TypeError",
      module: "builtins",
      is_exception: true,
      is_type_error: true,
      args: ["attempt 3"],
    });
    // A JavaScript-only error type still arrives as an exception Python can raise.
    assert.equal(seen[ranged.id].state, "FAILURE");
    assert.equal(seen[ranged.id].type, "RangeError");
    assert.equal(seen[ranged.id].is_exception, true);
    assert.deepEqual(seen[ranged.id].args, ["bad input"]);
  } finally {
    stop.abort();
    await running;
    await app.close();
    await deleteByPrefix(prefix);
  }
});
