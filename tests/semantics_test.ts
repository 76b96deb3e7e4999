// Task execution semantics on memory://, with both pools: retries and backoff, Reject/Ignore,
// acks and dead-lettering, time limits at each level, rate limits, pool hygiene, result
// options, typed signals and eager mode.
import assert from "node:assert/strict";
import {
  App,
  type AppEvent,
  type AppEventType,
  type ConsumerOptions,
  MaxRetriesExceededError,
  TaskError,
  TimeLimitExceeded,
  WorkerLostError,
} from "@celeriac/celeriac";
import type { MemoryBroker, ResultMeta } from "@celeriac/celeriac/transport";
import type { Message } from "@celeriac/celeriac/protocol";
import semApp, { defineTasks, tasks as semTasks } from "./apps/semantics_app.ts";
import { eventually, startWorker } from "./_helpers.ts";
import { assertRate, rateOf } from "./_rate.ts";

const SEM_APP = new URL("./apps/semantics_app.ts", import.meta.url);
type Pool = "inline" | "workers";
const POOLS: Pool[] = ["inline", "workers"];

/** A fresh app (inline pool) or the module's app (Web Workers load it). */
function setup(pool: Pool) {
  if (pool === "workers") return { app: semApp, tasks: semTasks };
  const id = crypto.randomUUID();
  const app = new App({
    broker: `memory://sem-${id}`,
    backend: `memory://sem-${id}`,
    maxDeliveries: 3,
  });
  return { app, tasks: defineTasks(app) };
}

function worker(app: App, pool: Pool, options: ConsumerOptions = {}) {
  return startWorker(app, { pool, appModule: SEM_APP, concurrency: 2, ...options });
}

interface Sent {
  queue: string;
  message: Message;
  eta: Date | null;
  at: number;
}

/** Records what the worker republishes (retries, rate-limit hand-backs). */
async function recordSends(app: App): Promise<{ sent: Sent[]; restore: () => void }> {
  const broker = await app.getBroker();
  const sent: Sent[] = [];
  const schedule = broker.schedule;
  const publish = broker.publish;
  broker.schedule = (queue, message, eta, options) => {
    sent.push({ queue, message, eta, at: Date.now() });
    return schedule.call(broker, queue, message, eta, options);
  };
  broker.publish = (queue, message, options) => {
    sent.push({ queue, message, eta: null, at: Date.now() });
    return publish.call(broker, queue, message, options);
  };
  return {
    sent,
    restore: () => {
      broker.schedule = schedule;
      broker.publish = publish;
    },
  };
}

function collect<K extends AppEventType>(app: App, types: K[]) {
  const events: AppEvent<K>[] = [];
  const listener = (e: Event) => events.push(e as AppEvent<K>);
  for (const t of types) app.addEventListener(t, listener);
  return {
    events,
    [Symbol.dispose]: () => {
      for (const t of types) app.removeEventListener(t, listener);
    },
  };
}

async function states(app: App, id: string, signal?: AbortSignal): Promise<ResultMeta[]> {
  const seen: ResultMeta[] = [];
  for await (const meta of app.asyncResult(id).updates(signal ? { signal } : {})) seen.push(meta);
  return seen;
}

async function closeIfFresh(app: App) {
  if (app !== semApp) await app.close();
}

// ---------------------------------------------------------------------------------- retries

