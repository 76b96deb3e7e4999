// Canvas across runtimes over Redis: one workflow, some steps on a Python Celery 5 worker
// (Debian's /usr/bin/python3), some on a celeriac worker, driven from a TypeScript client.
// Skipped while the redis:// scheme is not registered in lib/connect.ts.
import assert from "node:assert/strict";
import { App, chain, chord, Consumer, signature } from "@celeriac/celeriac";
import { createBroker } from "@celeriac/celeriac/transport";

const REDIS = Deno.env.get("CELERIAC_REDIS_URL") ?? "redis://127.0.0.1:6379/0";
const REDIS_BACKEND = Deno.env.get("CELERIAC_REDIS_BACKEND_URL") ?? "redis://127.0.0.1:6379/1";
const PYDIR = new URL("./python/", import.meta.url).pathname;

async function redisRegistered(): Promise<boolean> {
  try {
    await (await createBroker(REDIS)).close();
    return true;
  } catch (error) {
    if (error instanceof TypeError && /supported schemes/.test(error.message)) return false;
    throw error;
  }
}

async function python(...args: string[]): Promise<string> {
  return await pythonWith({}, ...args);
}

async function pythonWith(env: Record<string, string>, ...args: string[]): Promise<string> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["canvas_tasks.py", ...args],
    cwd: PYDIR,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

const dbOf = (url: string) => /\/(\d+)$/.exec(url)?.[1] ?? "0";

Deno.test({
  name:
    "canvas interop: py | ts | py chain, a ts-header chord with a Python body, a failed Python chord's get()",
  ignore: !(await redisRegistered()),
  fn: async (t) => {
    const id = crypto.randomUUID();
    const prefix = `celeriac-test-${id}:`;
    const pyq = `canvas-py-${id}`;
    const tsq = `canvas-ts-${id}`;
    const worker = new Deno.Command("/usr/bin/python3", {
      args: [
        "-m",
        "celery",
        "-A",
        "canvas_tasks",
        "worker",
        "-Q",
        pyq,
        "-P",
        "solo",
        "-c",
        "1",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-n",
        `pycanvas-${id}@%h`,
        "--loglevel",
        "WARNING",
      ],
      cwd: PYDIR,
      env: {
        CELERIAC_TEST_BROKER: REDIS,
        CELERIAC_TEST_BACKEND: REDIS_BACKEND,
        CELERIAC_TEST_PREFIX: prefix,
      },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const app = new App({
      broker: REDIS,
      backend: REDIS_BACKEND,
      defaultQueue: tsq,
      transportOptions: { global_keyprefix: prefix },
    });
    const mul = app.task("tscanvas.mul", (x: number, y: number) => x * y);
    const add = app.task("tscanvas.add", (x: number, y: number) => x + y);
    const stop = new AbortController();
    const running = new Consumer(app, { pool: "inline", queues: [tsq], signal: stop.signal })
      .run();
    const py = (name: string, args: unknown[], kwargs: Record<string, unknown> = {}) =>
      signature(name, args, kwargs, { queue: pyq });
    const counter = `${prefix}tsum-runs`;
    try {
      await t.step("py_task | ts_task | py_task returns the right value", async () => {
        const r = await chain(
          py("pycanvas.add", [1, 2]),
          mul.s(10).set({ queue: tsq }),
          py("pycanvas.add", [5]),
        )
          .delay();
        assert.equal(await r.get({ timeout: 60_000 }), 35);
        assert.equal(await r.parent!.get({ timeout: 5000 }), 30);
        assert.equal(await r.parent!.parent!.get({ timeout: 5000 }), 3);
      });
      await t.step(
        "a chord with its header on celeriac and its body in Python fires once",
        async () => {
          const r = await chord(
            [add.s(1, 1), add.s(2, 2), add.s(3, 3), add.s(4, 4)].map((s) => s.set({ queue: tsq })),
            py("pycanvas.tsum", [], { counter }),
          ).delay();
          assert.equal(await r.get({ timeout: 60_000 }), 20);
          await new Promise((res) => setTimeout(res, 300));
          assert.equal(await python("get", counter, dbOf(REDIS_BACKEND)), "1");
        },
      );
      await t.step(
        "get() of a chord whose member failed on Python raises the member's error, as Python's get()",
        async () => {
          const r = await chord(
            [py("pycanvas.add", [1, 1]), py("pycanvas.boom", ["x"])],
            py("pycanvas.tsum", []),
          ).applyAsync([], {}, { app });
          await assert.rejects(() => r.get({ timeout: 60_000 }), (e: Error) => {
            assert.equal(`${e.name}('${e.message}')`, "TypeError('x')");
            return true;
          });
          await assert.rejects(() => r.get({ timeout: 5000, followParents: false }), (e: Error) => {
            assert.equal(e.name, "ChordError");
            assert.match(e.message, /^Dependency .+ raised TypeError\('x'\)$/);
            return true;
          });
          // Python's own client, the same chord on the same worker: the same two errors.
          const env = {
            CELERIAC_TEST_BROKER: REDIS,
            CELERIAC_TEST_BACKEND: REDIS_BACKEND,
            CELERIAC_TEST_PREFIX: prefix,
          };
          const [followed, own] = (await pythonWith(env, "chordfail", pyq)).split("\n");
          assert.equal(followed, "TypeError TypeError('x')");
          assert.match(own!, /^ChordError ChordError\("Dependency .+ raised TypeError\('x'\)"\)$/);
        },
      );
    } finally {
      stop.abort();
      await running;
      await app.close();
      worker.kill("SIGTERM");
      await worker.status;
      await worker.stderr.cancel().catch(() => {});
      await python("cleanup", prefix, dbOf(REDIS)).catch(() => {});
      await python("cleanup", prefix, dbOf(REDIS_BACKEND)).catch(() => {});
    }
  },
});
