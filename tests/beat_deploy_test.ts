// The Deno.cron adapter. Deno.cron fires at most once a minute, so these tests register real
// crons (with an AbortSignal, so they unregister) and call the handlers directly with an
// injected clock; one real fire (up to 60 s of waiting) runs only with BEAT_REAL_CRON=1.
import assert from "node:assert/strict";
import { clocked } from "../lib/beat/clocked.ts";
import { crontab } from "../lib/beat/crontab.ts";
import { cronHandler, registerCron } from "../lib/beat/deploy.ts";
import { every } from "../lib/beat/every.ts";
import { MemoryBeatStore } from "../lib/beat/store_memory.ts";
import { KvBeatStore } from "../lib/beat/store_kv.ts";

const uid = () => crypto.randomUUID().slice(0, 8);

Deno.test("registerCron() registers each entry with its UTC cron string", async () => {
  const controller = new AbortController();
  const id = uid();
  const crons = registerCron({
    [`cleanup-${id}`]: { task: "t.cleanup", schedule: every("5m") },
    [`tasks.report.${id}`]: {
      task: "t.report",
      schedule: crontab({ minute: 0, hour: 9, dayOfWeek: "mon-fri" }),
    },
  }, { store: new MemoryBeatStore(), send: () => {}, signal: controller.signal });
  assert.deepEqual(crons.map((c) => [c.cronName, c.schedule]), [
    [`cleanup-${id}`, "*/5 * * * *"],
    [`tasks_report_${id}`, "0 9 * * MON-FRI"],
  ]);
  controller.abort();
  await Promise.all(crons.map((c) => c.done));
});

Deno.test("registerCron() rejects schedules cron cannot express, naming the entry", () => {
  const options = { store: new MemoryBeatStore(), send: () => {} };
  assert.throws(
    () => registerCron({ fast: { task: "t", schedule: every(45) } }, options),
    /Cannot register beat entry "fast" with Deno.cron: Cannot express every 45s/,
  );
  assert.throws(
    () => registerCron({ slow: { task: "t", schedule: every("90m") } }, options),
    /beat entry "slow".*every 90m/,
  );
  assert.throws(
    () => registerCron({ once: { task: "t", schedule: clocked("2030-01-01") } }, options),
    /beat entry "once".*fires once/,
  );
  assert.throws(
    () =>
      registerCron({
        paris: { task: "t", schedule: crontab({ hour: 9, minute: 0, timezone: "Europe/Paris" }) },
      }, options),
    /beat entry "paris".*UTC only/,
  );
  assert.throws(
    () =>
      registerCron({
        "a.b": { task: "t", schedule: every("1m") },
        "a_b": { task: "t", schedule: every("1m") },
      }, options),
    /both become the Deno.cron name "a_b"/,
  );
});

Deno.test("cron handlers in several processes send each tick once (KV store)", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/cron.sqlite3`;
  let now = new Date("2024-01-01T00:05:00.120Z"); // Deno.cron fires a little after the minute
  const sent: string[] = [];
  const controller = new AbortController();
  // Two stores on one file stand for two local processes, each firing its own Deno.cron.
  const stores = [new KvBeatStore(path), new KvBeatStore(path)];
  const entries = { [`five-${uid()}`]: { task: "t", schedule: every("5m") } };
  const a = registerCron(entries, {
    store: stores[0]!,
    send: (_n, _e, tick) => void sent.push(`a ${tick.scheduledAt.toISOString()}`),
    now: () => now,
    signal: controller.signal,
  });
  try {
    // One isolate cannot register a cron name twice: the second process's handler is built
    // by the same function registerCron() uses.
    const [name, entry] = Object.entries(entries)[0]!;
    const handlerB = cronHandler(name, entry, {
      store: stores[1]!,
      send: (_n, _e, tick) => void sent.push(`b ${tick.scheduledAt.toISOString()}`),
      now: () => now,
    });
    const first = await Promise.all([a[0]!.handler(), handlerB()]);
    assert.deepEqual(first.filter(Boolean).length, 1, "one of the two fires sends");
    assert.equal(sent.length, 1);
    assert.match(sent[0]!, / 2024-01-01T00:05:00.000Z$/, "the first fire is owed on first sight");
    now = new Date("2024-01-01T00:10:00.050Z");
    await Promise.all([handlerB(), a[0]!.handler()]);
    assert.equal(sent.length, 2);
    assert.match(sent[1]!, / 2024-01-01T00:10:00.000Z$/);
    // A late retry of the same fire sends nothing more.
    assert.equal(await a[0]!.handler(), false);
  } finally {
    controller.abort();
    await Promise.all(a.map((c) => c.done));
    for (const s of stores) await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failing send gives the tick back so Deno.cron's retry sends it", async () => {
  const controller = new AbortController();
  let fail = true;
  const sent: string[] = [];
  const now = () => new Date("2024-01-01T00:01:00.010Z");
  const [reg] = registerCron({ [`minute-${uid()}`]: { task: "t", schedule: every("1m") } }, {
    store: new MemoryBeatStore(),
    send: (_n, _e, tick) => {
      if (fail) throw new Error("broker down");
      sent.push(tick.scheduledAt.toISOString());
    },
    now,
    signal: controller.signal,
  });
  await assert.rejects(reg!.handler(), /broker down/);
  fail = false;
  assert.equal(await reg!.handler(), true);
  assert.deepEqual(sent, ["2024-01-01T00:01:00.000Z"]);
  controller.abort();
  await reg!.done;
});

Deno.test({
  name: "Deno.cron really fires a registered entry (BEAT_REAL_CRON=1, up to 61 s)",
  ignore: Deno.env.get("BEAT_REAL_CRON") !== "1",
  async fn() {
    const controller = new AbortController();
    const { promise, resolve } = Promise.withResolvers<string>();
    const [reg] = registerCron({ [`real-${uid()}`]: { task: "t", schedule: every("1m") } }, {
      store: new MemoryBeatStore(),
      send: (_n, _e, tick) => resolve(tick.scheduledAt.toISOString()),
      signal: controller.signal,
    });
    const timer = setTimeout(() => resolve("timeout"), 61_000);
    const at = await promise;
    clearTimeout(timer);
    controller.abort();
    await reg!.done;
    assert.match(at, /:00\.000Z$/);
  },
});
