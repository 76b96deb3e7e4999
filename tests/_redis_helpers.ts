// Helpers shared by the Redis tests: a raw client, Python Celery calls, killing only our own
// connections (never other test runs' on the shared server).
import { createClient } from "redis";

export const REDIS = Deno.env.get("CELERIAC_REDIS_URL") ?? "redis://127.0.0.1:6379/0";
export const REDIS_BACKEND = Deno.env.get("CELERIAC_REDIS_BACKEND_URL") ??
  "redis://127.0.0.1:6379/1";

export async function rawClient(url = REDIS) {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

export async function python(...args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [new URL("./python/kombu_io.py", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`python ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(stdout.split("\n").at(-1)!);
}

// The CLIENT LIST lines of the connections named `name`.
async function connectionLines(
  client: Awaited<ReturnType<typeof rawClient>>,
  name: string,
): Promise<string[]> {
  const list = await client.sendCommand<string>(["CLIENT", "LIST"]);
  return list.split("\n").filter((l) => l.includes(` name=${name} `));
}

/** Kills every connection named `name` (normal and pub/sub); returns how many. */
export async function killConnections(name: string, url = REDIS): Promise<number> {
  const client = await rawClient(url);
  try {
    const ids = (await connectionLines(client, name))
      .map((l) => /(?:^|\s)id=(\d+)/.exec(l)?.[1]).filter((x): x is string => !!x);
    for (const id of ids) await client.sendCommand(["CLIENT", "KILL", "ID", id]);
    return ids.length;
  } finally {
    await client.disconnect();
  }
}

/** Waits until a connection named `name` is blocked (a BLMOVE), as CLIENT LIST shows it. */
export async function waitBlocked(name: string, url = REDIS): Promise<void> {
  const client = await rawClient(url);
  try {
    for (let i = 0; i < 200; i++) {
      if ((await connectionLines(client, name)).some((l) => / flags=\w*b/.test(l))) return;
      await sleep(10);
    }
    throw new Error(`No connection of ${name} blocked`);
  } finally {
    await client.disconnect();
  }
}

export async function countConnections(name: string, url = REDIS): Promise<number> {
  const client = await rawClient(url);
  try {
    const list = await client.sendCommand<string>(["CLIENT", "LIST", "TYPE", "normal"]);
    const pubsub = await client.sendCommand<string>(["CLIENT", "LIST", "TYPE", "pubsub"]);
    return `${list}\n${pubsub}`.split("\n").filter((l) => l.includes(` name=${name} `)).length;
  } finally {
    await client.disconnect();
  }
}

export async function deleteByPrefix(prefix: string, url = REDIS): Promise<void> {
  const client = await rawClient(url);
  try {
    for await (const key of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
      await client.del(key);
    }
  } finally {
    await client.disconnect();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A child process whose stderr is collected; `stop()` kills it (if alive) and reaps it. */
export interface Child {
  child: Deno.ChildProcess;
  log(): string;
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

function collect(child: Deno.ChildProcess): Child {
  let log = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) log += decoder.decode(chunk, { stream: true });
  })();
  let stopped: Promise<Deno.CommandStatus> | undefined;
  return {
    child,
    log: () => log,
    stop(signal: Deno.Signal = "SIGTERM") {
      return stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch {
          // Already exited.
        }
        const status = await child.status;
        await reading;
        return status;
      })();
    },
  };
}

/** Starts a Python `celery -A pytasks worker -P solo` on one queue (tests/python/pytasks.py). */
export function spawnPythonWorker(
  queue: string,
  env: { broker: string; backend: string; prefix: string; visibility?: number },
): Child {
  const name = `py-${crypto.randomUUID()}@%h`;
  return collect(
    new Deno.Command("/usr/bin/python3", {
      args: [
        "-m",
        "celery",
        "-A",
        "pytasks",
        "worker",
        "-Q",
        queue,
        "-P",
        "solo",
        "-c",
        "1",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-n",
        name,
        "--loglevel",
        "INFO",
      ],
      cwd: new URL("./python/", import.meta.url).pathname,
      env: {
        CELERIAC_TEST_BROKER: env.broker,
        CELERIAC_TEST_BACKEND: env.backend,
        CELERIAC_TEST_PREFIX: env.prefix,
        ...(env.visibility !== undefined
          ? { CELERIAC_TEST_VISIBILITY: String(env.visibility) }
          : {}),
      },
      stdout: "null",
      stderr: "piped",
    }).spawn(),
  );
}

/** Starts `cli.ts worker` over tests/apps/redis_app.ts (inline pool unless `extra` says). */
export function spawnCliWorker(
  queue: string,
  env: { broker: string; backend: string; prefix: string; visibility?: number },
  extra: string[] = [],
): Child {
  return collect(
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "worker",
        "--app",
        new URL("./apps/redis_app.ts", import.meta.url).pathname,
        "-Q",
        queue,
        "--pool",
        "inline",
        ...extra,
      ],
      env: {
        CELERIAC_BROKER_URL: env.broker,
        CELERIAC_RESULT_BACKEND: env.backend,
        CELERIAC_TEST_PREFIX: env.prefix,
        ...(env.visibility !== undefined
          ? { CELERIAC_TEST_VISIBILITY: String(env.visibility) }
          : {}),
        NO_COLOR: "1",
      },
      stdout: "null",
      stderr: "piped",
    }).spawn(),
  );
}
