// deno-lint-ignore-file no-console
// End-to-end throughput of the Deno KV broker across processes: P producer processes publish
// N task messages to one KV file while C consumer processes claim, "execute" (record the
// task id in KV) and ack them. Prints publish rate and end-to-end tasks/s.
//
//   deno run -A bench/kv_bench.ts [N=5000] [producers=2] [consumers=2] [prefetch=8]
import { join } from "node:path";
import { KvHandle } from "../lib/_kv.ts";
import { executions, kill, spawn, waitReady, waitTotal } from "../tests/kv_procs/harness.ts";

const [n = 5000, producers = 2, consumers = 2, prefetch = 8] = Deno.args.map(Number);
const dir = Deno.makeTempDirSync({ prefix: "celeriac-kv-bench-" });
const url = `kv://${join(dir, "bench.kv")}`;
const run = crypto.randomUUID();
const queue = "bench";
const handle = new KvHandle(url);
const kv = await handle.acquire();
try {
  const workers = Array.from(
    { length: consumers },
    () => spawn("consumer.ts", { url, queue, run, prefetch }),
  );
  await waitReady(kv, run, consumers);
  const started = performance.now();
  const per = Math.ceil(n / producers);
  const pubs = Array.from({ length: producers }, (_, p) =>
    spawn("producer.ts", {
      url,
      queue,
      prefix: "t",
      start: p * per,
      count: Math.max(0, Math.min(per, n - p * per)),
    }));
  await Promise.all(pubs.map((p) => p.done));
  const published = performance.now() - started;
  const total = await waitTotal(kv, run, n, 600_000);
  const elapsed = performance.now() - started;
  for (const w of workers) kill(w, "SIGTERM");
  await Promise.all(workers.map((w) => w.done));
  const counts = await executions(kv, run);
  const duplicates = [...counts.values()].reduce((s, c) => s + c - 1, 0);
  console.log(JSON.stringify({
    tasks: n,
    producers,
    consumers,
    prefetch,
    publishPerSecond: Math.round(n / (published / 1000)),
    endToEndTasksPerSecond: Math.round(n / (elapsed / 1000)),
    elapsedMs: Math.round(elapsed),
    executed: counts.size,
    executions: total,
    duplicates,
  }));
} finally {
  await handle.release();
  Deno.removeSync(dir, { recursive: true });
}
