// A private RabbitMQ node for tests that restart the broker or change its configuration, so
// the shared node on 5672 (other helpers, CI) is never touched. The node runs from the
// installed RabbitMQ with its own name, ports, data and log directories under a temp dir, and
// an Erlang cookie in that dir (HOME), so rabbitmqctl needs no access to the system cookie.

const LIB_BIN = "/usr/lib/rabbitmq/bin";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

// The Debian wrappers in /usr/sbin switch to the rabbitmq user when run as root (and reset
// HOME); the scripts under /usr/lib/rabbitmq/bin run as the caller.
async function tool(name: string): Promise<string> {
  return await exists(`${LIB_BIN}/${name}`) ? `${LIB_BIN}/${name}` : name;
}

// RabbitMQ's CLI tools take client ports 35672-35682, the shared node uses 5672/25672.
const RESERVED = (port: number) =>
  (port >= 35672 && port <= 35682) || port === 25672 || port === 5672;

/** A free loopback TCP port outside RabbitMQ's reserved ranges. */
export function freePort(): number {
  for (;;) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    listener.close();
    if (!RESERVED(port)) return port;
  }
}

function isFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** A running private node. */
export interface RabbitNode extends AsyncDisposable {
  /** `amqp://guest:guest@127.0.0.1:<port>//`. */
  url: string;
  /** The Erlang node name, `celeriac-test-<id>@localhost`. */
  node: string;
  /** Runs `rabbitmqctl -n <node> <args>`; throws on failure; returns stdout. */
  ctl(...args: string[]): Promise<string>;
  /** `stop_app`: closes every client connection; durable queues and messages stay on disk. */
  stopApp(): Promise<void>;
  /** `start_app` and waits until the node accepts connections. */
  startApp(): Promise<void>;
  /** Stops the node and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startRabbitNode}. */
export interface RabbitNodeOptions {
  /** Lines of `rabbitmq.conf` (e.g. `consumer_timeout = 5000`). */
  config?: string[];
  /** The `advanced.config` Erlang term, e.g. `[{rabbit, [{channel_tick_interval, 500}]}].` */
  advanced?: string;
  /** The AMQP port (a free one when not given). */
  port?: number;
  /** The Erlang distribution port (a free one when not given). */
  distPort?: number;
}

/**
 * Starts a private node with `rabbitmq-server -detached` and waits for `await_startup`.
 * Throws with the node's log when it does not come up within 60 s.
 */
export async function startRabbitNode(options: RabbitNodeOptions = {}): Promise<RabbitNode> {
  for (const port of [options.port, options.distPort]) {
    // A node left running by an interrupted run would answer on its port instead of this one.
    if (port !== undefined && !isFree(port)) {
      throw new Error(`port ${port} is in use (a private RabbitMQ node left running?)`);
    }
  }
  const dir = await Deno.makeTempDir({ prefix: "celeriac-rabbit-" });
  const node = `celeriac-test-${crypto.randomUUID().slice(0, 8)}@localhost`;
  const port = options.port ?? freePort();
  let dist = options.distPort ?? freePort();
  while (dist === port) dist = freePort();
  await Deno.writeTextFile(`${dir}/enabled_plugins`, "[].\n");
  await Deno.writeTextFile(`${dir}/rabbitmq.conf`, (options.config ?? []).join("\n") + "\n");
  const env: Record<string, string> = {
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: `${dir}/mnesia`,
    RABBITMQ_LOG_BASE: `${dir}/log`,
    RABBITMQ_PID_FILE: `${dir}/node.pid`,
    RABBITMQ_ENABLED_PLUGINS_FILE: `${dir}/enabled_plugins`,
    RABBITMQ_CONFIG_FILE: `${dir}/rabbitmq.conf`,
  };
  if (options.advanced) {
    await Deno.writeTextFile(`${dir}/advanced.config`, options.advanced + "\n");
    env.RABBITMQ_ADVANCED_CONFIG_FILE = `${dir}/advanced.config`;
  }
  const rabbitmqctl = await tool("rabbitmqctl");
  const decoder = new TextDecoder();
  const run = async (args: string[]) => {
    const out = await new Deno.Command(rabbitmqctl, {
      args: ["-n", node, ...args],
      env: { HOME: dir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      ok: out.success,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  };
  const ctl = async (...args: string[]) => {
    const out = await run(args);
    if (!out.ok) throw new Error(`rabbitmqctl ${args.join(" ")} failed:\n${out.stderr}`);
    return out.stdout;
  };
  const logTail = async () => {
    try {
      return (await Deno.readTextFile(`${dir}/log/${node}.log`)).split("\n").slice(-40).join("\n");
    } catch {
      return "(no log)";
    }
  };
  const awaitStartup = async () => {
    // await_startup fails at once while the node is not registered with epmd yet.
    const until = Date.now() + 60_000;
    for (;;) {
      const out = await run(["await_startup", "--timeout", "30"]);
      if (out.ok) return;
      if (Date.now() > until) {
        throw new Error(`RabbitMQ node ${node} did not start:\n${out.stderr}\n${await logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  };
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      // `stop <pidfile>` returns once the OS process is gone.
      await run(["stop", `${dir}/node.pid`]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  const server = await new Deno.Command(await tool("rabbitmq-server"), {
    args: ["-detached"],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!server.success) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw new Error(`rabbitmq-server -detached failed: ${decoder.decode(server.stderr)}`);
  }
  try {
    await awaitStartup();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}//`,
    node,
    ctl,
    stopApp: async () => {
      await ctl("stop_app");
    },
    startApp: async () => {
      await ctl("start_app");
      await awaitStartup();
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
