// Result graphs and result sets: children a task sends from its own body (stored as the
// meta's `children`, as Celery does), collect(), getLeaf(), ResultSet/GroupResult parity,
// onMessage and join callbacks, and a chord whose member is not registered on the worker.
// On memory and on Redis (127.0.0.1:6379, broker keys under a unique prefix).
import assert from "node:assert/strict";
import {
  App,
  AsyncResult,
  chain,
  chord,
  ChordError,
  group,
  GroupResult,
  NotRegistered,
  ResultSet,
  signature,
} from "@celeriac/celeriac";
import { errorToInfo } from "../lib/protocol/exceptions.ts";
import { makeMeta } from "../lib/protocol/result_meta.ts";
import { withWorker } from "./_helpers.ts";
import { deleteByPrefix, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

const T = { timeout: 20_000 };

const SETUPS = [
  {
    name: "memory",
    conf: () => {
      const ns = crypto.randomUUID();
      return { broker: `memory://${ns}`, backend: `memory://${ns}`, prefix: null };
    },
  },
  {
    name: "redis",
    conf: () => {
      const prefix = `celeriac-graph-${crypto.randomUUID()}:`;
      return {
        broker: REDIS,
        backend: REDIS_BACKEND,
        transportOptions: { global_keyprefix: prefix },
        prefix,
      };
    },
  },
];

function graphApp(conf: ReturnType<(typeof SETUPS)[number]["conf"]>, taskAlwaysEager = false) {
  const { prefix, ...options } = conf;
  const app = new App({
    ...options,
    defaultQueue: `graph-${crypto.randomUUID()}`,
    taskAlwaysEager,
  });
  const calls = new Map<string, number>();
  const count = (key: string) => calls.set(key, (calls.get(key) ?? 0) + 1);
  const add = app.task("tasks.add", (x: number, y: number = 0) => x + y);
  const tsum = app.task("tasks.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const onError = app.task("tasks.on_error", (taskId: string) => {
    count(`errback:${taskId}`);
    count("errback");
  });
  const spawner = app.task("tasks.spawner", async (x: number) => {
    await add.delay(x, 1);
    await group(add.s(x, 2), add.s(x, 3)).applyAsync();
    await chain(add.s(x, 4), add.s(10)).delay();
    return "spawned";
  });
  const spawnThenFail = app.task("tasks.spawn_then_fail", async (x: number) => {
    await add.delay(x, 1);
    throw new RangeError("after spawning");
  });
  const progress = app.task("tasks.progress", async function (steps: number) {
    for (let i = 1; i <= steps; i++) {
      await this.updateState("PROGRESS", { current: i, total: steps });
      await new Promise((r) => setTimeout(r, 30));
    }
    return steps;
  });
  const sleeper = app.task("tasks.sleeper", async function (ms: number) {
    count("started");
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      this.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(this.signal.reason);
      }, { once: true });
    });
    return ms;
  });
  return { app, calls, add, tsum, onError, spawner, spawnThenFail, progress, sleeper, prefix };
}

