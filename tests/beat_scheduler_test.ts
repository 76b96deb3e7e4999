import assert from "node:assert/strict";
import { clocked } from "../lib/beat/clocked.ts";
import { crontab } from "../lib/beat/crontab.ts";
import type { BeatEntries } from "../lib/beat/entry.ts";
import { every } from "../lib/beat/every.ts";
import { Scheduler, type SchedulerOptions } from "../lib/beat/scheduler.ts";
import { MemoryBeatStore } from "../lib/beat/store_memory.ts";

/** A clock the test moves by hand. */
class Clock {
  t: number;
  constructor(iso: string) {
    this.t = Date.parse(iso);
  }
  now = () => new Date(this.t);
  set(iso: string) {
    this.t = Date.parse(iso);
  }
}

function setup(
  entries: BeatEntries,
  clock: Clock,
  store = new MemoryBeatStore({ now: () => clock.t }),
  extra: Partial<SchedulerOptions> = {},
) {
  const sent: { name: string; at: string; run: number }[] = [];
  const beat = new Scheduler({
    entries,
    store,
    now: clock.now,
    send: (name, _entry, tick) => {
      sent.push({ name, at: tick.scheduledAt.toISOString(), run: tick.runCount });
    },
    ...extra,
  });
  return { beat, store, sent };
}

Deno.test("Scheduler sends each tick once, at its time, and sleeps until the next one", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const { beat, sent } = setup({ ping: { task: "t.ping", schedule: every(10) } }, clock);
  assert.equal(await beat.tick(), 10_000); // first sight: owed from now on
  assert.equal(sent.length, 0);
  clock.set("2024-01-01T00:00:09.999Z");
  assert.equal(await beat.tick(), 1);
  clock.set("2024-01-01T00:00:10Z");
  assert.equal(await beat.tick(), 10_000);
  assert.equal(await beat.tick(), 10_000); // same instant again: no second send
  clock.set("2024-01-01T00:00:20.5Z");
  assert.equal(await beat.tick(), 9_500);
  assert.deepEqual(sent, [
    { name: "ping", at: "2024-01-01T00:00:10.000Z", run: 1 },
    { name: "ping", at: "2024-01-01T00:00:20.000Z", run: 2 },
  ]);
  await beat.close();
});

Deno.test("Scheduler sleeps at most the renew interval when nothing is due soon", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const { beat } = setup(
    { daily: { task: "t.d", schedule: crontab({ minute: 0, hour: 4 }) } },
    clock,
    undefined,
    { leaseTtl: 30_000 },
  );
  assert.equal(await beat.tick(), 10_000);
  await beat.close();
});

Deno.test("a restarted Scheduler neither skips nor repeats a tick", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const store = new MemoryBeatStore({ now: () => clock.t });
  const entries = { ping: { task: "t.ping", schedule: every(10) } };
  const first = setup(entries, clock, store);
  await first.beat.tick();
  clock.set("2024-01-01T00:00:10Z");
  await first.beat.tick();
  await first.beat.close(); // releases the lease
  // A new process, same instant: the 00:10 tick was already sent.
  const second = setup(entries, clock, store);
  await second.beat.tick();
  assert.equal(second.sent.length, 0);
  // Down across the 00:20 tick only: it is sent on start, not skipped.
  clock.set("2024-01-01T00:00:25Z");
  await second.beat.tick();
  assert.deepEqual(second.sent, [{ name: "ping", at: "2024-01-01T00:00:20.000Z", run: 2 }]);
  assert.deepEqual(await store.getState("ping"), {
    lastRunAt: Date.parse("2024-01-01T00:00:20Z"),
    totalRunCount: 2,
    since: Date.parse("2024-01-01T00:00:00Z"),
  });
  await second.beat.close();
});

