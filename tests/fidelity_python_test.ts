// Celery fidelity with Debian's Python Celery 5.2.6 over Redis (issue 15): Flower's integer
// flags, mingle's monotonic stamps, ETA tasks from celeriac clients on Python workers,
// `inspect scheduled` of broker-held ETAs, and errors as Python reads them.
import assert from "node:assert/strict";
import { App, TaskError } from "@celeriac/celeriac";
import { eventually, startWorker } from "./_helpers.ts";
import {
  celery,
  PYTHON_DIR,
  pythonWorker,
  REDIS,
  REDIS_BACKEND,
  unique,
} from "./_control_helpers.ts";

class OutOfStock extends Error {
  static excModule = "shop_errors";
  override name = "OutOfStock";
}

function redisApp(queue: string) {
  const app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("fid.add", (x: number, y: number) => x + y);
  app.task("fid.wait", async function (): Promise<string> {
    await new Promise((resolve) => this.signal.addEventListener("abort", resolve));
    return "stopped";
  });
  app.task("fid.stock", () => {
    throw new OutOfStock("no more apples");
  });
  app.task("fid.value", () => {
    throw new TaskError("ValueError", "builtins", [3]);
  });
  return app;
}

async function python(code: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", `import sys\nsys.path.insert(0, ".")\n${code}`],
    cwd: PYTHON_DIR,
    env: { CELERIAC_TEST_BROKER: REDIS, CELERIAC_TEST_BACKEND: REDIS_BACKEND, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr) + stdout);
  return stdout;
}

Deno.test("Flower's revoke(terminate=1) (an integer) stops a running celeriac task", async () => {
  const queue = unique("fid-q");
  const host = `${unique("celeriac")}@test`;
  await using app = redisApp(queue);
  await using w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  const r = await app.sendTask("fid.wait");
  await eventually(() => w.consumer.requests().some((q) => q.id === r.id && q.state === "active"));
  const out = await python(`
from control_app import app
print(app.control.revoke("${r.id}", terminate=1, destination=["${host}"], reply=True, timeout=5))
`);
  assert.match(out, new RegExp(`'ok': 'terminate: ${r.id}'`));
  await eventually(async () => (await r.state()) === "REVOKED");
});

Deno.test("mingle: revoked ids cross between Python's monotonic stamps and celeriac both ways", async () => {
  const queue = unique("fid-m");
  const host = `${unique("celeriac")}@test`;
  const pyName = `${unique("py")}@${Deno.hostname()}`;
  await using app = redisApp(queue);
  const fromCeleriac = crypto.randomUUID();
  const fromPython = crypto.randomUUID();
  // A celeriac worker holding a revoked id that the Python worker mingles at start-up.
  await using first = startWorker(app, {
    pool: "inline",
    hostname: `${unique("first")}@test`,
    heartbeatInterval: 0,
  });
  await eventually(async () =>
    Object.keys(
      await app.control.inspect({ destination: [first.consumer.hostname] }).ping().collect(),
    ).length === 1
  );
  first.consumer.revoke([fromCeleriac]);
  await using py = pythonWorker(pyName, queue);
  await py.waitFor("ready.", 30_000);
  const revoke = await celery("control", "revoke", fromPython, "--timeout", "5", "-d", pyName);
  assert.equal(revoke.code, 0, revoke.stderr);
  // Python stamps with time.monotonic(): our id must be on Python's clock, not the epoch.
  const hello = await app.control.inspect({ destination: [pyName], timeout: 5000 })
    .hello("someone@test", {}).collect();
  const stamps = (hello[pyName] as { revoked: Record<string, [number, string]> }).revoked;
  const ours = stamps[fromCeleriac];
  assert.ok(ours, JSON.stringify(hello));
  const pyNow = Number(await python("import time; print(time.monotonic())"));
  assert.ok(ours[0] < 1e9 && ours[0] <= pyNow + 2 && ours[0] > pyNow - 120, `${ours[0]} ${pyNow}`);
  // A new celeriac worker mingles Python's monotonic stamp and keeps the id.
  await using second = startWorker(app, {
    pool: "inline",
    hostname: host,
    heartbeatInterval: 0,
    mingleTimeout: 2000,
  });
  await eventually(() => second.consumer.revokedSet.has(fromPython), 15_000);
  assert.ok(second.consumer.revokedSet.has(fromCeleriac));
  await py.stop();
});

