// Where a bare kv:// lives: CELERIAC_KV_PATH, else next to the module that makes the App, else
// the current directory; a worker and a producer started in different folders share it.
import assert from "node:assert/strict";
import { CLI } from "./_cli_helpers.ts";
import { eventually } from "./_helpers.ts";
import denoJson from "../deno.json" with { type: "json" };
import { cleanEnv } from "./_env.ts";

const MOD = new URL("../mod.ts", import.meta.url).href;
// A clean environment (no CELERIAC_* from the runner), keeping Deno's cache and the network
// settings a cold cache needs.
const BASE: Record<string, string> = cleanEnv();

async function folder(prefix: string) {
  return await Deno.makeTempDir({ prefix: `celeriac-${prefix}-` });
}

async function run(args: string[], cwd: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { ...BASE, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("kv://: the file is next to the app module whatever the cwd; CELERIAC_KV_PATH wins; the CLI's own App uses the cwd", async () => {
  const app = await folder("app");
  const elsewhere = await folder("elsewhere");
  try {
    // What `deno add` writes, pointed at this checkout (the scope stands for JSR's own imports).
    await Deno.writeTextFile(
      `${app}/deno.json`,
      JSON.stringify({
        imports: { "@celeriac/celeriac": MOD },
        scopes: { [new URL("../", import.meta.url).href]: denoJson.imports },
      }),
    );
    await Deno.writeTextFile(
      `${app}/tasks.ts`,
      `import { App } from "@celeriac/celeriac";\nexport const app = new App();\n` +
        `export const add = app.task("tasks.add", (x: number, y: number) => x + y);\n` +
        `export default app;\n`,
    );
    await Deno.writeTextFile(
      `${app}/print.ts`,
      `import { app } from "./tasks.ts";\nconsole.log(app.conf.brokerUrl, app.conf.backendUrl);\n`,
    );
    const expected = `kv://${app}/.celeriac/celeriac.kv`;
    for (const cwd of [app, elsewhere, "/"]) {
      const out = await run(["run", "-A", `${app}/print.ts`], cwd);
      assert.equal(out.stdout.trim(), `${expected} ${expected}`, out.stderr);
    }
    const fromEnv = await run(["run", "-A", `${app}/print.ts`], elsewhere, {
      CELERIAC_KV_PATH: "shared.kv",
    });
    assert.equal(fromEnv.stdout.trim(), `kv://${elsewhere}/shared.kv kv://${elsewhere}/shared.kv`);

    // A worker started in one folder, a producer in another: one file.
    const worker = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "worker", "--app", `${app}/tasks.ts`, "-c", "1", "-P", "inline"],
      cwd: elsewhere,
      env: BASE,
      clearEnv: true,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let log = "";
    const reading = (async () => {
      for await (const chunk of worker.stderr) log += new TextDecoder().decode(chunk);
    })();
    try {
      await eventually(() => / ready\b/.test(log), 60_000);
      assert.ok(log.includes(`broker ${expected}`), log);
      const call = await run(
        [
          "run",
          "-A",
          CLI,
          "call",
          "tasks.add",
          "--args",
          "[2, 3]",
          "--app",
          `${app}/tasks.ts`,
          "--wait",
        ],
        "/",
      );
      assert.equal(call.code, 0, call.stderr);
      assert.equal(call.stdout.trim().split("\n").at(-1), "5");
    } finally {
      worker.kill("SIGTERM");
      await worker.status;
      await reading;
    }

    // No app module: the CLI's own App falls back to the current directory.
    const own = await run(["run", "-A", CLI, "queues", "-b", "kv://", "--json"], elsewhere);
    assert.equal(own.code, 0, own.stderr);
    assert.ok((await Deno.stat(`${elsewhere}/.celeriac/celeriac.kv`)).isFile);
  } finally {
    await Deno.remove(app, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});