Deno.test("catch-up after downtime sends ONE run for all missed ticks, then resumes", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const { beat, sent } = setup({
    ping: { task: "t.ping", schedule: every(10) },
    hourly: { task: "t.h", schedule: crontab({ minute: 0 }) },
  }, clock);
  await beat.tick();
  clock.set("2024-01-01T05:30:05Z"); // 1980 ping ticks and 5 hourly ticks missed
  await beat.tick();
  assert.deepEqual(sent, [
    { name: "ping", at: "2024-01-01T05:30:00.000Z", run: 1 },
    { name: "hourly", at: "2024-01-01T05:00:00.000Z", run: 1 },
  ]);
  clock.set("2024-01-01T05:30:10Z");
  await beat.tick();
  assert.equal(sent.length, 3);
  assert.equal(sent[2]!.at, "2024-01-01T05:30:10.000Z");
  await beat.close();
});

Deno.test("a follower sends nothing; it takes over when the leader's lease expires", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const store = new MemoryBeatStore({ now: () => clock.t });
  const entries = { ping: { task: "t.ping", schedule: every(1) } };
  const opts = { leaseTtl: 3_000, renewInterval: 1_000 };
  const a = setup(entries, clock, store, opts);
  const b = setup(entries, clock, store, opts);
  await a.beat.tick();
  assert.equal(await b.beat.tick(), 1_000);
  assert.ok(a.beat.isLeader && !b.beat.isLeader);
  for (let s = 1; s <= 3; s++) {
    clock.set(`2024-01-01T00:00:0${s}Z`);
    await a.beat.tick();
    await b.beat.tick();
  }
  assert.equal(a.sent.length, 3);
  assert.equal(b.sent.length, 0);
  // `a` stops ticking (a frozen process); `b` takes over after the lease ends.
  clock.set("2024-01-01T00:00:05Z");
  await b.beat.tick();
  assert.equal(b.sent.length, 0);
  clock.set("2024-01-01T00:00:06Z");
  await b.beat.tick();
  assert.ok(b.beat.isLeader);
  assert.deepEqual(b.sent.map((s) => s.at), ["2024-01-01T00:00:06.000Z"]);
  // `a` wakes up believing it leads: the renew fails and it does not send.
  clock.set("2024-01-01T00:00:07Z");
  await a.beat.tick();
  await b.beat.tick();
  assert.equal(a.sent.length, 3);
  assert.deepEqual(b.sent.map((s) => s.at).at(-1), "2024-01-01T00:00:07.000Z");
  await a.beat.close();
  await b.beat.close();
});

Deno.test("two overlapping leaders never send the same tick (per-tick claim)", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const store = new MemoryBeatStore({ now: () => clock.t });
  const entries = { ping: { task: "t.ping", schedule: every(1) } };
  // Without a lease both act as leaders: only the compare-and-set separates them.
  const a = setup(entries, clock, store, { lease: false });
  const b = setup(entries, clock, store, { lease: false });
  for (let s = 0; s <= 50; s++) {
    clock.t = Date.parse("2024-01-01T00:00:00Z") + s * 1_000;
    const pair = [a.beat, b.beat];
    if (s % 3 === 0) pair.reverse(); // let each win some races
    await Promise.all(pair.map((beat) => beat.tick()));
  }
  const all = [...a.sent, ...b.sent].map((s) => s.at);
  assert.equal(all.length, 50);
  assert.equal(new Set(all).size, 50);
  assert.ok(a.sent.length > 0 && b.sent.length > 0, "both replicas won some ticks");
  await a.beat.close();
  await b.beat.close();
});

