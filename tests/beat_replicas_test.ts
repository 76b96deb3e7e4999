// Beat replicas as separate processes on one store: every tick of an every-1s entry must be
// sent exactly once. Per store, two groups run at the same time:
//  - "lease": two replicas with a leader lease (2 s); halfway the leader is SIGKILLed (no
//    release), so the follower must take over without doubling or skipping more than the
//    failover window allows;
//  - "free": two replicas without a lease, both sending, kept apart only by the per-tick
//    compare-and-set (the "two leaders overlap" case, every second).
// Both stores run concurrently for ~12 s instead of the 30 s: each second is an
// independent race, so 12 races per group (48 in all) plus one failover exercise the same
// paths as 30 s would, and CI stays fast.
import assert from "node:assert/strict";
import { createClient } from "redis";

const REDIS = Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379/1";
const PROC = new URL("./beat_procs/beat_proc.ts", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sent {
  tick: number;
  label: string;
}

function spawn(args: string[]): { child: Deno.ChildProcess; ready: Promise<void> } {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", PROC, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // Resolves when the replica prints "ready"; keeps draining stdout until it exits.
  const ready = (async () => {
    let seen = "";
    const decoder = new TextDecoder();
    let resolved = false;
    const { promise, resolve } = Promise.withResolvers<void>();
    (async () => {
      for await (const chunk of child.stdout) {
        seen += decoder.decode(chunk);
        if (!resolved && seen.includes("ready")) {
          resolved = true;
          resolve();
        }
      }
      resolve();
    })();
    await promise;
  })();
  return { child, ready };
}

function check(group: string, sent: Sent[], maxGap: number) {
  const ticks = sent.map((s) => s.tick).sort((a, b) => a - b);
  assert.ok(ticks.length >= 6, `${group}: only ${ticks.length} sends`);
  assert.equal(new Set(ticks).size, ticks.length, `${group}: a tick was sent twice`);
  for (const t of ticks) assert.equal(t % 1_000, 0, `${group}: tick ${t} is off the grid`);
  const gaps = ticks.slice(1).map((t, i) => (t - ticks[i]!) / 1_000);
  assert.ok(Math.max(...gaps) <= maxGap, `${group}: gaps ${gaps.join(",")}`);
  return ticks;
}

Deno.test({
  name: "beat replicas in separate processes send each tick exactly once (Redis and KV)",
  async fn() {
    const run = crypto.randomUUID();
    const dir = await Deno.makeTempDir({ prefix: "beat_replicas_" });
    const kvPath = `${dir}/beat.sqlite3`;
    const groups = {
      "redis-lease": ["redis", REDIS, `test:beat:${run}:lease:`, "lease"],
      "redis-free": ["redis", REDIS, `test:beat:${run}:free:`, "nolease"],
      "kv-lease": ["kv", kvPath, `lease-${run}`, "lease"],
      "kv-free": ["kv", kvPath, `free-${run}`, "nolease"],
    };
    const procs = new Map<string, Deno.ChildProcess>();
    const started: Promise<void>[] = [];
    for (const [group, args] of Object.entries(groups)) {
      for (const who of ["A", "B"]) {
        const { child, ready } = spawn([...args, `${group}-${who}`]);
        procs.set(`${group}-${who}`, child);
        started.push(ready);
      }
    }
    // Eight Deno processes starting at once on a loaded machine can take a while.
    await Promise.all(started);
    const redis = createClient({ url: REDIS });
    await redis.connect();
    const kv = await Deno.openKv(kvPath);
    const read = async (group: keyof typeof groups): Promise<Sent[]> => {
      const [kind, , prefix] = groups[group];
      if (kind === "redis") {
        return (await redis.lRange(`${prefix}sent`, 0, -1)).map((s) => JSON.parse(s));
      }
      const out: Sent[] = [];
      for await (const e of kv.list({ prefix: [prefix!, "sent"] })) {
        out.push({ tick: e.key[2] as number, label: e.key[3] as string });
      }
      return out;
    };
    const killed: string[] = [];
    try {
      await sleep(6_000);
      for (const group of ["redis-lease", "kv-lease"] as const) {
        const sent = await read(group);
        assert.ok(sent.length > 0, `${group}: nothing sent in 6 s`);
        const leader = sent.sort((a, b) => a.tick - b.tick).at(-1)!.label;
        procs.get(leader)!.kill("SIGKILL");
        killed.push(leader);
      }
      await sleep(7_000);
    } finally {
      for (const [name, p] of procs) if (!killed.includes(name)) p.kill("SIGTERM");
      const statuses = await Promise.all([...procs].map(async ([n, p]) => [n, await p.status]));
      for (const [name, status] of statuses as [string, Deno.CommandStatus][]) {
        if (!killed.includes(name)) assert.equal(status.code, 0, `${name} exited ${status.code}`);
      }
    }
    try {
      for (const group of ["redis-lease", "kv-lease"] as const) {
        const sent = await read(group);
        // Failover: lease 2 s + renew 0.5 s + catch-up sends one tick for the gap.
        check(group, sent, 4);
        const labels = new Set(sent.map((s) => s.label));
        assert.equal(labels.size, 2, `${group}: the follower never took over`);
        const dead = killed.find((k) => k.startsWith(group))!;
        const lastOfDead = Math.max(...sent.filter((s) => s.label === dead).map((s) => s.tick));
        const firstOfNew = Math.min(
          ...sent.filter((s) => s.label !== dead && s.tick > lastOfDead).map((s) => s.tick),
        );
        assert.ok(
          sent.filter((s) => s.label !== dead).every((s) =>
            s.tick < lastOfDead || s.tick >= firstOfNew
          ),
        );
        // deno-lint-ignore no-console
        console.log(
          `${group}: ${sent.length} sends, unique ticks, failover gap ${
            (firstOfNew - lastOfDead) / 1000
          }s`,
        );
      }
      for (const group of ["redis-free", "kv-free"] as const) {
        const sent = await read(group);
        check(group, sent, 1);
        const counts = [...new Set(sent.map((s) => s.label))].map((l) =>
          `${l}=${sent.filter((s) => s.label === l).length}`
        );
        // deno-lint-ignore no-console
        console.log(`${group}: ${sent.length} sends, no gaps, unique ticks (${counts.join(" ")})`);
      }
    } finally {
      const keys = await redis.keys(`test:beat:${run}:*`);
      if (keys.length) await redis.del(keys);
      await redis.quit();
      kv.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
