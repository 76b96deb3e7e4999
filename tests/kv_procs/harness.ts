// Spawns and watches the producer/consumer processes of the KV multi-process tests and the
// benchmark. Subprocesses are for tests and benchmarks only, never in lib/.
import { retry } from "../../lib/_kv.ts";

const here = new URL(".", import.meta.url);

/** A spawned script. */
export interface Proc {
  child: Deno.ChildProcess;
  /** Resolves with the process's last stdout line parsed as JSON (or null), once it exits. */
  done: Promise<{ code: number; signal: Deno.Signal | null; result: unknown; stderr: string }>;
}

/** Starts `tests/kv_procs/<script>` with a JSON config. */
export function spawn(script: "producer.ts" | "consumer.ts", config: unknown): Proc {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", new URL(script, here).pathname, JSON.stringify(config)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const done = child.output().then((out) => {
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
    let result: unknown = null;
    try {
      result = JSON.parse(text);
    } catch {
      result = null;
    }
    return {
      code: out.code,
      signal: out.signal,
      result,
      stderr: new TextDecoder().decode(out.stderr),
    };
  });
  return { child, done };
}

/** Waits until `[run, "total"]` reaches `n` (or the timeout passes); returns the total. */
export async function waitTotal(kv: Deno.Kv, run: string, n: number, timeout: number) {
  const deadline = Date.now() + timeout;
  while (true) {
    const total = await retry(() => kv.get<Deno.KvU64>([run, "total"]));
    const value = Number(total.value?.value ?? 0n);
    if (value >= n || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until `n` consumers of `run` have announced themselves. */
export async function waitReady(kv: Deno.Kv, run: string, n: number, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const ready = await retry(() => Array.fromAsync(kv.list({ prefix: [run, "ready"] })));
    if (ready.length >= n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${n} consumers did not start within ${timeout} ms`);
}

/** Execution counts by task id. */
export async function executions(kv: Deno.Kv, run: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const entries = await retry(() =>
    Array.fromAsync(kv.list<Deno.KvU64>({ prefix: [run, "exec"] }))
  );
  for (const e of entries) counts.set(String(e.key[2]), Number(e.value.value));
  return counts;
}

/** Sends a signal unless the process has already exited. */
export function kill(proc: Proc, signal: Deno.Signal): void {
  try {
    proc.child.kill(signal);
  } catch {
    // Already exited.
  }
}
