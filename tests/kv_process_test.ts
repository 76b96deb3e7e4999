// Several processes producing and consuming on one Deno KV file at once. The processes are
// the small scripts in tests/kv_procs/ that use KvBroker directly.
import assert from "node:assert/strict";
import { join } from "node:path";
import { KvHandle, retry } from "../lib/_kv.ts";
import { KvBroker } from "../lib/brokers/kv.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { executions, kill, spawn, waitReady, waitTotal } from "./kv_procs/harness.ts";

async function fixture() {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-kv-proc-" });
  const url = `kv://${join(dir, "procs.kv")}`;
  const handle = new KvHandle(url);
  const kv = await handle.acquire();
  return {
    url,
    kv,
    run: crypto.randomUUID(),
    queue: `q-${crypto.randomUUID()}`,
    async [Symbol.asyncDispose]() {
      await handle.release();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("2 producer and 2 consumer processes on one KV file run all 5,000 tasks", async () => {
  await using f = await fixture();
  const { url, kv, run, queue } = f;
  const consumers = [0, 1].map(() => spawn("consumer.ts", { url, queue, run, prefetch: 16 }));
  try {
    await waitReady(kv, run, 2);
    const n = 5000;
    const producers = [0, 1].map((p) =>
      spawn("producer.ts", { url, queue, prefix: "t", start: p * 2500, count: 2500 })
    );
    for (const p of producers) {
      const out = await p.done;
      assert.equal(out.code, 0, out.stderr);
    }
    const total = await waitTotal(kv, run, n, 120_000);
    const counts = await executions(kv, run);
    const missing = Array.from({ length: n }, (_, i) => `t-${i}`).filter((id) => !counts.has(id));
    const duplicates = [...counts.values()].reduce((s, c) => s + c - 1, 0);
    // deno-lint-ignore no-console
    console.log(`executed ${counts.size}/${n}, ${total} executions, ${duplicates} duplicates`);
    assert.deepEqual(missing, []);
    assert.equal(counts.size, n);
    assert.equal(total, n + duplicates);
  } finally {
    for (const c of consumers) kill(c, "SIGTERM");
    const outs = await Promise.all(consumers.map((c) => c.done));
    for (const out of outs) assert.equal(out.code, 0, out.stderr);
    // Both consumers did work.
    for (const out of outs) assert.ok((out.result as { executed: number }).executed > 0);
  }
  const broker = new KvBroker(url);
  assert.equal(await broker.size(queue), 0);
  await broker.close();
});

Deno.test("a consumer killed with SIGKILL mid-task: its messages are redelivered after the lease", async () => {
  await using f = await fixture();
  const { url, kv, run, queue } = f;
  const n = 300;
  const options = { url, queue, run, prefetch: 4, leaseTime: 1500, maintenanceInterval: 200 };
  // The victim takes 4 messages and hangs on them until it is killed.
  const victim = spawn("consumer.ts", { ...options, workMs: 600_000 });
  const survivor = spawn("consumer.ts", { ...options, workMs: 5 });
  try {
    await waitReady(kv, run, 2);
    const out = await spawn("producer.ts", { url, queue, prefix: "k", start: 0, count: n }).done;
    assert.equal(out.code, 0, out.stderr);
    await waitTotal(kv, run, 60, 30_000);
    kill(victim, "SIGKILL");
    const killed = await victim.done;
    assert.equal(killed.signal, "SIGKILL");
    const total = await waitTotal(kv, run, n, 30_000);
    // Let any straggling redelivery land before counting.
    await new Promise((r) => setTimeout(r, 300));
    const counts = await executions(kv, run);
    const missing = Array.from({ length: n }, (_, i) => `k-${i}`).filter((id) => !counts.has(id));
    assert.deepEqual(missing, []);
    const deliveries = await retry(() => Array.fromAsync(kv.list<number>({ prefix: [run, "dc"] })));
    const redelivered = deliveries.filter((e) => e.value >= 2).length;
    const duplicates = [...counts.values()].reduce((s, c) => s + c - 1, 0);
    // deno-lint-ignore no-console
    console.log(
      `executed ${counts.size}/${n} (${total} executions): ${redelivered} redelivered, ${duplicates} duplicates`,
    );
    // The victim held 4 deliveries when it died; none is lost, each came back once.
    assert.equal(redelivered, 4);
    assert.equal(duplicates, 0);
  } finally {
    kill(victim, "SIGKILL");
    kill(survivor, "SIGTERM");
    await victim.done;
    const out = await survivor.done;
    assert.equal(out.code, 0, out.stderr);
  }
});

Deno.test("a scheduled task is delivered once within 1 s of its ETA across a consumer restart", async () => {
  await using f = await fixture();
  const { url, kv, run, queue } = f;
  const first = spawn("consumer.ts", { url, queue, run });
  await waitReady(kv, run, 1);
  const eta = Date.now() + 3000;
  {
    await using broker = new KvBroker(url);
    await broker.schedule(
      queue,
      encodeTask({ id: "countdown", name: "tasks.noop", args: [], kwargs: {} }),
      new Date(eta),
    );
  }
  await new Promise((r) => setTimeout(r, 800));
  kill(first, "SIGKILL");
  await first.done;
  for (const e of await Array.fromAsync(kv.list({ prefix: [run, "ready"] }))) {
    await retry(() => kv.delete(e.key));
  }
  const second = spawn("consumer.ts", { url, queue, run });
  try {
    await waitReady(kv, run, 1);
    await waitTotal(kv, run, 1, 10_000);
    // A duplicate would show up shortly after.
    await new Promise((r) => setTimeout(r, 1500));
    const counts = await executions(kv, run);
    assert.deepEqual([...counts], [["countdown", 1]]);
    const at = (await kv.get<number>([run, "at", "countdown"])).value!;
    // deno-lint-ignore no-console
    console.log(`ran ${at - eta} ms after its ETA`);
    assert.ok(at >= eta && at - eta < 1000, `ran ${at - eta} ms after its ETA`);
  } finally {
    kill(second, "SIGTERM");
    assert.equal((await second.done).code, 0);
  }
});
