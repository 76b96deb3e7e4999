// deno-lint-ignore-file no-console -- a benchmark script: results on stdout, progress on stderr
/**
 * One Redis node against a 3-master Redis Cluster (one `redis-server` process per node), with
 * tasks spread over several queues: the broker's publish rate (one producer), then the drain
 * rate of `BENCH_CONSUMERS` consumer processes (each consumes its share of the queues: claim
 * script, ack per delivery), from start until every message is acked. Private servers on
 * loopback ports 16850 (single node) and 16860-16862 (cluster), killed at the end.
 *
 * ```sh
 * deno run -A bench/cluster_bench.ts          # N=30000 over QUEUES=6, BENCH_CONSUMERS=3
 * N=60000 QUEUES=12 deno run -A bench/cluster_bench.ts
 * ```
 *
 * @module
 */

import { RedisBroker } from "../lib/brokers/redis.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { redisCommand, startCluster } from "../tests/_redis_sentinel_nodes.ts";

const N = Number(Deno.env.get("N") ?? "30000");
const QUEUES = Number(Deno.env.get("QUEUES") ?? "6");
const CONSUMERS = Number(Deno.env.get("BENCH_CONSUMERS") ?? "3");

// Each consumer process drains its queues and prints how many it acked.
const CONSUMER = `
import { RedisBroker } from "${new URL("../lib/brokers/redis.ts", import.meta.url).href}";
const [url, want, ...queues] = Deno.args;
const broker = new RedisBroker(url);
let n = 0;
const controller = new AbortController();
console.error("ready");
for await (const d of broker.consume(queues, { prefetch: 200, signal: controller.signal })) {
  void d.ack();
  if (++n >= Number(want)) break;
}
await broker.close();
console.log(n);
`;

async function startSingle(port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-bench-" });
  const child = new Deno.Command("redis-server", {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      await redisCommand(port, ["PING"]);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    stop: async () => {
      child.kill("SIGKILL");
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function run(label: string, url: string): Promise<{ publish: number; drain: number }> {
  const queues = Array.from({ length: QUEUES }, (_, i) => `bench-${i}-${crypto.randomUUID()}`);
  const broker = new RedisBroker(url);
  const body = encodeTask({ id: "x", name: "bench.noop", args: [1, 2], kwargs: {} });
  const t0 = performance.now();
  for (let i = 0; i < N; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, N - i) }, (_, k) => {
        const id = `${i + k}`;
        return broker.publish(queues[(i + k) % QUEUES]!, {
          ...body,
          headers: { ...body.headers, id },
          properties: { ...body.properties, correlation_id: id },
        });
      }),
    );
  }
  const publish = N / ((performance.now() - t0) / 1000);
  await broker.close();
  // Consumers each take QUEUES / CONSUMERS queues and exactly their messages.
  const shares = Array.from(
    { length: CONSUMERS },
    (_, c) => queues.filter((_, i) => i % CONSUMERS === c),
  );
  const procs = shares.map((qs) => {
    const want = qs.length * (N / QUEUES);
    return new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", CONSUMER, url, String(want), ...qs],
      cwd: new URL("../", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  });
  // The clock starts once every consumer process has loaded (type checking excluded).
  await Promise.all(procs.map(async (p) => {
    const reader = p.stderr.getReader();
    let text = "";
    while (!text.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    void p.stderr.cancel().catch(() => {});
  }));
  const t1 = performance.now();
  const outs = await Promise.all(procs.map((p) => p.output()));
  const drain = N / ((performance.now() - t1) / 1000);
  const acked = outs.reduce((n, o) => n + Number(new TextDecoder().decode(o.stdout).trim()), 0);
  if (acked !== N) throw new Error(`${label}: acked ${acked} of ${N}`);
  console.error(`${label}: publish ${publish.toFixed(0)}/s, drain ${drain.toFixed(0)}/s`);
  return { publish, drain };
}

const single = await startSingle(16850);
const cluster = await startCluster(16860);
try {
  const cores = navigator.hardwareConcurrency;
  const one = await run("1 node", single.url);
  const three = await run("3-node cluster", cluster.url);
  console.log(JSON.stringify({
    n: N,
    queues: QUEUES,
    consumers: CONSUMERS,
    cores,
    single: { publishPerSec: Math.round(one.publish), drainPerSec: Math.round(one.drain) },
    cluster: { publishPerSec: Math.round(three.publish), drainPerSec: Math.round(three.drain) },
    drainRatio: +(three.drain / one.drain).toFixed(2),
  }));
} finally {
  await single.stop();
  await cluster.stop();
}