for (const pool of POOLS) {
  Deno.test(`${pool}: autoretry republishes the same id with retries + 1 and parent_id, at ETAs following factor * 2 ** retries`, async () => {
    const { app, tasks } = setup(pool);
    await using _w = worker(app, pool);
    const { sent, restore } = await recordSends(app);
    try {
      const r = await tasks.backoff.delay();
      await assert.rejects(() => r.get({ timeout: 30_000 }), (e: Error) => {
        assert.ok(e instanceof TaskError);
        assert.equal(e.name, "TypeError");
        assert.equal(e.message, "attempt 3");
        return true;
      });
      const retries = sent.filter((s) => s.message.headers.id === r.id && s.eta !== null);
      assert.equal(retries.length, 3);
      retries.forEach((s, i) => {
        assert.equal(s.message.headers.retries, i + 1);
        assert.equal(s.message.headers.parent_id, r.id);
        assert.equal(s.message.headers.root_id, r.id);
        // The ETA header and the broker-side ETA agree, and follow 0.1 * 2 ** retries seconds.
        assert.equal(new Date(String(s.message.headers.eta)).getTime(), s.eta!.getTime());
        const countdown = s.eta!.getTime() - s.at;
        const expected = 100 * 2 ** i;
        assert.ok(
          Math.abs(countdown - expected) <= 25,
          `retry ${i}: ${countdown} ms vs ${expected}`,
        );
      });
      const meta = await r.meta();
      assert.equal(meta?.status, "FAILURE");
      assert.deepEqual(meta?.result, {
        exc_type: "TypeError",
        exc_message: ["attempt 3"],
        exc_module: "builtins",
      });
    } finally {
      restore();
      await closeIfFresh(app);
    }
  });

  Deno.test(`${pool}: retry(exc) stores RETRY holding the exception, then FAILURE with the last error`, async () => {
    const { app, tasks } = setup(pool);
    await using _w = worker(app, pool);
    try {
      const r = await tasks.retryExc.delay();
      const seen = await states(app, r.id);
      const retry = seen.find((m) => m.status === "RETRY");
      assert.deepEqual(retry?.result, {
        exc_type: "RangeError",
        exc_message: ["try 0"],
        exc_module: "celeriac",
      });
      assert.match(String(retry?.traceback), /RangeError: try 0/);
      const last = seen.at(-1)!;
      assert.equal(last.status, "FAILURE");
      assert.deepEqual(last.result, {
        exc_type: "RangeError",
        exc_message: ["try 1"],
        exc_module: "celeriac",
      });
    } finally {
      await closeIfFresh(app);
    }
  });
}

Deno.test("inline: full jitter keeps every countdown within [0, factor * 2 ** retries]", async () => {
  const { app, tasks } = setup("inline");
  await using _w = worker(app, "inline");
  const { sent, restore } = await recordSends(app);
  try {
    const rs = await Promise.all(Array.from({ length: 4 }, () => tasks.jitter.delay()));
    for (const r of rs) await assert.rejects(() => r.get({ timeout: 30_000 }), TaskError);
    // The first send of each retry (the first sends of the tasks have retries 0; a scheduled
    // retry is published again when due). One whose jittered countdown is under a millisecond
    // or so is due at once and goes out with publish(), without an ETA: 0 ms.
    const firsts = new Map<string, Sent>();
    for (const s of sent) {
      const key = `${s.message.headers.id}:${s.message.headers.retries}`;
      if (Number(s.message.headers.retries) > 0 && !firsts.has(key)) firsts.set(key, s);
    }
    const countdowns = [...firsts.values()].map((s) => ({
      retries: Number(s.message.headers.retries) - 1,
      ms: s.eta === null ? 0 : s.eta.getTime() - s.at,
    }));
    assert.equal(countdowns.length, 12);
    for (const { retries, ms } of countdowns) {
      assert.ok(ms >= -5 && ms <= 200 * 2 ** retries + 5, `retry ${retries}: ${ms} ms`);
    }
    // Jittered: the 12 countdowns are not all the un-jittered value.
    assert.ok(countdowns.some(({ retries, ms }) => Math.abs(ms - 200 * 2 ** retries) > 20));
  } finally {
    restore();
    await app.close();
  }
});

Deno.test("inline: dontAutoretryFor marks an error unrecoverable; other errors still retry", async () => {
  const { app, tasks } = setup("inline");
  await using _w = worker(app, "inline");
  using events = collect(app, ["taskRetry"]);
  try {
    const bad = await tasks.unrecoverable.delay("range");
    await assert.rejects(() => bad.get({ timeout: 30_000 }), /bad input/);
    assert.equal(events.events.filter((e) => e.detail.id === bad.id).length, 0);
    const transient = await tasks.unrecoverable.delay("other");
    assert.equal(await transient.get({ timeout: 30_000 }), 2);
    assert.equal(events.events.filter((e) => e.detail.id === transient.id).length, 2);
  } finally {
    await app.close();
  }
});

