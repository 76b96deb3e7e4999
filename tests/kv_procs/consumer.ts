// deno-lint-ignore-file no-console
// A consumer process for the KV multi-process tests and benchmark. For each delivery it
// "executes" the task: waits `workMs`, then records the execution in the same KV file
// (`[run, "exec", id]` += 1, `[run, "total"]` += 1, `[run, "dc", id]` = deliveryCount,
// `[run, "at", id]` = time), then acks. Runs until SIGTERM (graceful) or SIGKILL.
// Usage: deno run -A consumer.ts '{"url","queue","run","prefetch"?,"workMs"?,"leaseTime"?}'
import { GroupCommit, KvHandle, retry } from "../../lib/_kv.ts";
import { KvBroker } from "../../lib/brokers/kv.ts";

interface Config {
  url: string;
  queue: string;
  run: string;
  prefetch?: number;
  workMs?: number;
  leaseTime?: number;
  maintenanceInterval?: number;
}

const config: Config = JSON.parse(Deno.args[0]!);
const controller = new AbortController();
Deno.addSignalListener("SIGTERM", () => controller.abort());
const broker = new KvBroker(config.url, {
  leaseTime: config.leaseTime ?? 30_000,
  maintenanceInterval: config.maintenanceInterval ?? 1_000,
});
const handle = new KvHandle(config.url);
const kv = await handle.acquire();
// Records are unconditional writes: group-commit them, as a result backend under load would.
const writer = new GroupCommit(kv);
const running = new Set<Promise<void>>();
let executed = 0;
await retry(() => kv.set([config.run, "ready", Deno.pid], true));
for await (
  const d of broker.consume([config.queue], {
    prefetch: config.prefetch ?? 8,
    signal: controller.signal,
  })
) {
  const p = (async () => {
    const id = String(d.message.headers.id);
    if (config.workMs) await new Promise((r) => setTimeout(r, config.workMs));
    const at = Date.now();
    await writer.write((op) =>
      op.sum([config.run, "exec", id], 1n)
        .sum([config.run, "total"], 1n)
        .set([config.run, "dc", id], d.deliveryCount)
        .set([config.run, "at", id], at)
    );
    executed++;
    await d.ack();
  })();
  running.add(p);
  p.finally(() => running.delete(p));
}
await Promise.all(running);
await broker.close();
await handle.release();
console.log(JSON.stringify({ pid: Deno.pid, executed }));
