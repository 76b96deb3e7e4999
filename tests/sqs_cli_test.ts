// `cli.ts worker` on sqs:// (emulator: npm's fauxqs on 127.0.0.1:16500-16599): a worker idle in
// a 20 s long poll stops at once on SIGTERM; a task sent meanwhile is run.
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import { eventually } from "./_helpers.ts";
import { REDIS_BACKEND } from "./_redis_helpers.ts";
import { emulatorUrl, sqsEmulator, uniqueQueue } from "./_sqs_emulator.ts";

const emu = await sqsEmulator();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const APP = new URL("./apps/core_app.ts", import.meta.url).pathname;

Deno.test("sqs cli: a worker runs a task, then stops at once on SIGTERM during a 20 s long poll", async () => {
  const queue = uniqueQueue("cli");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "worker", "--app", APP, "-Q", queue, "-c", "1"],
    env: {
      CELERIAC_BROKER_URL: emulatorUrl(emu),
      CELERIAC_RESULT_BACKEND: REDIS_BACKEND,
      NO_COLOR: "1",
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
  })();
  await using app = new App({ broker: emulatorUrl(emu), backend: REDIS_BACKEND });
  try {
    await eventually(() => log.includes("ready"), 30_000);
    const r = await app.sendTask("tasks.add", [20, 22], {}, { queue });
    assert.equal(await r.get({ timeout: 15_000 }), 42);
    // Idle now: its long poll waits up to 20 s.
    await new Promise((r) => setTimeout(r, 1000));
    const stopping = Date.now();
    child.kill("SIGTERM");
    const status = await child.status;
    const took = Date.now() - stopping;
    assert.equal(status.code, 0, log);
    assert.ok(took < 3000, `exit took ${took} ms`);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await reading;
  }
});