Deno.test("inline: retry() past maxRetries without exc fails MaxRetriesExceededError; null retries forever; defaultRetryDelay applies", async () => {
  const { app, tasks } = setup("inline");
  await using _w = worker(app, "inline");
  const { sent, restore } = await recordSends(app);
  try {
    const capped = await tasks.retryNoExc.delay();
    await assert.rejects(() => capped.get({ timeout: 30_000 }), MaxRetriesExceededError);
    assert.equal((await capped.meta())?.result && (await capped.meta())!.status, "FAILURE");
    assert.equal(
      ((await capped.meta())!.result as { exc_module: string }).exc_module,
      "celery.exceptions",
    );
    const forever = await tasks.forever.delay();
    assert.equal(await forever.get({ timeout: 30_000 }), 5);
    const delayed = await tasks.defaultDelay.delay();
    assert.equal(await delayed.get({ timeout: 30_000 }), 1);
    const s = sent.find((x) => x.message.headers.id === delayed.id && x.eta !== null)!;
    const countdown = s.eta!.getTime() - s.at;
    assert.ok(Math.abs(countdown - 200) <= 25, `defaultRetryDelay gave ${countdown} ms`);
  } finally {
    restore();
    await app.close();
  }
});

// ------------------------------------------------------------------------------------ acks

Deno.test("inline: Reject(requeue: false) dead-letters an acksLate message; Ignore stores nothing", async () => {
  const { app, tasks } = setup("inline");
  await using _w = worker(app, "inline");
  using events = collect(app, ["taskRejected", "taskPostrun"]);
  try {
    const broker = await app.getBroker() as MemoryBroker;
    const r = await tasks.reject.delay();
    await eventually(() => broker.deadLetters("celery").length === 1);
    assert.equal(broker.deadLetters("celery")[0]!.headers.id, r.id);
    assert.equal(await r.state(), "PENDING");
    const rejected = events.events.find((e) => e.type === "taskRejected");
    assert.equal((rejected as AppEvent<"taskRejected">).detail.requeue, false);
    const ignored = await tasks.ignore.delay();
    await eventually(() =>
      events.events.some((e) =>
        e.type === "taskPostrun" && e.detail.id === ignored.id &&
        (e as AppEvent<"taskPostrun">).detail.state === "IGNORED"
      )
    );
    assert.equal(await ignored.state(), "PENDING");
  } finally {
    await app.close();
  }
});

Deno.test("inline: acksLate failures are acked by default, dead-lettered with acksOnFailureOrTimeout false", async () => {
  const { app, tasks } = setup("inline");
  await using _w = worker(app, "inline");
  try {
    const broker = await app.getBroker() as MemoryBroker;
    const acked = await tasks.lateFailAck.delay();
    await assert.rejects(() => acked.get({ timeout: 30_000 }), /fails/);
    const rejected = await tasks.lateFailReject.delay();
    await assert.rejects(() => rejected.get({ timeout: 30_000 }), /fails/);
    await eventually(() => broker.deadLetters("celery").length === 1);
    assert.equal(broker.deadLetters("celery")[0]!.headers.id, rejected.id);
  } finally {
    await app.close();
  }
});

Deno.test("workers: a poison task (kills its Web Worker) is redelivered, then dead-lettered after maxDeliveries", async () => {
  const app = semApp;
  await using _w = worker(app, "workers", { concurrency: 1 });
  using events = collect(app, ["taskPrerun", "taskRejected"]);
  const broker = await app.getBroker() as MemoryBroker;
  const before = broker.deadLetters("celery").length;
  const r = await semTasks.poison.delay();
  await assert.rejects(() => r.get({ timeout: 20_000 }), (e: Error) => {
    assert.ok(e instanceof WorkerLostError);
    assert.match(e.message, /dead-lettered/);
    return true;
  });
  assert.equal(
    events.events.filter((e) => e.type === "taskPrerun" && e.detail.id === r.id).length,
    3,
  );
  assert.equal(broker.deadLetters("celery").length, before + 1);
  assert.equal(broker.deadLetters("celery").at(-1)!.headers.id, r.id);
  // The worker is fine afterwards.
  assert.equal(await (await semTasks.add.delay(1, 2)).get({ timeout: 30_000 }), 3);
});

Deno.test("workers: without acksLate a lost Web Worker fails the task once, with no redelivery", async () => {
  await using _w = worker(semApp, "workers", { concurrency: 1 });
  using events = collect(semApp, ["taskPrerun"]);
  const r = await semTasks.lostEarly.delay();
  await assert.rejects(() => r.get({ timeout: 30_000 }), WorkerLostError);
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(events.events.filter((e) => e.detail.id === r.id).length, 1);
});

