// Redis restarted in the middle of a 10,000-task run. The test starts its own `redis-server`
// on a free port with an append-only file fsynced on every write (never the shared server on
// 6379), runs a celeriac worker subprocess and a producer against it, stops the server with
// SIGTERM once a few thousand tasks are out, and starts it again on the same port and data
// directory. Every task must complete with its result stored, the worker must ride through
// (same process, started once), and a get() waiting across the outage must resume.
import assert from "node:assert/strict";
import { createClient, ErrorReply, SocketClosedUnexpectedlyError } from "redis";
import { isTransientRedisError, retryTransient } from "../lib/_redis.ts";
import { App } from "../lib/app.ts";
import { eventually } from "./_helpers.ts";
import { type Child, spawnCliWorker } from "./_redis_helpers.ts";

const TASKS = 10_000;
const RESTART_AFTER = 3_000;

function freePort(): number {
  for (let i = 0; i < 50; i++) {
    const port = 6390 + Math.floor(Math.random() * 2000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // Taken: try another.
    }
  }
  throw new Error("No free port for a private redis-server");
}

// A private redis-server with an fsync-always AOF in `dir`.
function startRedis(port: number, dir: string): Deno.ChildProcess {
  return new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--save",
      "",
      "--daemonize",
      "no",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function waitForRedis(url: string): Promise<void> {
  await eventually(async () => {
    const c = createClient({ url, socket: { reconnectStrategy: false } });
    c.on("error", () => {});
    try {
      await c.connect();
      // Answers only once the AOF is loaded (LOADING before).
      await c.get("celeriac-probe");
      return true;
    } catch {
      return false;
    } finally {
      if (c.isOpen) await c.disconnect().catch(() => {});
    }
  }, 20_000);
}

Deno.test("redis restart: 10,000 tasks survive a Redis restart mid-run; the worker rides through and a waiting get() resumes", async () => {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "celeriac-redis-" });
  const broker = `redis://127.0.0.1:${port}/0`;
  const backend = `redis://127.0.0.1:${port}/1`;
  let server = startRedis(port, dir);
  let worker: Child | undefined;
  const producer = new App({ broker, backend, transportOptions: { visibility_timeout: 5 } });
  const run = crypto.randomUUID();
  const ids = Array.from({ length: TASKS }, (_, i) => `${run}-${i}`);
  const queue = `restart-${run}`;
  try {
    await waitForRedis(broker);
    // visibility 5 s: a claim whose reply was lost in the restart comes back within seconds.
    worker = spawnCliWorker(queue, { broker, backend, prefix: "", visibility: 5 }, [
      "-c",
      "100",
    ]);
    await eventually(() => worker!.log().includes(" ready"), 30_000);
    const started = Date.now();
    // Waits for the very last task from the start: its subscription lives through the outage.
    const last = producer.asyncResult<number>(ids[TASKS - 1]!).get({ timeout: 55_000 });
    let sendErrors = 0;
    let storedAtRestart = -1;
    let restart: Promise<{ down: number; up: number }> | undefined;
    for (let i = 0; i < TASKS; i += 100) {
      await Promise.all(
        ids.slice(i, i + 100).map(async (taskId, j) => {
          try {
            await producer.sendTask("ts.square", [i + j], {}, { queue, taskId });
          } catch {
            sendErrors++;
          }
        }),
      );
      if (i + 100 >= RESTART_AFTER && !restart) {
        // Mid-run: some results are stored, most are not.
        const probe = createClient({ url: backend });
        probe.on("error", () => {});
        await probe.connect();
        // On a loaded machine the worker may not have stored anything yet: wait for the first
        // results, so the restart always falls in the middle of the run.
        const until = Date.now() + 20_000;
        while ((storedAtRestart = await probe.dbSize()) === 0 && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
        }
        await probe.disconnect();
        restart = (async () => {
          const down = Date.now();
          server.kill("SIGTERM");
          await server.status;
          server = startRedis(port, dir);
          await waitForRedis(broker);
          return { down, up: Date.now() };
        })();
      }
    }
    const sentAt = Date.now();
    const { down, up } = await restart!;
    assert.equal(await last, (TASKS - 1) ** 2);
    const lastAt = Date.now();
    // Every result is stored, with the right value.
    const check = createClient({ url: backend });
    check.on("error", () => {});
    await check.connect();
    let missing = 0;
    let wrong = 0;
    try {
      for (let i = 0; i < TASKS; i += 1000) {
        const keys = ids.slice(i, i + 1000).map((id) => `celery-task-meta-${id}`);
        let values = await check.mGet(keys);
        const until = Date.now() + 20_000;
        while (values.some((v) => v === null) && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 200));
          values = await check.mGet(keys);
        }
        values.forEach((raw, k) => {
          if (raw === null) return missing++;
          const meta = JSON.parse(raw);
          if (meta.status !== "SUCCESS" || meta.result !== (i + k) ** 2) wrong++;
        });
      }
    } finally {
      await check.disconnect();
    }
    const doneAt = Date.now();
    // deno-lint-ignore no-console -- the figures for the report
    console.log(
      `  outage ${up - down} ms (SIGTERM → new server answering); producer done in ${
        sentAt - started
      } ms with ${sendErrors} failed sends; last get() after ${
        lastAt - started
      } ms; all ${TASKS} stored after ${doneAt - started} ms`,
    );
    assert.equal(missing, 0, `${missing} results missing; send errors ${sendErrors}`);
    assert.equal(wrong, 0);
    assert.equal(sendErrors, 0, "sends during the outage wait and retry instead of failing");
    // The same worker process did it all: started once, still running.
    assert.equal(worker.log().split(" ready").length - 1, 1, worker.log());
    const status = await worker.stop("SIGTERM");
    assert.equal(status.code, 0, worker.log().slice(-3000));
    // Runs counted by the worker: a task whose claim or publish reply was lost runs again.
    const processed = Number(/stopped \{"processed":(\d+)\}/.exec(worker.log())?.[1]);
    assert.ok(processed >= TASKS, worker.log().slice(-3000));
    assert.ok(storedAtRestart > 0 && storedAtRestart < TASKS, `${storedAtRestart} at restart`);
    // deno-lint-ignore no-console -- the figures for the report
    console.log(`  ${storedAtRestart} results stored at the restart; ${processed} task runs`);
  } finally {
    await producer.close();
    await worker?.stop("SIGTERM");
    server.kill("SIGTERM");
    await server.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("redis restart: only transient failures are retried, and only until the deadline", async () => {
  assert.ok(isTransientRedisError(new ErrorReply("LOADING Redis is loading the dataset")));
  assert.ok(isTransientRedisError(new ErrorReply("EXECABORT Transaction discarded")));
  assert.ok(isTransientRedisError(new SocketClosedUnexpectedlyError()));
  assert.ok(!isTransientRedisError(new ErrorReply("WRONGTYPE Operation against a key")));
  assert.ok(!isTransientRedisError(new TypeError("bad")));
  let calls = 0;
  assert.equal(
    await retryTransient(() => {
      if (++calls < 3) throw new ErrorReply("LOADING");
      return Promise.resolve("done");
    }),
    "done",
  );
  assert.equal(calls, 3);
  calls = 0;
  await assert.rejects(
    retryTransient(() => {
      calls++;
      throw new ErrorReply("WRONGTYPE");
    }),
    /WRONGTYPE/,
  );
  assert.equal(calls, 1);
  await assert.rejects(
    retryTransient(() => Promise.reject(new ErrorReply("LOADING")), undefined, 100),
    /LOADING/,
  );
});
