// End to end over Redis between celeriac and Python Celery 5 (Debian's python3): a Python
// client calls a celeriac task, celeriac calls a task run by a real `celery worker`.
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import { Consumer } from "../lib/worker/consumer.ts";
import { deleteByPrefix, python, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

Deno.test("redis interop: a Python client calls a celeriac task, kwargs included, and reads its result", async () => {
  const id = crypto.randomUUID();
  const prefix = `celeriac-test-${id}:`;
  const queue = `interop-${id}`;
  const app = new App({
    broker: REDIS,
    backend: REDIS_BACKEND,
    transportOptions: { global_keyprefix: prefix },
  });
  app.task("interop.add", (x: number, y: number) => ({ sum: x + y, lang: "ts" }));
  app.task(
    "interop.opts",
    (x: number, options: Record<string, unknown> = {}) => ({ x, options }),
  );
  const stop = new AbortController();
  const worker = new Consumer(app, { pool: "inline", queues: [queue], signal: stop.signal });
  const running = worker.run();
  try {
    const add = await python(
      "call",
      REDIS,
      prefix,
      REDIS_BACKEND,
      queue,
      "interop.add",
      "[2]",
      '{"y": 40}',
    );
    assert.deepEqual(add.result, { sum: 42, lang: "ts" });
    assert.equal(add.state, "SUCCESS");
    const opts = await python(
      "call",
      REDIS,
      prefix,
      REDIS_BACKEND,
      queue,
      "interop.opts",
      "[7]",
      '{"flag": true, "name": "é"}',
    );
    assert.deepEqual(opts.result, { x: 7, options: { flag: true, name: "é" } });
  } finally {
    stop.abort();
    await running;
    await app.close();
    await deleteByPrefix(prefix);
  }
});

Deno.test("redis interop: celeriac calls a task run by a Python celery worker and reads its result", async () => {
  const id = crypto.randomUUID();
  const prefix = `celeriac-test-${id}:`;
  const queue = `interop-py-${id}`;
  const dir = new URL("./python/", import.meta.url).pathname;
  const child = new Deno.Command("/usr/bin/python3", {
    args: [
      "-m",
      "celery",
      "-A",
      "pytasks",
      "worker",
      "-Q",
      queue,
      "-P",
      "solo",
      "-c",
      "1",
      "--without-heartbeat",
      "--without-gossip",
      "--without-mingle",
      "-n",
      `py-${id}@%h`,
      "--loglevel",
      "WARNING",
    ],
    cwd: dir,
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
    transportOptions: { global_keyprefix: prefix },
  });
  try {
    const result = await app.sendTask("py.mul", [6], { y: 7, note: "from ts" }, { queue });
    const value = await result.get({ timeout: 30_000 });
    assert.deepEqual(value, { product: 42, extra: { note: "from ts" }, lang: "py" });
  } finally {
    await app.close();
    child.kill("SIGTERM");
    const status = await child.status;
    await child.stderr.cancel().catch(() => {});
    assert.ok(status.signal === "SIGTERM" || status.success || status.code !== undefined);
    await deleteByPrefix(prefix);
  }
});