// ------------------------------------------------------------------------------ time limits

Deno.test("workers: hard limits per task, per call and per worker each stop a busy loop with TimeLimitExceeded", async () => {
  {
    await using _w = worker(semApp, "workers", { concurrency: 1 });
    // Per task: sent by name, so no timelimit header; the worker applies the task's option.
    const perTask = await semApp.sendTask("sem.spin_limited");
    await assert.rejects(() => perTask.get({ timeout: 30_000 }), TimeLimitExceeded);
    // Per call: the `timelimit` header.
    const perCall = await semTasks.spin.applyAsync([], {}, { timeLimit: 0.3 });
    await assert.rejects(() => perCall.get({ timeout: 30_000 }), TimeLimitExceeded);
    const meta = await perCall.meta();
    const exc = meta?.result as { exc_type: string; exc_module: string };
    assert.equal(meta?.status, "FAILURE");
    assert.equal(exc.exc_type, "TimeLimitExceeded");
    assert.equal(exc.exc_module, "billiard.exceptions");
  }
  {
    await using _w = worker(semApp, "workers", { concurrency: 1, timeLimit: 0.3 });
    const perWorker = await semTasks.spin.delay();
    await assert.rejects(() => perWorker.get({ timeout: 30_000 }), TimeLimitExceeded);
  }
});

Deno.test("workers: a task killed at its hard limit does not disturb the other tasks on the worker (concurrency 2)", async () => {
  await using w = worker(semApp, "workers", { concurrency: 2 });
  const stuck = await semTasks.spin.applyAsync([], {}, { timeLimit: 1.5 });
  const sleeps = await Promise.all(Array.from({ length: 6 }, () => semTasks.sleep.delay(100)));
  const done: number[] = [];
  await Promise.all(sleeps.map(async (r) => done.push(await r.get({ timeout: 30_000 }))));
  // Six 100 ms sleeps on the one free Web Worker finish while the other spins.
  assert.equal(await stuck.state(), "PENDING");
  await assert.rejects(() => stuck.get({ timeout: 30_000 }), TimeLimitExceeded);
  assert.deepEqual(done, [100, 100, 100, 100, 100, 100]);
  assert.equal(await (await semTasks.add.delay(2, 3)).get({ timeout: 30_000 }), 5);
  assert.equal(w.consumer.active, 0);
});

for (const pool of POOLS) {
  Deno.test(`${pool}: the task's softTimeLimit aborts its signal with SoftTimeLimitExceeded`, async () => {
    const { app, tasks } = setup(pool);
    await using _w = worker(app, pool);
    try {
      assert.equal(
        await (await tasks.soft.delay()).get({ timeout: 30_000 }),
        "SoftTimeLimitExceeded",
      );
    } finally {
      await closeIfFresh(app);
    }
  });
}

// ------------------------------------------------------------------------------ rate limits

for (const pool of POOLS) {
  Deno.test(`${pool}: rateLimit "10/s" delays tasks of that type (none dropped), within 10 % of the rate`, async () => {
    const { app, tasks } = setup(pool);
    await using _w = worker(app, pool, { concurrency: 4 });
    try {
      const rs = await Promise.all(Array.from({ length: 16 }, () => tasks.limited.delay()));
      const free = await tasks.now.delay();
      const times = await Promise.all(rs.map((r) => r.get({ timeout: 30_000 })));
      assertRate(rateOf(times), 10);
      const sorted = times.sort((a, b) => a - b);
      // Other task types are not held back.
      assert.ok((await free.get({ timeout: 30_000 })) < sorted[3]!);
    } finally {
      await closeIfFresh(app);
    }
  });
}

Deno.test("inline: a rate-limited task further away than rateLimitHoldMs goes back to the broker, not the bin", async () => {
  const { app, tasks } = setup("inline");
  await using _w = worker(app, "inline", { rateLimitHoldMs: 250 });
  const { sent, restore } = await recordSends(app);
  try {
    const rs = await Promise.all(Array.from({ length: 12 }, () => tasks.limited.delay()));
    const times = await Promise.all(rs.map((r) => r.get({ timeout: 15_000 })));
    assert.equal(times.length, 12);
    const handedBack = sent.filter((s) => s.eta !== null);
    assert.ok(handedBack.length > 0, "some messages went back to the broker");
    assert.ok(handedBack.every((s) => s.eta!.getTime() - s.at > 250));
    assertRate(rateOf(times), 10);
  } finally {
    restore();
    await app.close();
  }
});

