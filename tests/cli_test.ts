// The CLI as a user runs it: a worker subprocess with real OS signals, over Redis so that the
// test process and the worker share the broker.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { eventually } from "./_helpers.ts";
import { ownLines } from "./_stderr.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const APP = new URL("./apps/core_app.ts", import.meta.url).pathname;
const BROKER = "redis://127.0.0.1:6379/0";
const BACKEND = "redis://127.0.0.1:6379/1";

function spawnWorker(queue: string, extra: string[] = []) {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "worker", "--app", APP, "-Q", queue, "-c", "1", ...extra],
    env: { CELERIAC_BROKER_URL: BROKER, CELERIAC_RESULT_BACKEND: BACKEND, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
  let log = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) log += decoder.decode(chunk);
  })();
  return {
    child,
    log: () => log,
    async finish() {
      const status = await child.status;
      await reading;
      await child.stdout.cancel();
      return status;
    },
  };
}

async function runCli(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("cli: --help works for every command and a bad flag prints one line and exits 2", async () => {
  for (const command of ["worker", "call", "result"]) {
    const help = await runCli([command, "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: /);
  }
  const bad = await runCli(["worker", "--app", APP, "--bogus"]);
  assert.equal(bad.code, 2);
  assert.equal(ownLines(bad.stderr).length, 1, bad.stderr);
  assert.match(bad.stderr, /bogus/);
  const unknown = await runCli(["frobnicate"]);
  assert.equal(unknown.code, 2);
  const badPool = await runCli(["worker", "--app", APP, "--pool", "threads"]);
  assert.equal(badPool.code, 2);
  assert.match(badPool.stderr, /--pool/);
});

Deno.test("cli: SIGTERM lets the running task finish, requeues the prefetched one, exits 0", async () => {
  const queue = `cli-warm-${crypto.randomUUID()}`;
  await using app = new App({ broker: BROKER, backend: BACKEND });
  const worker = spawnWorker(queue);
  try {
    await eventually(() => worker.log().includes("ready"), 30_000);
    const running = await app.sendTask("tasks.busy", [1500], {}, { queue });
    const waiting = await app.sendTask("tasks.add", [1, 2], {}, { queue });
    await eventually(async () => (await running.state()) === "RUNNING", 10_000);
    worker.child.kill("SIGTERM");
    const status = await worker.finish();
    assert.equal(status.code, 0, worker.log());
    assert.equal(await running.get({ timeout: 1000 }), "done after 1500 ms");
    assert.equal(await waiting.state(), "PENDING");
    // The requeued message is still there: a new worker runs it.
    const again = spawnWorker(queue);
    try {
      assert.equal(await waiting.get({ timeout: 30_000 }), 3);
    } finally {
      again.child.kill("SIGTERM");
      await again.finish();
    }
  } finally {
    try {
      worker.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await (await app.getBroker()).purge(queue);
  }
});

Deno.test("cli: two SIGINTs stop the worker at once with a non-zero exit", async () => {
  const queue = `cli-cold-${crypto.randomUUID()}`;
  await using app = new App({ broker: BROKER, backend: BACKEND });
  const worker = spawnWorker(queue);
  try {
    await eventually(() => worker.log().includes("ready"), 30_000);
    const running = await app.sendTask("tasks.busy", [60_000], {}, { queue });
    await eventually(async () => (await running.state()) === "RUNNING", 10_000);
    const started = Date.now();
    worker.child.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 200));
    worker.child.kill("SIGINT");
    const status = await worker.finish();
    assert.notEqual(status.code, 0);
    assert.ok(Date.now() - started < 10_000, "cold shutdown took too long");
    assert.match(worker.log(), /cold shutdown/);
  } finally {
    try {
      worker.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await (await app.getBroker()).purge(queue);
  }
});

Deno.test("cli: call sends a task by name and result prints its stored result", async () => {
  const queue = `cli-call-${crypto.randomUUID()}`;
  const worker = spawnWorker(queue, ["--pool", "inline"]);
  try {
    await eventually(() => worker.log().includes("ready"), 30_000);
    const sent = await runCli([
      "call",
      "tasks.add",
      "--args",
      "[2, 3]",
      "--queue",
      queue,
      "--broker",
      BROKER,
      "--backend",
      BACKEND,
      "--wait",
      "--timeout",
      "20000",
    ]);
    assert.equal(sent.code, 0, sent.stderr);
    const [id, value] = sent.stdout.trim().split("\n");
    assert.match(id!, /^[0-9a-f-]{36}$/);
    assert.equal(value, "5");
    const shown = await runCli(["result", id!, "--backend", BACKEND]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stdout.trim(), "SUCCESS 5");
    const bad = await runCli(["call", "tasks.add", "--args", "{not json"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--args is not valid JSON/);
  } finally {
    worker.child.kill("SIGTERM");
    await worker.finish();
  }
});