Deno.test("a countdown sent by a celeriac client runs on a Python-only fleet", async () => {
  const queue = unique("fid-eta");
  const pyName = `${unique("py")}@${Deno.hostname()}`;
  await using app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  await using py = pythonWorker(pyName, queue);
  await py.waitFor("ready.", 30_000);
  const sent = Date.now();
  const r = await app.sendTask("py.add", [2, 3], {}, { countdown: 2 });
  assert.equal(await r.get({ timeout: 30_000 }), 5);
  assert.ok(Date.now() - sent >= 1900, "ran before its countdown");
  await py.stop();
});

Deno.test("Python `celery inspect scheduled` lists the broker-held ETA tasks of a celeriac worker", async () => {
  const queue = unique("fid-s");
  const host = `${unique("celeriac")}@test`;
  await using app = redisApp(queue);
  await using w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  const r = await app.sendTask("fid.add", [1, 2], {}, { countdown: 600 });
  // The worker takes it from the queue and hands the far ETA back to the broker.
  await eventually(async () => {
    const s = await app.control.inspect({ destination: [host] }).scheduled().collect();
    return JSON.stringify(s).includes(r.id);
  }, 15_000);
  assert.ok(!w.consumer.requests().some((q) => q.id === r.id), "held in memory, not by the broker");
  const out = await celery("inspect", "scheduled", "--timeout", "5", "-d", host, "--json");
  assert.equal(out.code, 0, out.stderr);
  const [item] = JSON.parse(out.stdout)[host];
  assert.equal(item.request.id, r.id);
  assert.equal(item.request.name, "fid.add");
  assert.deepEqual(item.request.args, [1, 2]);
  assert.equal(item.request.delivery_info.routing_key, queue);
  const eta = Date.parse(item.eta);
  assert.ok(Math.abs(eta - (Date.now() + 600_000)) < 30_000, item.eta);
  assert.match(item.eta, /\+00:00$/);
  await r.revoke();
});

Deno.test("Python reads celeriac's errors: exc_module from the class, typed args, Python-layout tracebacks", async () => {
  const queue = unique("fid-e");
  const host = `${unique("celeriac")}@test`;
  await using app = redisApp(queue);
  await using _w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
  const stock = await app.sendTask("fid.stock");
  const value = await app.sendTask("fid.value");
  await eventually(
    async () => (await stock.state()) === "FAILURE" && (await value.state()) === "FAILURE",
    15_000,
  );
  const out = await python(`
import types
shop = types.ModuleType("shop_errors")
class OutOfStock(Exception):
    pass
shop.OutOfStock = OutOfStock
sys.modules["shop_errors"] = shop
from control_app import app
for tid in ["${stock.id}", "${value.id}"]:
    r = app.AsyncResult(tid)
    exc = r.result
    print(type(exc) in (OutOfStock, ValueError), repr(exc))
    lines = r.traceback.rstrip("\\n").split("\\n")
    print(lines[0])
    print(lines[-1])
    print(any(l.startswith('  File "') for l in lines[1:-1]))
`);
  assert.deepEqual(out.trim().split("\n"), [
    "True OutOfStock('no more apples')",
    "Traceback (most recent call last):",
    "shop_errors.OutOfStock: no more apples",
    "True",
    "True ValueError(3)",
    "Traceback (most recent call last):",
    "ValueError: 3",
    "True",
  ]);
});
