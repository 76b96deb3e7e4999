// replace() across runtimes over Redis: a Python Celery client calls a celeriac task that
// replaces itself with a chain of one Python task (run by a Python Celery 5 worker,
// Debian's /usr/bin/python3) and one celeriac task; the client, waiting on the replaced id,
// gets the chain's result.
import assert from "node:assert/strict";
import { App, chain, Consumer, signature } from "@celeriac/celeriac";
import { deleteByPrefix, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

const PYDIR = new URL("./python/", import.meta.url).pathname;

Deno.test("replace interop: a Python client gets the result of a celeriac task replaced by a py | ts chain", async () => {
  const id = crypto.randomUUID();
  const prefix = `celeriac-replace-interop-${id}:`;
  const pyq = `replace-py-${id}`;
  const tsq = `replace-ts-${id}`;
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
      `pyreplace-${id}@%h`,
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
  const mul = app.task("tsreplace.mul", (x: number, y: number) => x * y);
  const ran: string[] = [];
  app.task("tsreplace.to_mixed", function (x: number, queue: string) {
    ran.push(this.id);
    return this.replace(
      chain(signature("pycanvas.add", [x, 1], {}, { queue }), mul.s(10).set({ queue: tsq })),
    );
  });
  const stop = new AbortController();
  const running = new Consumer(app, { pool: "inline", queues: [tsq], signal: stop.signal }).run();
  try {
    const calls = [{ name: "tsreplace.to_mixed", args: [4, pyq], queue: tsq }];
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["replace_client.py", REDIS, REDIS_BACKEND, prefix, JSON.stringify(calls)],
      cwd: PYDIR,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    const [result] = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    // (4 + 1) in Python, then * 10 in celeriac, under the id the Python client waited on.
    assert.equal(result.result, 50);
    assert.equal(result.state, "SUCCESS");
    assert.deepEqual(ran, [result.id]);
  } finally {
    stop.abort();
    await running;
    await app.close();
    worker.kill("SIGTERM");
    await worker.status;
    await worker.stderr.cancel().catch(() => {});
    await deleteByPrefix(prefix);
  }
});
