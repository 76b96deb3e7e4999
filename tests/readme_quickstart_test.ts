// The README's quick start, run as a newcomer runs it: from an empty folder outside this
// repository, with the files and the command lines the README shows. Only the JSR specifier is
// swapped for this checkout: `jsr:@celeriac/celeriac/cli` becomes the bare
// `@celeriac/celeriac/cli`, which the folder's deno.json (what `deno add` writes, pointed at
// the checkout) maps to cli.ts. The main module is then resolved through that deno.json, as a
// JSR one is, so this repository's own deno.json (its "unstable" list) does not apply.
// Then the same lines again with the exact flags of the README's permission table.
import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { eventually } from "./_helpers.ts";
import { ownLines } from "./_stderr.ts";
import { cleanEnv } from "./_env.ts";

const ROOT = new URL("../", import.meta.url);
const README = await Deno.readTextFile(new URL("README.md", ROOT));

function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README has no '## ${title}'`);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

function blocks(text: string, lang: string): string[] {
  return [...text.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1]!);
}

const quick = section("Quick start");
const tasksTs = blocks(quick, "ts").find((b) => b.includes("new App("));
const producerTs = blocks(quick, "ts").find((b) => b.includes('from "./tasks.ts"'));
const marker = quick.indexOf("<!-- quickstart");
const commands = blocks(quick.slice(marker), "sh")[0]!.trim().split("\n");

// The permission table: process -> flags.
const table = new Map(
  [...quick.matchAll(/^\| (.+?) +\| `([^`|]+)` +\|$/gm)].map((m) => [m[1]!.trim(), m[2]!]),
);

async function emptyFolder() {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-quickstart-" });
  assert.ok(!dir.startsWith(new URL(".", ROOT).pathname), "the folder is outside the repository");
  const root = new URL(".", ROOT).pathname;
  // What `deno add jsr:@celeriac/celeriac` writes, pointed at this checkout; the scope gives the
  // package its own imports, as JSR does.
  await Deno.writeTextFile(
    `${dir}/deno.json`,
    JSON.stringify({
      imports: {
        "@celeriac/celeriac": `${root}mod.ts`,
        "@celeriac/celeriac/cli": `${root}cli.ts`,
      },
      scopes: { [root]: denoJson.imports },
    }),
  );
  await Deno.writeTextFile(`${dir}/tasks.ts`, tasksTs!);
  await Deno.writeTextFile(`${dir}/producer.ts`, producerTs!);
  return dir;
}

function shell(line: string, cwd: string) {
  const local = line.replaceAll("jsr:@celeriac/celeriac/cli", "@celeriac/celeriac/cli");
  const path = `${Deno.execPath().replace(/\/[^/]*$/, "")}:${Deno.env.get("PATH") ?? ""}`;
  return new Deno.Command("sh", {
    // exec: signals reach deno itself.
    args: ["-c", `exec ${local}`],
    cwd,
    // A clean environment: no CELERIAC_* variables from the test runner.
    clearEnv: true,
    env: cleanEnv({ PATH: path }),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function run(line: string, cwd: string) {
  const out = await shell(line, cwd).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

async function quickStart(dir: string, flags?: (line: string) => string) {
  const lines = commands.map((line) => flags ? flags(line) : line);
  const [workerLine, callLine, producerLine] = lines;
  assert.match(workerLine!, / worker /);
  const worker = shell(workerLine!, dir).spawn();
  let log = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of worker.stderr) log += decoder.decode(chunk);
  })();
  let exited = false;
  worker.status.then(() => exited = true);
  try {
    await eventually(() => / ready\b/.test(log) || exited, 60_000);
    assert.match(log, / ready\b/, log);
    // Every process logs where the KV file is: the app module's folder.
    assert.match(log, new RegExp(`broker kv://${dir}/\\.celeriac/celeriac\\.kv`), log);
    const call = await run(callLine!, dir);
    assert.equal(call.code, 0, call.stderr);
    assert.equal(call.stdout.trim().split("\n").at(-1), "4", call.stdout);
    const producer = await run(producerLine!, dir);
    assert.equal(producer.code, 0, producer.stderr);
    assert.equal(producer.stdout.trim(), "4");
  } finally {
    worker.kill("SIGTERM");
    const status = await worker.status;
    await reading;
    await worker.stdout.cancel();
    assert.equal(status.code, 0, log);
  }
  return log;
}

Deno.test("README quick start: from an empty folder, exactly as written", async () => {
  assert.ok(tasksTs && producerTs, "the quick start shows tasks.ts and producer.ts");
  assert.equal(commands.length, 3, commands.join("\n"));
  const dir = await emptyFolder();
  try {
    await quickStart(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("README permissions: the table's flags are enough for the worker, a producer and beat", async () => {
  const worker = table.get("`cli worker`");
  const beat = table.get("`cli beat`");
  const producer = [...table].find(([k]) => k.includes("producer"))?.[1];
  assert.ok(worker && beat && producer, [...table].join("\n"));
  const dir = await emptyFolder();
  try {
    // The quick start's lines with `-A --unstable-kv` replaced by the table's flags.
    await quickStart(dir, (line) => {
      assert.match(line, /^deno run -A --unstable-kv /);
      const flags = / worker /.test(line) ? worker : producer;
      return line.replace("-A --unstable-kv", flags);
    });
    const beatLine = commands[0]!.replace("-A --unstable-kv", beat).replace(
      / worker .*/,
      " beat --app ./tasks.ts",
    );
    const child = shell(beatLine, dir).spawn();
    let log = "";
    const decoder = new TextDecoder();
    const reading = (async () => {
      for await (const chunk of child.stderr) log += decoder.decode(chunk);
    })();
    let exited = false;
    child.status.then(() => exited = true);
    await eventually(() => /beat: \d+ periodic tasks/.test(log) || exited, 60_000);
    child.kill("SIGTERM");
    const status = await child.status;
    await reading;
    await child.stdout.cancel();
    assert.match(log, /beat: 0 periodic tasks/, log);
    assert.equal(status.code, 0, log);
    // One flag fewer: one line naming it, and no `ready`.
    const missing = await run(
      commands[0]!.replace("-A --unstable-kv", "--allow-read --unstable-kv"),
      dir,
    );
    assert.equal(missing.code, 1);
    assert.doesNotMatch(missing.stderr, /ready/);
    assert.equal(ownLines(missing.stderr).length, 1, missing.stderr);
    assert.match(missing.stderr, /--allow-write/);
    const noKv = await run(commands[0]!.replace("-A --unstable-kv", "-A"), dir);
    assert.equal(noKv.code, 1);
    assert.equal(ownLines(noKv.stderr).length, 1, noKv.stderr);
    assert.match(noKv.stderr, /--unstable-kv/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
