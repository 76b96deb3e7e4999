// Private Redis servers for the Sentinel and Cluster tests, on loopback ports 16800-16899 in
// temp dirs: a master, a replica and 3 sentinels, or a 3-master cluster. Every process is
// killed (by its PID) and its directory removed by stop().
import { createClient } from "redis";
import { eventually } from "./_helpers.ts";

interface Proc {
  port: number;
  child: Deno.ChildProcess;
}

function spawnRedis(args: string[]): Deno.ChildProcess {
  return new Deno.Command("redis-server", { args, stdout: "null", stderr: "null" }).spawn();
}

async function kill(child: Deno.ChildProcess, signal: Deno.Signal = "SIGKILL"): Promise<void> {
  try {
    child.kill(signal);
  } catch {
    // Already gone.
  }
  await child.status;
}

export async function redisCommand<T = unknown>(port: number, command: string[]): Promise<T> {
  const c = createClient({ socket: { host: "127.0.0.1", port, reconnectStrategy: false } });
  c.on("error", () => {});
  try {
    await c.connect();
    return await c.sendCommand<T>(command);
  } finally {
    if (c.isOpen) await c.disconnect().catch(() => {});
  }
}

const dataArgs = (port: number, dir: string) => [
  "--port",
  String(port),
  "--bind",
  "127.0.0.1",
  "--dir",
  dir,
  "--save",
  "",
  "--appendonly",
  "no",
  "--daemonize",
  "no",
];

export interface SentinelSetup {
  /** `sentinel://...;sentinel://...` without a database. */
  sentinels: string;
  masterName: string;
  /** The port the sentinels name as master now. */
  masterPort(): Promise<number>;
  /** Ports of the data nodes. */
  dataPorts: number[];
  /** Kills -9 the data node on a port. */
  killData(port: number): Promise<void>;
  stop(): Promise<void>;
}

/** A master on `base`, its replica on `base + 1`, and sentinels on `base + 10..12`. */
export async function startSentinelSetup(base: number, masterName = "celeriac"): Promise<
  SentinelSetup
> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-sentinel-" });
  const procs: Proc[] = [];
  const data = [base, base + 1];
  const sentinelPorts = [base + 10, base + 11, base + 12];
  const stop = async () => {
    for (const p of procs) await kill(p.child);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    for (const [i, port] of data.entries()) {
      const d = `${dir}/${port}`;
      await Deno.mkdir(d);
      const extra = i === 0 ? [] : ["--replicaof", "127.0.0.1", String(base)];
      procs.push({ port, child: spawnRedis([...dataArgs(port, d), ...extra]) });
    }
    for (const port of sentinelPorts) {
      const d = `${dir}/${port}`;
      await Deno.mkdir(d);
      const conf = `${d}/sentinel.conf`;
      await Deno.writeTextFile(
        conf,
        [
          `port ${port}`,
          `bind 127.0.0.1`,
          `dir ${d}`,
          `sentinel monitor ${masterName} 127.0.0.1 ${base} 2`,
          `sentinel down-after-milliseconds ${masterName} 1000`,
          `sentinel failover-timeout ${masterName} 4000`,
          `sentinel parallel-syncs ${masterName} 1`,
          "",
        ].join("\n"),
      );
      procs.push({ port, child: spawnRedis([conf, "--sentinel"]) });
    }
    // Ready: the replica is in sync, and every sentinel knows the replica and the others.
    await eventually(async () => {
      try {
        const info = await redisCommand<string>(base + 1, ["INFO", "replication"]);
        if (!info.includes("master_link_status:up")) return false;
        for (const port of sentinelPorts) {
          const master = await redisCommand<string[]>(port, ["SENTINEL", "MASTER", masterName]);
          const field = (k: string) => master[master.indexOf(k) + 1];
          if (field("num-slaves") !== "1" || field("num-other-sentinels") !== "2") return false;
        }
        return true;
      } catch {
        return false;
      }
    }, 30_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    sentinels: sentinelPorts.map((p) => `sentinel://127.0.0.1:${p}`).join(";"),
    masterName,
    dataPorts: data,
    masterPort: async () => {
      const [, port] = await redisCommand<string[]>(sentinelPorts[0]!, [
        "SENTINEL",
        "GET-MASTER-ADDR-BY-NAME",
        masterName,
      ]);
      return Number(port);
    },
    killData: async (port) => {
      const p = procs.find((x) => x.port === port);
      if (p) await kill(p.child);
    },
    stop,
  };
}

export interface ClusterSetup {
  /** The nodes' ports. */
  ports: number[];
  /** `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...` */
  url: string;
  stop(): Promise<void>;
}

/** `n` masters (no replicas) on `base..base+n-1`, slots spread by `redis-cli --cluster create`. */
export async function startCluster(base: number, n = 3): Promise<ClusterSetup> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-cluster-" });
  const procs: Proc[] = [];
  const ports = Array.from({ length: n }, (_, i) => base + i);
  const stop = async () => {
    for (const p of procs) await kill(p.child);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    for (const port of ports) {
      const d = `${dir}/${port}`;
      await Deno.mkdir(d);
      procs.push({
        port,
        child: spawnRedis([
          ...dataArgs(port, d),
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          `${d}/nodes.conf`,
          "--cluster-node-timeout",
          "2000",
        ]),
      });
    }
    await eventually(async () => {
      try {
        for (const port of ports) await redisCommand(port, ["PING"]);
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    const out = await new Deno.Command("redis-cli", {
      args: [
        "--cluster",
        "create",
        ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas",
        "0",
        "--cluster-yes",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    await eventually(async () => {
      try {
        for (const port of ports) {
          const info = await redisCommand<string>(port, ["CLUSTER", "INFO"]);
          if (!info.includes("cluster_state:ok")) return false;
        }
        return true;
      } catch {
        return false;
      }
    }, 20_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    ports,
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
    stop,
  };
}
