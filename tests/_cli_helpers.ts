// Running `cli.ts` as a user does: real processes, a private Deno KV file per test (through
// CELERIAC_KV_PATH), output captured.
import { eventually } from "./_helpers.ts";

export const CLI = new URL("../cli.ts", import.meta.url).pathname;
export const DAYONE_APP = new URL("./apps/dayone_app.ts", import.meta.url).pathname;

/** A fresh folder and the environment that points `kv://` at a file in it. */
export async function kvEnv(): Promise<
  { dir: string; env: Record<string, string>; [Symbol.asyncDispose](): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-cli-" });
  return {
    dir,
    env: { CELERIAC_KV_PATH: `${dir}/celeriac.kv`, NO_COLOR: "1" },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

export interface CliOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run <flags> cli.ts <args>` to the end. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; flags?: string[]; stdin?: string; cwd?: string } = {},
): Promise<CliOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.flags ?? ["-A"]), CLI, ...args],
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A background CLI process (a worker), its stderr collected; disposing stops it warmly. */
export function spawnCli(
  args: string[],
  options: { env?: Record<string, string>; flags?: string[]; cwd?: string } = {},
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.flags ?? ["-A"]), CLI, ...args],
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  let log = "";
  let out = "";
  const decoder = new TextDecoder();
  const reading = Promise.all([
    (async () => {
      for await (const chunk of child.stderr) log += decoder.decode(chunk, { stream: true });
    })(),
    (async () => {
      for await (const chunk of child.stdout) out += decoder.decode(chunk, { stream: true });
    })(),
  ]);
  let finished: Promise<Deno.CommandStatus> | undefined;
  const finish = () =>
    finished ??= (async () => {
      const status = await child.status;
      await reading;
      return status;
    })();
  return {
    child,
    log: () => log,
    out: () => out,
    async ready() {
      let exited = false;
      child.status.then(() => exited = true);
      await eventually(() => / ready\b/.test(log) || exited, 60_000).catch(() => {});
      if (!/ ready\b/.test(log)) throw new Error(`the worker did not start:\n${log}`);
    },
    finish,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await finish();
    },
  };
}
