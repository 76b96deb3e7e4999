// Helpers for the remote control and events tests: Python Celery commands and workers on the
// shared Redis, with unique node names and queues so parallel runs do not mix.
export const REDIS = Deno.env.get("CELERIAC_REDIS_URL") ?? "redis://127.0.0.1:6379/0";
export const REDIS_BACKEND = Deno.env.get("CELERIAC_REDIS_BACKEND_URL") ??
  "redis://127.0.0.1:6379/1";
export const PYTHON_DIR = new URL("./python/", import.meta.url).pathname;
export const CLI = new URL("../cli.ts", import.meta.url).pathname;

const decoder = new TextDecoder();

export function unique(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

function pythonEnv(queue = "celery", broker = REDIS): Record<string, string> {
  return {
    CELERIAC_TEST_BROKER: broker,
    CELERIAC_TEST_BACKEND: REDIS_BACKEND,
    CELERIAC_TEST_QUEUE: queue,
  };
}

/**
 * Runs `python3 -c <code> <args>` with Debian's Python in tests/python (so `control_app`
 * imports) and the control apps' environment; returns stdout, throws with stderr on failure.
 */
export async function runPython(
  code: string,
  options: { args?: string[]; queue?: string; timeoutMs?: number } = {},
): Promise<string> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", code, ...(options.args ?? [])],
    cwd: PYTHON_DIR,
    env: pythonEnv(options.queue),
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
  }).output();
  const stdout = decoder.decode(out.stdout);
  if (!out.success) {
    throw new Error(`python failed (${out.code}):\n${decoder.decode(out.stderr)}\n${stdout}`);
  }
  return stdout;
}

/** Runs `celery -A control_app -b REDIS <args>`; returns exit code and output. */
export function celery(...args: string[]) {
  return celeryOn(REDIS, ...args);
}

/** Runs `celery -A control_app -b <broker> <args>`; returns exit code and output. */
export async function celeryOn(broker: string, ...args: string[]) {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-m", "celery", "-A", "control_app", "-b", broker, ...args],
    cwd: PYTHON_DIR,
    env: pythonEnv("celery", broker),
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Runs `deno run -A cli.ts <args>`. */
export async function cli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A long-running subprocess whose output is collected as it comes. */
export interface Background extends AsyncDisposable {
  output(): string;
  waitFor(text: string | RegExp, ms?: number): Promise<void>;
  /** Resolves with the exit code when the process exits by itself. */
  status: Promise<number>;
  stop(): Promise<void>;
}

/** Starts a subprocess; `stop()` sends SIGTERM (then SIGKILL after 10 s) and waits. */
export function background(cmd: string, args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(cmd, {
    args,
    cwd: PYTHON_DIR,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk);
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already exited.
        }
      }, 10_000);
      await child.status;
      clearTimeout(timer);
      await pumps;
    })();
  const waitFor = async (want: string | RegExp, ms = 20_000) => {
    const until = Date.now() + ms;
    const hit = () => typeof want === "string" ? text.includes(want) : want.test(text);
    while (!hit()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${want} in:\n${text}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const bg: Background = {
    output: () => text,
    waitFor,
    status: child.status.then((s) => s.code),
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return bg;
}

/** Starts a Python Celery worker (`-P solo`) on `queue` named `py-<id>@<host>`. */
export function pythonWorker(name: string, queue: string, broker = REDIS): Background {
  return background("/usr/bin/python3", [
    "-m",
    "celery",
    "-A",
    "control_app",
    "-b",
    broker,
    "worker",
    "-P",
    "solo",
    "-n",
    name,
    "-Q",
    queue,
    "-l",
    "INFO",
  ], pythonEnv(queue, broker));
}