Deno.test("inline: setRateLimit changes a task type's rate at run time", async () => {
  const { app, tasks } = setup("inline");
  await using w = worker(app, "inline");
  try {
    w.consumer.setRateLimit("sem.now", "5/s");
    const limited = await Promise.all(
      Array.from(
        { length: 6 },
        async () => await (await tasks.now.delay()).get({ timeout: 30_000 }),
      ),
    );
    assertRate(rateOf(limited), 5);
    w.consumer.setRateLimit("sem.limited", 0);
    const t0 = Date.now();
    await Promise.all(
      Array.from(
        { length: 10 },
        async () => (await tasks.limited.delay()).get({ timeout: 30_000 }),
      ),
    );
    // At its own 10/s, the ten would take at least 900 ms.
    assert.ok(Date.now() - t0 < 850, "the task's own 10/s no longer applies");
    assert.throws(() => w.consumer.setRateLimit("sem.now", "fast"), TypeError);
  } finally {
    await app.close();
  }
});

Deno.test("inline: globalRateLimit is shared by two workers on the same broker", async () => {
  const { app, tasks } = setup("inline");
  await using _a = worker(app, "inline", { hostname: "a@sem", prefetchMultiplier: 1 });
  await using _b = worker(app, "inline", { hostname: "b@sem", prefetchMultiplier: 1 });
  using events = collect(app, ["taskPrerun"]);
  try {
    const rs = await Promise.all(Array.from({ length: 16 }, () => tasks.global.delay()));
    const runs = await Promise.all(rs.map((r) => r.get({ timeout: 30_000 })));
    assertRate(rateOf(runs.map((r) => r.at)), 10);
    const hosts = new Set(events.events.map((e) => e.detail.hostname));
    assert.equal(hosts.size, 2, "both workers ran some");
  } finally {
    await app.close();
  }
});

// ---------------------------------------------------------------------------- pool hygiene

Deno.test("workers: maxTasksPerChild recycles a Web Worker after N tasks", async () => {
  await using _w = worker(semApp, "workers", { concurrency: 1, maxTasksPerChild: 2 });
  const counts = [];
  for (let i = 0; i < 5; i++) {
    counts.push(await (await semTasks.counter.delay()).get({ timeout: 30_000 }));
  }
  assert.deepEqual(counts, [1, 2, 1, 2, 1]);
});

Deno.test("workers: maxMemoryPerChild recycles a Web Worker once its heap passes the limit", async () => {
  type Hoard = { runs: number; heapUsed: number };
  const hoard = async (mb: number) =>
    await (await semTasks.hoard.delay(mb)).get({ timeout: 30_000 }) as Hoard;
  let baseline: number;
  {
    await using _w = worker(semApp, "workers", { concurrency: 1 });
    const a = await hoard(1);
    const b = await hoard(16);
    assert.equal(b.runs, a.runs + 1, "no limit: the same Web Worker");
    baseline = a.heapUsed;
  }
  {
    // The limit sits 40 MiB above a fresh Web Worker's memory; each run keeps 16 MiB more.
    const limitKiB = Math.round(baseline / 1024) + 40 * 1024;
    await using _w = worker(semApp, "workers", { concurrency: 1, maxMemoryPerChild: limitKiB });
    const runs: number[] = [];
    for (let i = 0; i < 7; i++) runs.push((await hoard(16)).runs);
    // Past the limit the Web Worker is replaced after its task, and the counts restart at 1.
    assert.ok(runs.slice(1).includes(1), `runs ${runs}`);
    assert.ok(Math.max(...runs) <= 4, `runs ${runs}`);
  }
});

