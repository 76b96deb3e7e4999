// The core (App, Consumer, cli worker) on the embedded default: Deno KV in a local file.
import assert from "node:assert/strict";
import { join } from "node:path";
import { App, Consumer, TaskRevokedError } from "@celeriac/celeriac";
import { eventually } from "./_helpers.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const APP = new URL("./apps/kv_late_app.ts", import.meta.url).pathname;
const dir = Deno.makeTempDirSync({ prefix: "celeriac-kv-app-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

function freshUrl() {
  return `kv://${join(dir, `${crypto.randomUUID()}.kv`)}`;
}

Deno.test("kv: an App and an inline Consumer run tasks, revoke and countdown", async () => {
  const url = freshUrl();
  await using app = new App({ broker: url, backend: url });
  const add = app.task("add", (x: number, y: number) => x + y);
  let ran = false;
  const never = app.task("never", () => ran = true);
  const now = app.task("now", () => Date.now());
  const controller = new AbortController();
  const worker = new Consumer(app, { pool: "inline", concurrency: 20, signal: controller.signal });
  const running = worker.run();
  try {
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => add.delay(i, 1)));
    const values = await Promise.all(rs.map((r) => r.get({ timeout: 20_000 })));
    assert.deepEqual(values, Array.from({ length: 200 }, (_, i) => i + 1));
    // Revoke goes through broadcast() on KV.
    await new Promise((r) => setTimeout(r, 200));
    const revoked = await never.applyAsync([], {}, { countdown: 1 });
    await revoked.revoke();
    await assert.rejects(() => revoked.get({ timeout: 5000 }), TaskRevokedError);
    assert.equal(ran, false);
    const sent = Date.now();
    const later = await now.applyAsync([], {}, { countdown: 0.5 });
    const ranAt = await later.get({ timeout: 5000 }) as number;
    assert.ok(ranAt - sent >= 480 && ranAt - sent < 1500, `ran after ${ranAt - sent} ms`);
  } finally {
    controller.abort();
    await running;
  }
});

function spawnWorker(url: string, queue: string, pool = ["-c", "2", "--pool", "inline"]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "worker", "--app", APP, "-Q", queue, ...pool],
    env: { CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) log += decoder.decode(chunk);
  })();
  return {
    child,
    log: () => log,
    kill(signal: Deno.Signal) {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
    },
    async finish() {
      const status = await child.status;
      await reading;
      return status;
    },
  };
}

// Kills the first worker (if still running) and stops the later ones, which must exit 0.
async function stopWorkers(
  first: ReturnType<typeof spawnWorker>,
  later: ReturnType<typeof spawnWorker>[],
): Promise<void> {
  first.kill("SIGKILL");
  await first.finish();
  for (const w of later) {
    w.kill("SIGTERM");
    assert.equal((await w.finish()).code, 0, w.log());
  }
}

Deno.test("kv: a cli worker killed with SIGKILL mid-task; another worker finishes its task after the lease", async () => {
  // A short lease, so the dead worker's message comes back quickly.
  const url = `${freshUrl()}?leaseTime=1500&maintenanceInterval=200`;
  const queue = `kv-cli-${crypto.randomUUID()}`;
  await using app = new App({ broker: url, backend: url });
  const first = spawnWorker(url, queue);
  const later: ReturnType<typeof spawnWorker>[] = [];
  try {
    await eventually(() => first.log().includes("ready"), 30_000);
    const r = await app.sendTask("tasks.busy", [1000], {}, { queue });
    const quick = await app.sendTask("tasks.add", [2, 3], {}, { queue });
    assert.equal(await quick.get({ timeout: 10_000 }), 5);
    await eventually(async () => (await r.state()) === "RUNNING", 10_000);
    first.kill("SIGKILL");
    await first.finish();
    later.push(spawnWorker(url, queue));
    assert.equal(await r.get({ timeout: 30_000 }), "done after 1000 ms");
  } finally {
    await stopWorkers(first, later);
  }
});

Deno.test("kv: with --lookahead 3, SIGKILL loses none of the early-ack tasks sent ahead (acked only when their Web Worker starts them)", async () => {
  const url = `${freshUrl()}?leaseTime=1500&maintenanceInterval=200`;
  const queue = `kv-cli-${crypto.randomUUID()}`;
  await using app = new App({ broker: url, backend: url });
  const first = spawnWorker(url, queue, ["-c", "1", "--pool", "workers", "--lookahead", "3"]);
  const later: ReturnType<typeof spawnWorker>[] = [];
  try {
    await eventually(() => first.log().includes("ready"), 30_000);
    // The one Web Worker runs the first busy task; the three adds are sent ahead behind it.
    const running = await app.sendTask("tasks.early_busy", [60_000], {}, { queue });
    await eventually(async () => (await running.state()) === "RUNNING", 20_000);
    const ahead = [];
    for (let i = 0; i < 3; i++) {
      ahead.push(await app.sendTask("tasks.early_add", [i, 1], {}, { queue }));
    }
    // Sent ahead, they show as active.
    await eventually(async () => {
      const replies = await app.control.inspect({ timeout: 1000 }).active().collect();
      const active = Object.values(replies)[0] as unknown[] | undefined;
      return active?.length === 4;
    }, 20_000);
    first.kill("SIGKILL");
    await first.finish();
    later.push(spawnWorker(url, queue));
    const values = await Promise.all(ahead.map((r) => r.get({ timeout: 30_000 })));
    assert.deepEqual(values, [1, 2, 3]);
    // The task that had started was acked when it started (early ack): it is not run again.
    assert.equal(await running.state(), "RUNNING");
  } finally {
    await stopWorkers(first, later);
  }
});
