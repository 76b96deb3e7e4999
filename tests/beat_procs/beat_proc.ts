// One beat replica for tests/beat_replicas_test.ts. Each send is recorded in the shared
// store (a Redis list, or one KV key per send) so the test can count sends per tick.
//
// deno run -A tests/beat_procs/beat_proc.ts <redis|kv> <url|path> <prefix> <lease|nolease> <label>
import { createClient } from "redis";
import { every } from "../../lib/beat/every.ts";
import { Scheduler } from "../../lib/beat/scheduler.ts";
import type { BeatStore } from "../../lib/beat/store.ts";
import { KvBeatStore } from "../../lib/beat/store_kv.ts";
import { RedisBeatStore } from "../../lib/beat/store_redis.ts";

const [kind, where, prefix, mode, label] = Deno.args;
if (!kind || !where || !prefix || !mode || !label) throw new Error("missing arguments");

// Listen before the first await, so a SIGTERM during start-up is still a clean stop.
const controller = new AbortController();
Deno.addSignalListener("SIGTERM", () => controller.abort());

let store: BeatStore;
let record: (tick: number) => Promise<void>;
let closeRecorder: () => Promise<void>;
if (kind === "redis") {
  store = new RedisBeatStore(where, { prefix });
  const client = createClient({ url: where });
  await client.connect();
  record = async (tick) =>
    void await client.rPush(`${prefix}sent`, JSON.stringify({ tick, label }));
  closeRecorder = async () => void await client.quit();
} else {
  store = new KvBeatStore(where, { prefix: [prefix] });
  const kv = await Deno.openKv(where);
  record = async (tick) => {
    for (let i = 0;; i++) {
      try {
        await kv.set([prefix, "sent", tick, label, crypto.randomUUID()], true);
        return;
      } catch (e) {
        if (i > 20) throw e;
        await new Promise((r) => setTimeout(r, 10 + 10 * i));
      }
    }
  };
  closeRecorder = () => Promise.resolve(kv.close());
}

const beat = new Scheduler({
  entries: { tick: { task: "tests.tick", schedule: every(1) } },
  store,
  send: (_name, _entry, tick) => record(tick.scheduledAt.getTime()),
  signal: controller.signal,
  lease: mode === "lease",
  leaseTtl: 2_000,
  renewInterval: 500,
  owner: label,
  // deno-lint-ignore no-console
  onError: (e) => console.error(`[${label}]`, e),
});
// The test starts its clock once every replica says it is up.
// deno-lint-ignore no-console
console.log("ready");
await beat.run();
await beat.close();
await store.close();
await closeRecorder();
Deno.exit(0);