Deno.test("workers: autoscale grows while tasks wait for a slot and shrinks after the keepalive", async () => {
  await using w = worker(semApp, "workers", {
    autoscale: { max: 3, min: 1 },
    autoscaleKeepaliveMs: 300,
  });
  await eventually(() => w.consumer.poolSize === 1);
  // Nine 1 s tasks: with one Web Worker they would wait 8 s for a slot, so the pool grows.
  const rs = await Promise.all(Array.from({ length: 9 }, () => semTasks.sleep.delay(1000)));
  await eventually(() => w.consumer.poolSize === 3, 15_000);
  await Promise.all(rs.map((r) => r.get({ timeout: 30_000 })));
  await eventually(() => w.consumer.poolSize === 1, 15_000);
  assert.equal(await (await semTasks.add.delay(1, 1)).get({ timeout: 30_000 }), 2);
});

Deno.test("inline: prefetchMultiplier 0 warns that prefetch is unlimited", async () => {
  const warnings: string[] = [];
  const { app, tasks } = setup("inline");
  app.logger = { debug() {}, info() {}, error() {}, warn: (m) => warnings.push(m) };
  await using _w = worker(app, "inline", { prefetchMultiplier: 0 });
  try {
    assert.equal(await (await tasks.add.delay(1, 1)).get({ timeout: 30_000 }), 2);
    assert.ok(warnings.some((w) => /unlimited prefetch/.test(w)));
  } finally {
    await app.close();
  }
});

// --------------------------------------------------------------------------- result options

for (const pool of POOLS) {
  Deno.test(`${pool}: ignoreResult stores nothing, failures only with storeErrorsEvenIfIgnored`, async () => {
    const { app, tasks } = setup(pool);
    await using _w = worker(app, pool);
    using events = collect(app, ["taskPostrun"]);
    try {
      const ok = await tasks.ignored.delay();
      const fail = await tasks.ignoredFail.delay();
      const stored = await tasks.ignoredFailStored.delay();
      await assert.rejects(() => stored.get({ timeout: 30_000 }), /stored anyway/);
      await eventually(() =>
        [ok.id, fail.id].every((id) => events.events.some((e) => e.detail.id === id))
      );
      assert.equal(await ok.state(), "PENDING");
      assert.equal(await fail.state(), "PENDING");
    } finally {
      await closeIfFresh(app);
    }
  });

  Deno.test(`${pool}: trackStarted stores STARTED, and updateState streams custom states to a waiting client`, async () => {
    const { app, tasks } = setup(pool);
    await using _w = worker(app, pool);
    try {
      const started = await tasks.started.delay();
      const seen = (await states(app, started.id)).map((m) => m.status);
      assert.deepEqual(seen, ["STARTED", "SUCCESS"]);
      const progress = await tasks.progress.delay(3);
      const metas = await states(app, progress.id);
      assert.deepEqual(
        metas.map((m) => [m.status, m.result]),
        [
          ["PROGRESS", { current: 1, total: 3 }],
          ["PROGRESS", { current: 2, total: 3 }],
          ["PROGRESS", { current: 3, total: 3 }],
          ["SUCCESS", "done"],
        ],
      );
    } finally {
      await closeIfFresh(app);
    }
  });
}

// --------------------------------------------------------------------------------- signals

for (const pool of POOLS) {
  Deno.test(`${pool}: typed signals fire in order for a task that retries then fails`, async () => {
    const { app, tasks } = setup(pool);
    const seen: string[] = [];
    const onRetry = (e: AppEvent<"taskRetry">) => {
      // Typed details: these type-check without casts.
      const eta: Date = e.detail.eta;
      seen.push(`retry:${e.detail.retries}:${e.detail.reason?.exc_type}:${eta instanceof Date}`);
    };
    const listeners = {
      beforeTaskPublish: (e: AppEvent<"beforeTaskPublish">) => seen.push(`before:${e.detail.name}`),
      afterTaskPublish: (e: AppEvent<"afterTaskPublish">) => seen.push(`after:${e.detail.queue}`),
      taskPrerun: (e: AppEvent<"taskPrerun">) => seen.push(`prerun:${e.detail.args.length}`),
      taskPostrun: (e: AppEvent<"taskPostrun">) => seen.push(`postrun:${e.detail.state}`),
      taskFailure: (e: AppEvent<"taskFailure">) =>
        seen.push(`failure:${e.detail.exception.exc_type}`),
    };
    app.addEventListener("taskRetry", onRetry);
    app.addEventListener("beforeTaskPublish", listeners.beforeTaskPublish);
    app.addEventListener("afterTaskPublish", listeners.afterTaskPublish);
    app.addEventListener("taskPrerun", listeners.taskPrerun);
    app.addEventListener("taskPostrun", listeners.taskPostrun);
    app.addEventListener("taskFailure", listeners.taskFailure);
    try {
      await using _w = worker(app, pool);
      const r = await tasks.retryExc.delay();
      await assert.rejects(() => r.get({ timeout: 30_000 }));
      await eventually(() => seen.filter((s) => s.startsWith("postrun")).length === 2);
      assert.deepEqual(seen, [
        "before:sem.retry_exc",
        "after:celery",
        "prerun:0",
        "retry:0:RangeError:true",
        "postrun:RETRY",
        "prerun:0",
        "failure:RangeError",
        "postrun:FAILURE",
      ]);
    } finally {
      app.removeEventListener("taskRetry", onRetry);
      app.removeEventListener("beforeTaskPublish", listeners.beforeTaskPublish);
      app.removeEventListener("afterTaskPublish", listeners.afterTaskPublish);
      app.removeEventListener("taskPrerun", listeners.taskPrerun);
      app.removeEventListener("taskPostrun", listeners.taskPostrun);
      app.removeEventListener("taskFailure", listeners.taskFailure);
      await closeIfFresh(app);
    }
  });
}