for (const setup of SETUPS) {
  Deno.test(`[${setup.name}] tasks sent from a task body are its children; collect() and getLeaf() walk them`, async () => {
    const g = graphApp(setup.conf());
    await using _ = g.app;
    try {
      const check = async (parent: AsyncResult, timeout: typeof T) => {
        assert.equal(await parent.get(timeout), "spawned");
        const children = await parent.children();
        assert.equal(children.length, 3, "a task, a group and a chain");
        const [task, grp, last] = children;
        assert.ok(task instanceof AsyncResult && !(task instanceof GroupResult));
        assert.equal(await task.get(timeout), 6);
        assert.ok(grp instanceof GroupResult);
        assert.deepEqual(await grp.get(timeout), [7, 8]);
        // The chain's handle is its last step, with the first as parent (Celery's tuple).
        assert.ok(last instanceof AsyncResult);
        assert.equal(await last.get(timeout), 19);
        assert.equal(await last.parent!.get(timeout), 9);
        // The stored meta names them (what Flower shows).
        const meta = await parent.meta();
        assert.equal((meta?.children as unknown[]).length, 3);
        const values: unknown[] = [];
        for await (const [, value] of parent.collect(timeout)) values.push(value);
        assert.deepEqual(values.slice(0, 4), ["spawned", 6, [7, 8], 19]);
      };
      // Through a worker...
      await withWorker(g.app, async () => {
        await check(await g.spawner.delay(5), T);
        // getLeaf(): the last node of the graph, here a callback's callback.
        const r = await g.add.s(1, 1).link(g.add.s(10).link(g.add.s(100))).delay();
        assert.equal(await r.getLeaf(T), 112);
        assert.equal(await r.get(T), 2);
        // A task that fails after sending one still records it, as Celery does.
        const f = await g.spawnThenFail.delay(1);
        await assert.rejects(() => f.get(T), /after spawning/);
        const [sent] = await f.children();
        assert.equal(await sent!.get(T), 2);
      });
      // ... and with taskAlwaysEager: the body's sends run here too, and the graph is the same.
      const e = graphApp(setup.conf(), true);
      await using _e = e.app;
      await check(await e.spawner.delay(5), T);
      // apply() keeps the graph of an eager canvas in its own backend.
      const leaf = await e.add.s(1, 1).link(e.add.s(10).link(e.add.s(100))).apply().handle();
      assert.equal(await (leaf as AsyncResult).getLeaf(), 112);
      if (e.prefix) await deleteByPrefix(e.prefix);
    } finally {
      if (g.prefix) await deleteByPrefix(g.prefix);
    }
  });

  Deno.test(`[${setup.name}] a chord whose member is not registered: get() throws NotRegistered, the body stores ChordError; its errback runs once`, async () => {
    const g = graphApp(setup.conf());
    await using _ = g.app;
    try {
      await withWorker(g.app, async () => {
        const missing = signature("tasks.not_registered_here", [1]);
        const r = await chord(
          [g.add.s(1, 1), missing, g.add.s(2, 2)],
          g.tsum.s().onError(g.onError.s()),
        ).delay();
        // get() follows parents, as Celery's: the member's NotRegistered ...
        await assert.rejects(() => r.get(T), NotRegistered);
        // ... while the body's stored result is the ChordError naming it.
        await assert.rejects(() => r.get({ ...T, followParents: false }), (e: Error) => {
          assert.ok(e instanceof ChordError, `${e.name}: ${e.message}`);
          assert.match(e.message, /raised NotRegistered\(.*tasks\.not_registered_here.*\)/);
          return true;
        });
        const header = r.parent as GroupResult;
        await assert.rejects(() => header.results[1]!.get(T), NotRegistered);
        await waitFor(() => g.calls.get(`errback:${r.id}`) === 1);
        // A chord's own link_error goes to its body: it runs once too.
        const c = await chord([missing.clone(), g.add.s(3, 3)], g.tsum.s())
          .linkError(g.onError.s()).delay();
        await assert.rejects(() => c.get(T), NotRegistered);
        await assert.rejects(() => c.get({ ...T, followParents: false }), ChordError);
        await waitFor(() => g.calls.get(`errback:${c.id}`) === 1);
        await new Promise((res) => setTimeout(res, 300));
        assert.equal(g.calls.get("errback"), 2);
      });
    } finally {
      if (g.prefix) await deleteByPrefix(g.prefix);
    }
  });

  Deno.test(`[${setup.name}] ResultSet and GroupResult: waiting, ready, completedCount, joinNative, iterNative, callbacks, revoke(terminate)`, async () => {
    const g = graphApp(setup.conf());
    await using _ = g.app;
    try {
      await withWorker(g.app, async () => {
        const grp = await group(g.sleeper.s(200), g.add.s(1, 1), g.sleeper.s(50)).applyAsync();
        assert.equal(await grp.waiting(), true);
        const seen: [string, unknown][] = [];
        const messages: string[] = [];
        const values = await grp.joinNative({
          ...T,
          callback: (id, value) => seen.push([id, value]),
          onMessage: (meta) => messages.push(meta.status),
        });
        assert.deepEqual(values, [200, 2, 50]);
        assert.deepEqual(seen.at(-1), [grp.results[0]!.id, 200], "completion order");
        assert.equal(seen.length, 3);
        assert.deepEqual(messages, ["SUCCESS", "SUCCESS", "SUCCESS"]);
        assert.equal(await grp.waiting(), false);
        assert.equal(await grp.ready(), true);
        assert.equal(await grp.completedCount(), 3);
        const ids: string[] = [];
        for await (const meta of grp.iterNative(T)) ids.push(meta.task_id);
        assert.deepEqual(ids.sort(), grp.results.map((r) => r.id).sort());
        // A ResultSet of handles from anywhere.
        const set = new ResultSet([await g.add.delay(2, 2), await g.add.delay(3, 3)], g.app);
        set.add(set.results[0]!);
        assert.equal(set.results.length, 2);
        assert.deepEqual(await set.join(T), [4, 6]);
        assert.equal(set.discard(set.results[1]!.id), true);
        assert.deepEqual(await set.get(T), [4]);
        // revoke({ terminate }) reaches every member, running or not.
        const long = await group(g.sleeper.s(30_000), g.sleeper.s(30_000)).applyAsync();
        await waitFor(() => g.calls.get("started") === 4);
        await long.revoke({ terminate: true });
        const states = await Promise.all(long.results.map(async (r) => {
          await r.get({ ...T, propagate: false });
          return await r.state();
        }));
        assert.deepEqual(states, ["REVOKED", "REVOKED"]);
        assert.equal(await long.failed(), false);
        assert.equal(await long.successful(), false);
      });
    } finally {
      if (g.prefix) await deleteByPrefix(g.prefix);
    }
  });

  Deno.test(`[${setup.name}] get({ onMessage }) sees every stored state; onReady() calls back with the value`, async () => {
    const g = graphApp(setup.conf());
    await using _ = g.app;
    try {
      await withWorker(g.app, async () => {
        const r = await g.progress.delay(3);
        const states: unknown[] = [];
        const value = await r.get({
          ...T,
          onMessage: (meta) => states.push(meta.status === "PROGRESS" ? meta.result : meta.status),
        });
        assert.equal(value, 3);
        assert.equal(states.at(-1), "SUCCESS");
        assert.ok(
          states.some((s) => JSON.stringify(s) === JSON.stringify({ current: 3, total: 3 })),
          JSON.stringify(states),
        );
        let got: unknown;
        await (await g.add.delay(20, 22)).onReady((v) => {
          got = v;
        });
        assert.equal(got, 42);
        let failed: unknown;
        const bad = await g.app.sendTask("tasks.not_registered_here");
        await bad.onReady(() => {}, (e) => {
          failed = e;
        }, T);
        assert.ok(failed instanceof NotRegistered);
      });
    } finally {
      if (g.prefix) await deleteByPrefix(g.prefix);
    }
  });
}

