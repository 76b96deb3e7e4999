// Helpers of the connection tests: private redis-servers on this suite's loopback ports
// (16600-16699), `cli.ts` subprocesses whose stderr is collected, and waiting for a log line
// or an exit with a deadline.
import { createClient } from "redis";

export const CLI = new URL("../cli.ts", import.meta.url).pathname;
export const CONN_APP = new URL("./apps/connections_app.ts", import.meta.url).pathname;

/** A private redis-server; `stop()` kills it and waits. */
export interface PrivateRedis extends AsyncDisposable {
  port: number;
  url(db?: number): string;
  process: Deno.ChildProcess;
  stop(signal?: Deno.Signal): Promise<void>;
}

/**
 * Starts `redis-server` on 127.0.0.1:`port` with no persistence (unless `args` say) and waits
 * until it answers PING (over TLS when `tls` is given, using `args` for the TLS files).
 */
export async function startRedis(
  port: number,
  args: string[] = [],
  options: { tls?: boolean; password?: string } = {},
): Promise<PrivateRedis> {
  const process = new Deno.Command("redis-server", {
    args: [
      ...(options.tls ? ["--port", "0", "--tls-port", String(port)] : ["--port", String(port)]),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
      ...args,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = (db = 0) =>
    `${options.tls ? "rediss" : "redis"}://${
      options.password ? `:${encodeURIComponent(options.password)}@` : ""
    }127.0.0.1:${port}/${db}`;
  let stopped: Promise<void> | undefined;
  const stop = (signal: Deno.Signal = "SIGKILL") =>
    stopped ??= (async () => {
      try {
        process.kill(signal);
      } catch {
        // Already gone.
      }
      await process.status;
    })();
  if (!options.tls) {
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conn.close();
        break;
      } catch {
        if (Date.now() > until) {
          await stop();
          throw new Error(`redis-server on ${port} did not start`);
        }
        await sleep(50);
      }
    }
  } else {
    await sleep(500);
  }
  return { port, url, process, stop, [Symbol.asyncDispose]: () => stop() };
}

/** A raw node-redis client (no retries) for test set-up and checks. */
export async function raw(url: string) {
  const client = createClient({ url, socket: { reconnectStrategy: false } });
  client.on("error", () => {});
  await client.connect();
  return client;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A `cli.ts` subprocess with its stderr (and stdout) collected. */
export interface CliProcess {
  process: Deno.ChildProcess;
  /** stderr so far. */
  log(): string;
  /** stdout so far. */
  out(): string;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  /** Waits until stderr matches `pattern`, or throws with the log after `ms`. */
  waitFor(pattern: RegExp, ms: number): Promise<void>;
  /** Sends `signal` (if alive) and waits for the exit; returns the code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/** Runs `deno run -A cli.ts <args>` with `env`. */
export function cli(args: string[], env: Record<string, string> = {}): CliProcess {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  let out = "";
  const decoder = new TextDecoder();
  const readErr = (async () => {
    for await (const chunk of process.stderr) err += decoder.decode(chunk, { stream: true });
  })();
  const readOut = (async () => {
    for await (const chunk of process.stdout) out += new TextDecoder().decode(chunk);
  })();
  const exited = (async () => {
    const status = await process.status;
    await readErr;
    await readOut;
    return status.code;
  })();
  let done = false;
  exited.then(() => done = true);
  return {
    process,
    log: () => err,
    out: () => out,
    exited,
    async waitFor(pattern, ms) {
      const until = Date.now() + ms;
      while (!pattern.test(err)) {
        if (Date.now() > until || done) {
          if (pattern.test(err)) return;
          throw new Error(`no line matching ${pattern} within ${ms} ms; stderr:\n${err}`);
        }
        await sleep(50);
      }
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!done) {
        try {
          process.kill(signal);
        } catch {
          // Already exited.
        }
      }
      return await exited;
    },
  };
}

/** Resolves with the exit code, or throws when the process is still running after `ms`. */
export async function exitWithin(p: CliProcess, ms: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          p.stop("SIGKILL").catch(() => {});
          reject(new Error(`still running after ${ms} ms; stderr:\n${p.log()}`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The worker command line of the connection tests' app. */
export function worker(
  env: Record<string, string>,
  extra: string[] = [],
): CliProcess {
  return cli(["worker", "--app", CONN_APP, "--pool", "inline", ...extra], env);
}
