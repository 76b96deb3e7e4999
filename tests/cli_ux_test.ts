// The CLI as a newcomer meets it, on the kv:// default: --version, --json, --wait following
// progress, failures that keep their type, true help texts, purge's confirmation, -A.
import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { CLI, DAYONE_APP, kvEnv, runCli, spawnCli } from "./_cli_helpers.ts";
import { ownLines } from "./_stderr.ts";

Deno.test("cli: --version prints celeriac's version from deno.json", async () => {
  const out = await runCli(["--version"]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, new RegExp(`^celeriac ${denoJson.version.replaceAll(".", "\\.")} `));
});

Deno.test("cli: help texts name the real defaults and every command", async () => {
  const call = await runCli(["call", "--help"]);
  assert.equal(call.code, 0);
  assert.doesNotMatch(call.stdout, /memory:\/\//);
  assert.match(call.stdout, /CELERIAC_BROKER_URL, else kv:\/\//);
  assert.match(call.stdout, /--json/);
  const main = await runCli(["--help"]);
  for (const command of ["queues", "dlq", "--version"]) {
    assert.match(main.stdout, new RegExp(command));
  }
  for (const command of ["worker", "beat", "call", "result", "queues", "dlq", "purge", "status"]) {
    const help = await runCli([command, "--help"]);
    assert.equal(help.code, 0, `${command}: ${help.stderr}`);
    assert.match(help.stdout, /-a, --app MODULE/, command);
    assert.doesNotMatch(help.stdout, /-A, --app/, command);
  }
});

Deno.test("cli: -A after the script is refused with one line that says where it goes", async () => {
  const out = await runCli(["worker", "-A", DAYONE_APP]);
  assert.equal(out.code, 2);
  assert.equal(ownLines(out.stderr).length, 1, out.stderr);
  assert.match(out.stderr, /allow-all goes before the script/);
  assert.match(out.stderr, /--app or -a/);
});

Deno.test("cli: call --json and result --json print JSON; --wait follows progress as a bar and as status lines; a failure keeps its type", async () => {
  await using kv = await kvEnv();
  await using worker = spawnCli(["worker", "-a", DAYONE_APP, "-c", "2", "--pool", "inline"], {
    env: kv.env,
  });
  await worker.ready();

  // --json without --wait: one object with the id.
  const sent = await runCli(["call", "tasks.add", "--args", "[2, 3]", "-a", DAYONE_APP, "--json"], {
    env: kv.env,
  });
  assert.equal(sent.code, 0, sent.stderr);
  const { id } = JSON.parse(sent.stdout);
  assert.match(id, /^[0-9a-f-]{36}$/);
  const result = await runCli(["result", id, "-a", DAYONE_APP, "--wait", "--json"], {
    env: kv.env,
  });
  assert.equal(result.code, 0, result.stderr);
  const meta = JSON.parse(result.stdout);
  assert.equal(meta.status, "SUCCESS");
  assert.equal(meta.result, 5);
  assert.equal(meta.task_id, id);

  // A progress bar for current/total (stderr, one line per update off a terminal).
  const bar = await runCli(
    ["call", "tasks.steps", "--args", "[4, 300]", "-a", DAYONE_APP, "--wait"],
    { env: kv.env },
  );
  assert.equal(bar.code, 0, bar.stderr);
  assert.equal(bar.stdout.trim().split("\n").at(-1), "4");
  for (const pct of ["25% 1/4", "50% 2/4", "75% 3/4", "100% 4/4"]) {
    assert.match(bar.stderr, new RegExp(`PROGRESS \\[[#.]{30}\\] ${pct}`), bar.stderr);
  }
  // done/total reads the same; a state without numbers is a status line.
  const done = await runCli(
    ["call", "tasks.steps", "--args", '[2, 300, "done"]', "-a", DAYONE_APP, "--wait", "--json"],
    { env: kv.env },
  );
  assert.match(done.stderr, /PROGRESS \[#{15}\.{15}\] 50% 1\/2/, done.stderr);
  assert.equal(JSON.parse(done.stdout).result, 2);
  const custom = await runCli(
    ["call", "tasks.steps", "--args", '[2, 300, "none"]', "-a", DAYONE_APP, "--wait"],
    { env: kv.env },
  );
  assert.match(custom.stderr, /CRUNCHING \{"stage":"stage-1"\}/, custom.stderr);
  assert.match(custom.stderr, /CRUNCHING \{"stage":"stage-2"\}/, custom.stderr);

  // Failures keep their exception type, on call --wait and on result.
  const failed = await runCli(
    ["call", "tasks.boom", "--args", '["out of range"]', "-a", DAYONE_APP, "--wait"],
    { env: kv.env },
  );
  assert.equal(failed.code, 1);
  assert.match(failed.stdout, /^FAILURE RangeError: out of range$/m, failed.stdout);
  const unknown = await runCli(["call", "ux.nope", "-a", DAYONE_APP, "--wait"], { env: kv.env });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stdout, /FAILURE NotRegistered: .*ux\.nope/, unknown.stdout);
  const failedId = failed.stdout.split("\n")[0]!;
  const again = await runCli(["result", failedId, "-a", DAYONE_APP, "--json"], { env: kv.env });
  assert.equal(again.code, 1);
  assert.equal(JSON.parse(again.stdout).result.exc_type, "RangeError");
  const pending = await runCli(["result", crypto.randomUUID(), "-a", DAYONE_APP, "--json"], {
    env: kv.env,
  });
  assert.equal(JSON.parse(pending.stdout).status, "PENDING");
});

Deno.test("cli: --wait gives up after --timeout with the last state, and exits 1", async () => {
  await using kv = await kvEnv();
  const out = await runCli(
    ["call", "tasks.add", "--args", "[1, 1]", "-a", DAYONE_APP, "--wait", "--timeout", "500"],
    { env: kv.env },
  );
  assert.equal(out.code, 1);
  assert.match(out.stderr, /not ready after 500 ms \(last state: PENDING/, out.stderr);
});

// A pseudo-terminal for stdin, so purge sees a TTY: `script` runs the command under one.
async function onTerminal(command: string, answer: string, env: Record<string, string>) {
  const child = new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  // The prompt comes once the app is loaded; typed-ahead input waits in the terminal.
  await writer.write(new TextEncoder().encode(answer));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const out = await child.output().finally(() => clearTimeout(timer));
  await writer.close().catch(() => {});
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

Deno.test("cli: purge asks on a terminal, -f skips the question, and without a terminal it needs -f", async () => {
  await using kv = await kvEnv();
  const queue = `purge-${crypto.randomUUID().slice(0, 8)}`;
  for (let i = 0; i < 3; i++) {
    const out = await runCli([
      "call",
      "tasks.add",
      "--args",
      "[1, 1]",
      "-Q",
      queue,
      "-a",
      DAYONE_APP,
    ], {
      env: kv.env,
    });
    assert.equal(out.code, 0, out.stderr);
  }
  const env = { ...kv.env, PATH: Deno.env.get("PATH") ?? "" };
  const base = `${Deno.execPath()} run -A ${CLI} purge -Q ${queue} -a ${DAYONE_APP}`;
  const no = await onTerminal(base, "n\n", env);
  assert.match(no.stdout, /Delete every waiting message in/);
  assert.equal(no.code, 1, no.stdout);
  const noTty = await runCli(["purge", "-Q", queue, "-a", DAYONE_APP], { env: kv.env });
  assert.equal(noTty.code, 2);
  assert.match(noTty.stderr, /--force/);
  const yes = await onTerminal(base, "y\n", env);
  assert.match(yes.stdout, /Purged 3 messages/, yes.stdout);
  const forced = await runCli(["purge", "-f", "-Q", queue, "-a", DAYONE_APP], { env: kv.env });
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /Purged 0 messages/);
});