async function waitFor(predicate: () => boolean | Promise<boolean>, ms = 10_000) {
  const until = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("get() of a failed result throws its oldest failed parent's error; a group parent its first failed member's", async () => {
  await using app = new App({ broker: "memory://", backend: "memory://" });
  const backend = await app.getBackend();
  const fail = async (id: string, error: Error) =>
    await backend.store(id, makeMeta(id, "FAILURE", errorToInfo(error)));
  const handle = (id: string, parent?: AsyncResult | GroupResult) => {
    const r = new AsyncResult(id, app);
    r.parent = parent;
    return r;
  };
  // ok -> group[ok, RangeError, TypeError] -> failed step -> failed leaf: oldest first.
  await backend.store("ok", makeMeta("ok", "SUCCESS", 1));
  await fail("m1", new RangeError("first member"));
  await fail("m2", new TypeError("second member"));
  await fail("step", new SyntaxError("step"));
  await fail("leaf", new ChordError("leaf"));
  const header = new GroupResult("g", [handle("ok"), handle("m1"), handle("m2")], app);
  header.parent = handle("ok");
  const leaf = handle("leaf", handle("step", header));
  await assert.rejects(() => leaf.get(T), { name: "RangeError", message: "first member" });
  await assert.rejects(() => leaf.get({ ...T, followParents: false }), ChordError);
  assert.ok(await leaf.get({ ...T, propagate: false }) instanceof ChordError);
  // Without the group, the step is the oldest failed parent; a pending parent is passed over.
  await assert.rejects(
    () => handle("leaf", handle("step", handle("pending"))).get(T),
    { name: "SyntaxError", message: "step" },
  );
  // A successful result does not look at its parents.
  await backend.store("fine", makeMeta("fine", "SUCCESS", 2));
  assert.equal(await handle("fine", header).get(T), 2);
});
