// Remote control interop with Python Celery 5.2.6 over Redis: Python's `celery inspect` and
// `celery control` drive celeriac workers, and celeriac's client drives a Python worker.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { eventually, startWorker } from "./_helpers.ts";
import { celery, pythonWorker, REDIS, REDIS_BACKEND, unique } from "./_control_helpers.ts";

function redisApp(queue: string) {
  const app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("ctl.add", (x: number, y: number) => x + y);
  app.task("ctl.wait", async function (): Promise<string> {
    await new Promise((resolve) => this.signal.addEventListener("abort", resolve));
    return "stopped";
  });
  return app;
}

Deno.test("Python `celery inspect ping` and `inspect registered` list a celeriac worker and its tasks", async () => {
  const queue = unique("ctl-q");
  const host = `${unique("celeriac")}@test`;
  await using app = redisApp(queue);
  await using _w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  await eventually(async () =>
    Object.keys(await app.control.inspect({ destination: [host] }).ping().collect()).length === 1
  );
  const ping = await celery("inspect", "ping", "--timeout", "5", "-d", host, "--json");
  assert.equal(ping.code, 0, ping.stderr);
  assert.deepEqual(JSON.parse(ping.stdout), { [host]: { ok: "pong" } });
  // Without --destination too: the reply from our node is among all nodes' replies.
  const all = await celery("inspect", "ping", "--timeout", "1", "--json");
  assert.deepEqual(JSON.parse(all.stdout)[host], { ok: "pong" });
  const registered = await celery("inspect", "registered", "--timeout", "5", "-d", host, "--json");
  assert.equal(registered.code, 0, registered.stderr);
  assert.deepEqual(JSON.parse(registered.stdout), { [host]: ["ctl.add", "ctl.wait"] });
  const text = await celery("inspect", "ping", "--timeout", "5", "-d", host);
  assert.match(text.stdout, new RegExp(`->  ${host}: OK\\s+pong`));
  assert.match(text.stdout, /1 node online/);
});

Deno.test("Python `celery control terminate` stops a running celeriac task, which ends REVOKED", async () => {
  const queue = unique("ctl-q");
  const host = `${unique("celeriac")}@test`;
  await using app = redisApp(queue);
  await using w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  const r = await app.sendTask("ctl.wait");
  await eventually(() => w.consumer.requests().some((q) => q.id === r.id && q.state === "active"));
  const active = await celery("inspect", "active", "--timeout", "5", "-d", host, "--json");
  const [info] = JSON.parse(active.stdout)[host];
  assert.equal(info.id, r.id);
  assert.equal(info.name, "ctl.wait");
  // Celery 5.2.6's CLI has no `revoke --terminate`; `terminate SIGNAL ID` is its form.
  const out = await celery("control", "terminate", "SIGTERM", r.id, "--timeout", "5", "-d", host);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, new RegExp(`terminate: ${r.id}`));
  await eventually(async () => (await r.state()) === "REVOKED");
  const revoked = await celery("inspect", "revoked", "--timeout", "5", "-d", host, "--json");
  assert.deepEqual(JSON.parse(revoked.stdout)[host], [r.id]);
});

Deno.test("Python app.control.revoke(terminate=True) stops a running celeriac task", async () => {
  const queue = unique("ctl-q");
  const host = `${unique("celeriac")}@test`;
  await using app = redisApp(queue);
  await using w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  const r = await app.sendTask("ctl.wait");
  await eventually(() => w.consumer.requests().some((q) => q.id === r.id && q.state === "active"));
  const code = `
import sys
sys.path.insert(0, ".")
from control_app import app
print(app.control.revoke("${r.id}", terminate=True, destination=["${host}"], reply=True, timeout=5))
`;
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", code],
    cwd: new URL("./python/", import.meta.url).pathname,
    env: { CELERIAC_TEST_BROKER: REDIS },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.match(stdout, new RegExp(`'${host}': \\{'ok': 'terminate: ${r.id}'\\}`));
  await eventually(async () => (await r.state()) === "REVOKED");
});

Deno.test("celeriac's client pings a Python worker, sees its events, and the worker mingles our revokes", async () => {
  const queue = unique("ctl-py");
  const host = `${unique("celeriac")}@test`;
  const pyName = `${unique("py")}@${Deno.hostname()}`;
  await using app = redisApp(queue);
  // A celeriac worker holding a revoked id: the Python worker asks for it at start-up (mingle).
  await using w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  await eventually(async () =>
    Object.keys(await app.control.inspect({ destination: [host] }).ping().collect()).length === 1
  );
  const revokedId = crypto.randomUUID();
  w.consumer.revoke([revokedId]);
  const stop = new AbortController();
  const seen: string[] = [];
  const ready = Promise.withResolvers<void>();
  const watching = (async () => {
    for await (const e of app.events({ signal: stop.signal, onReady: ready.resolve })) {
      if (e.hostname === pyName) seen.push(e.type);
    }
  })();
  await ready.promise;
  await using py = pythonWorker(pyName, queue);
  try {
    await py.waitFor("ready.", 30_000);
    const replies = await app.control.inspect({ destination: [pyName], timeout: 5000 }).ping()
      .collect();
    assert.deepEqual(replies, { [pyName]: { ok: "pong" } });
    const registered = await app.control.inspect({ destination: [pyName], timeout: 5000 })
      .registered().collect();
    assert.ok((registered[pyName] as string[]).includes("py.add"));
    const revoked = await app.control.inspect({ destination: [pyName], timeout: 5000 }).revoked()
      .collect();
    assert.ok((revoked[pyName] as string[]).includes(revokedId), JSON.stringify(revoked));
    // Replies stream as they arrive: a broadcast to both nodes yields both.
    const both = await app.control.inspect({ destination: [pyName, host], timeout: 5000 }).ping()
      .toArray();
    assert.deepEqual(both.map((r) => r.hostname).sort(), [host, pyName].sort());
    await eventually(() => seen.includes("worker-heartbeat"), 10_000);
    assert.ok(seen.includes("worker-online"));
    // Python's shutdown handler raises WorkerShutdown before replying: it sends no reply.
    await app.control.shutdown({ destination: [pyName] });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const code = await Promise.race([
      py.status,
      new Promise((r) => timer = setTimeout(() => r("still running"), 15_000)),
    ]);
    clearTimeout(timer);
    assert.equal(code, 0, py.output());
  } finally {
    stop.abort();
    await watching;
    await py.stop();
  }
});
