// End to end over RabbitMQ between celeriac and Python Celery 5 (Debian's python3), with the
// rpc:// and redis:// result backends.
import assert from "node:assert/strict";
import { App, Consumer } from "@celeriac/celeriac";

const AMQP = "amqp://guest:guest@127.0.0.1:5672//";
const PYTHON_DIR = new URL("./python/", import.meta.url).pathname;

async function pythonSend(
  backend: string,
  queue: string,
  name: string,
  args: unknown[],
  kwargs = {},
) {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [
      `${PYTHON_DIR}send_task.py`,
      AMQP,
      backend,
      queue,
      name,
      JSON.stringify(args),
      JSON.stringify(kwargs),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!out.success) throw new Error(`python failed: ${decoder.decode(out.stderr)}`);
  return JSON.parse(decoder.decode(out.stdout).trim().split("\n").at(-1)!);
}

async function dropQueue(app: App, queue: string) {
  await (await app.getBroker()).purge(queue).catch(() => {});
}

for (const backend of ["rpc://", "redis://127.0.0.1:6379/1"]) {
  Deno.test(`amqp interop: a Python client calls a celeriac task (${backend} results)`, async () => {
    const queue = `amqp-interop-${crypto.randomUUID()}`;
    const app = new App({ broker: AMQP, backend });
    app.task("interop.amqp.add", (x: number, y: number, extra?: Record<string, unknown>) => ({
      sum: x + y,
      extra: extra ?? null,
      lang: "ts",
    }));
    const stop = new AbortController();
    const running = new Consumer(app, { pool: "inline", queues: [queue], signal: stop.signal })
      .run();
    try {
      const reply = await pythonSend(backend, queue, "interop.amqp.add", [2], {
        y: 40,
        note: "py",
      });
      assert.equal(reply.state, "SUCCESS");
      assert.deepEqual(reply.result, { sum: 42, extra: { note: "py" }, lang: "ts" });
    } finally {
      stop.abort();
      await running;
      await dropQueue(app, queue);
      await app.close();
    }
  });

  Deno.test(`amqp interop: celeriac calls a task run by a Python worker (${backend} results)`, async () => {
    const id = crypto.randomUUID();
    const queue = `amqp-interop-py-${id}`;
    const child = new Deno.Command("/usr/bin/python3", {
      args: [
        "-m",
        "celery",
        "-A",
        "amqp_tasks",
        "worker",
        "-Q",
        queue,
        "-P",
        "solo",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-n",
        `py-${id}@%h`,
        "--loglevel",
        "WARNING",
      ],
      cwd: PYTHON_DIR,
      env: { CELERIAC_TEST_BROKER: AMQP, CELERIAC_TEST_BACKEND: backend },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const app = new App({ broker: AMQP, backend });
    try {
      const r = await app.sendTask("py.amqp.add", [40], { y: 2 }, { queue });
      assert.deepEqual(await r.get({ timeout: 30_000 }), { sum: 42, lang: "py" });
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await child.stderr.cancel().catch(() => {});
      await dropQueue(app, queue);
      await app.close();
    }
  });
}