Deno.test("a failed send is given back and retried, not lost", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const errors: unknown[] = [];
  let fail = true;
  const sent: string[] = [];
  await using beat = new Scheduler({
    entries: { ping: { task: "t.ping", schedule: every(10) } },
    store: new MemoryBeatStore({ now: () => clock.t }),
    now: clock.now,
    send: (_n, _e, tick) => {
      if (fail) throw new Error("broker down");
      sent.push(tick.scheduledAt.toISOString());
    },
    onError: (e) => errors.push(e),
  });
  await beat.tick();
  clock.set("2024-01-01T00:00:10Z");
  assert.equal(await beat.tick(), 1_000);
  assert.equal(errors.length, 1);
  fail = false;
  clock.set("2024-01-01T00:00:11Z");
  await beat.tick();
  assert.deepEqual(sent, ["2024-01-01T00:00:10.000Z"]);
});

Deno.test("a clocked entry fires once, even when its time passed before beat saw it", async () => {
  const clock = new Clock("2024-01-01T00:00:00Z");
  const { beat, sent } = setup({
    past: { task: "t.p", schedule: clocked("2023-12-31T00:00:00Z") },
    future: { task: "t.f", schedule: clocked("2024-01-01T00:00:05Z") },
  }, clock);
  await beat.tick();
  clock.set("2024-01-01T00:01:00Z");
  await beat.tick();
  await beat.tick();
  assert.deepEqual(sent.map((s) => s.name), ["past", "future"]);
  await beat.close();
});

Deno.test("Scheduler.run() with the real clock sends on time and stops on abort", async () => {
  const sent: number[] = [];
  const controller = new AbortController();
  const store = new MemoryBeatStore();
  const beat = new Scheduler({
    entries: { fast: { task: "t.fast", schedule: every("100ms") } },
    store,
    send: (_n, _e, tick) => void sent.push(Date.now() - tick.scheduledAt.getTime()),
    signal: controller.signal,
  });
  const running = beat.run();
  await new Promise((r) => setTimeout(r, 1_050));
  controller.abort();
  await running;
  await beat.close();
  assert.ok(sent.length >= 8 && sent.length <= 11, `sent ${sent.length}`);
  assert.ok(Math.max(...sent) < 80, `late by ${Math.max(...sent)} ms`);
  // The lease was released: another replica takes it at once.
  assert.ok(await store.acquireLease("other", 1_000));
});

Deno.test("Scheduler rejects malformed entries and options", () => {
  const store = new MemoryBeatStore();
  const send = () => {};
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new Scheduler({ entries: { x: { task: "t", schedule: "*/5" as any } }, store, send }),
    /schedule must come from every\(\), crontab\(\) or clocked\(\)/,
  );
  assert.throws(
    () => new Scheduler({ entries: { x: { task: "", schedule: every(1) } }, store, send }),
    /needs a task name/,
  );
  assert.throws(
    () => new Scheduler({ entries: {}, store, send, leaseTtl: 1_000, renewInterval: 2_000 }),
    RangeError,
  );
});

Deno.test("Scheduler wired to app.sendTask publishes a Celery task message", async () => {
  const { App } = await import("../lib/app.ts");
  const { decodeTask } = await import("../lib/protocol/message.ts");
  const broker = `memory://beat-${crypto.randomUUID()}`;
  await using app = new App({ broker, backend: "memory://" });
  const clock = new Clock("2024-01-01T00:00:00Z");
  await using beat = new Scheduler({
    entries: {
      "add-every-10s": { task: "tasks.add", schedule: every(10), args: [2], kwargs: { y: 3 } },
    },
    store: new MemoryBeatStore({ now: () => clock.t }),
    now: clock.now,
    send: (_name, entry) => app.sendTask(entry.task, entry.args, entry.kwargs, entry.options),
  });
  await beat.tick();
  clock.set("2024-01-01T00:00:10Z");
  await beat.tick();
  const controller = new AbortController();
  const b = await app.getBroker();
  for await (const delivery of b.consume(["celery"], { signal: controller.signal })) {
    const request = decodeTask(delivery.message);
    assert.equal(request.name, "tasks.add");
    assert.deepEqual(request.args, [2]);
    assert.deepEqual(request.kwargs, { y: 3 });
    await delivery.ack();
    controller.abort();
    break;
  }
});