Deno.test("inline: workerReady, workerShuttingDown, taskSuccess, taskUnknown and taskRevoked carry typed details", async () => {
  const { app, tasks } = setup("inline");
  using events = collect(app, [
    "workerReady",
    "workerShuttingDown",
    "taskSuccess",
    "taskUnknown",
    "taskRevoked",
  ]);
  try {
    {
      await using _w = worker(app, "inline", { hostname: "sig@test" });
      assert.equal(await (await tasks.add.delay(2, 3)).get({ timeout: 30_000 }), 5);
      const unknown = await app.sendTask("sem.nope");
      await assert.rejects(() => unknown.get({ timeout: 30_000 }));
      const expired = await tasks.add.applyAsync([1, 1], {}, {
        expires: new Date(Date.now() - 1000),
      });
      await eventually(async () => (await expired.state()) === "REVOKED");
    }
    const byType = (t: string) => events.events.filter((e) => e.type === t);
    assert.equal((byType("workerReady")[0] as AppEvent<"workerReady">).detail.hostname, "sig@test");
    assert.equal(byType("workerShuttingDown").length, 1);
    const success = byType("taskSuccess")[0] as AppEvent<"taskSuccess">;
    assert.equal(success.detail.result, 5);
    assert.ok(success.detail.runtime >= 0);
    assert.equal((byType("taskUnknown")[0] as AppEvent<"taskUnknown">).detail.name, "sem.nope");
    assert.equal((byType("taskRevoked")[0] as AppEvent<"taskRevoked">).detail.expired, true);
  } finally {
    await app.close();
  }
});

// ----------------------------------------------------------------------------------- eager

Deno.test("eager: apply() autoretries at once (no countdown wait) with the worker's signals", async () => {
  const { app, tasks } = setup("inline");
  using events = collect(app, ["taskPrerun", "taskRetry", "taskFailure", "taskPostrun"]);
  try {
    const t0 = Date.now();
    const r = tasks.backoff.apply();
    await assert.rejects(() => r.get(), /attempt 3/);
    assert.ok(Date.now() - t0 < 500, "eager retries do not sleep");
    assert.deepEqual(
      events.events.map((e) => e.type),
      [
        ...Array(3).fill(["taskPrerun", "taskRetry", "taskPostrun"]).flat(),
        "taskPrerun",
        "taskFailure",
        "taskPostrun",
      ],
    );
    const transient = tasks.unrecoverable.apply(["other"]);
    assert.equal(await transient.get(), 2);
  } finally {
    await app.close();
  }
});

Deno.test("eager: taskAlwaysEager stores RETRY-then-SUCCESS outcomes like a worker", async () => {
  const id = crypto.randomUUID();
  await using app = new App({
    broker: `memory://sem-${id}`,
    backend: `memory://sem-${id}`,
    taskAlwaysEager: true,
  });
  const tasks = defineTasks(app);
  const r = await tasks.forever.delay();
  assert.equal(await r.get({ timeout: 1000 }), 5);
  assert.equal(await r.state(), "SUCCESS");
});
