// Eager canvases: `sig.apply()` (and `taskAlwaysEager`) run the whole canvas in process, with
// the same values, errors, callbacks, errbacks and signals as a worker. Each canvas is run
// both ways, on memory and on Redis (127.0.0.1:6379, keys under a unique prefix).
import assert from "node:assert/strict";
import {
  App,
  type AppEventType,
  chain,
  chord,
  ChordError,
  group,
  GroupResult,
  type Signature,
} from "@celeriac/celeriac";
import { withWorker } from "./_helpers.ts";
import { deleteByPrefix, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

const T = { timeout: 20_000 };

interface Setup {
  name: string;
  make(): { broker: string; backend: string; transportOptions?: Record<string, unknown> };
  cleanup?(prefix: string): Promise<void>;
}

const SETUPS: Setup[] = [
  {
    name: "memory",
    make: () => {
      const ns = crypto.randomUUID();
      return { broker: `memory://${ns}`, backend: `memory://${ns}` };
    },
  },
  {
    name: "redis",
    make: () => ({
      broker: REDIS,
      backend: REDIS_BACKEND,
      transportOptions: { global_keyprefix: `celeriac-eager-${crypto.randomUUID()}:` },
    }),
    cleanup: (prefix) => deleteByPrefix(prefix),
  },
];

function canvasApp(setup: Setup) {
  const conf = setup.make();
  const app = new App({ ...conf, defaultQueue: `eager-${crypto.randomUUID()}` });
  const calls = new Map<string, number>();
  const count = (key: string) => calls.set(key, (calls.get(key) ?? 0) + 1);
  const t = {
    add: app.task("tasks.add", (x: number, y: number = 0) => x + y),
    mul: app.task("tasks.mul", (x: number, y: number) => x * y),
    tsum: app.task("tasks.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0)),
    boom: app.task("tasks.boom", (message: string): number => {
      throw new RangeError(message);
    }),
    onError: app.task("tasks.on_error", (taskId: string) => {
      count("errback");
      return taskId;
    }),
    note: app.task("tasks.note", (value: unknown) => {
      count(`note:${JSON.stringify(value)}`);
      return value;
    }),
    flaky: app.task("tasks.flaky", function (x: number) {
      if (this.retries < 2) this.retry({ countdown: 0 });
      return x * 100;
    }, { maxRetries: 5 }),
  };
  const prefix = conf.transportOptions?.global_keyprefix as string | undefined;
  return { app, calls, ...t, prefix };
}

type Tasks = ReturnType<typeof canvasApp>;

// Every canvas the eager runner must agree with a worker on.
function zoo(t: Tasks): [string, () => Signature<unknown, unknown>][] {
  return [
    ["task", () => t.add.s(2, 3)],
    ["chain", () => chain(t.add.s(1, 2), t.mul.s(10), t.add.si(5, 5), t.add.s(1))],
    ["group", () => group(t.add.s(1, 1), t.mul.s(3, 3), t.add.s(10, 0))],
    ["chord", () => chord([t.add.s(1, 1), t.add.s(2, 2), t.add.s(3, 3)], t.tsum.s())],
    ["chunks", () => t.add.chunks([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], 2)],
    ["map", () => t.add.map([1, 2, 3])],
    ["starmap", () => t.add.starmap([[1, 2], [3, 4]])],
    [
      "chain with a chord",
      () => chain(t.add.s(1, 1), group(t.add.s(1), t.add.s(2)), t.tsum.s(), t.add.s(5)),
    ],
    [
      "group of chains",
      () => group(chain(t.add.s(1, 1), t.mul.s(10)), chain(t.add.s(2, 2), t.mul.s(10))),
    ],
    [
      "chord of chains with a chain body",
      () =>
        chord(
          [chain(t.add.s(1, 1), t.mul.s(10)), chain(t.add.s(2, 2), t.mul.s(10))],
          chain(t.tsum.s(), t.mul.s(2)),
        ),
    ],
    [
      "chord in a chord header",
      () => chord([chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()), t.add.s(10, 10)], t.note.s()),
    ],
    ["chain ending in a group", () => chain(t.add.s(1, 1), group(t.add.s(1), t.add.s(2)))],
    ["retries", () => chain(t.flaky.s(3), t.add.s(1))],
  ];
}

async function viaWorker(sig: Signature<unknown, unknown>): Promise<unknown> {
  const handle = await sig.applyAsync() as { get(o: typeof T): Promise<unknown> };
  return await handle.get(T);
}

const SIGNALS: AppEventType[] = [
  "taskPrerun",
  "taskSuccess",
  "taskFailure",
  "taskRetry",
  "taskPostrun",
];

function countSignals(app: App) {
  const counts = new Map<string, number>();
  const listeners = SIGNALS.map((type) => {
    const fn = () => counts.set(type, (counts.get(type) ?? 0) + 1);
    app.addEventListener(type, fn);
    return [type, fn] as const;
  });
  return {
    counts,
    [Symbol.dispose]: () => {
      for (const [type, fn] of listeners) app.removeEventListener(type, fn);
    },
  };
}

for (const setup of SETUPS) {
  Deno.test(`[${setup.name}] apply() runs every canvas to the end with the worker's values and signals`, async () => {
    const t = canvasApp(setup);
    await using _ = t.app;
    try {
      const eager = new Map<string, { value: unknown; signals: Map<string, number> }>();
      for (const [name, make] of zoo(t)) {
        using s = countSignals(t.app);
        const value = await make().apply().get();
        eager.set(name, { value, signals: new Map(s.counts) });
      }
      // Nothing was published: a worker started now finds no queued task.
      await withWorker(t.app, async () => {
        for (const [name, make] of zoo(t)) {
          using s = countSignals(t.app);
          const value = await viaWorker(make());
          // Follow-ups (the chord body, the next link) finish just after the value is stored.
          await new Promise((r) => setTimeout(r, 100));
          const mine = eager.get(name)!;
          assert.deepEqual(mine.value, value, `${name}: eager value`);
          assert.deepEqual(
            Object.fromEntries(mine.signals),
            Object.fromEntries(s.counts),
            `${name}: signals`,
          );
        }
      });
      // Spot checks, so agreement on a wrong value cannot pass.
      assert.equal(eager.get("chain")!.value, 11);
      assert.deepEqual(eager.get("group")!.value, [2, 9, 10]);
      assert.equal(eager.get("chord")!.value, 12);
      assert.deepEqual(eager.get("chunks")!.value, [[2, 4], [6, 8], [10]]);
      assert.equal(eager.get("chain with a chord")!.value, 12);
      assert.deepEqual(eager.get("chord in a chord header")!.value, [6, 20]);
      assert.deepEqual(eager.get("chain ending in a group")!.value, [3, 4]);
      assert.equal(eager.get("retries")!.value, 301);
    } finally {
      if (t.prefix) await setup.cleanup?.(t.prefix);
    }
  });

  Deno.test(`[${setup.name}] apply(): errors, errbacks and callbacks as on a worker`, async () => {
    const t = canvasApp(setup);
    await using _ = t.app;
    try {
      const failing = () =>
        chain(t.add.s(1, 1), t.boom.si("bad step"), t.add.s(1)).linkError(t.onError.s());
      const failingChord = () =>
        chord([t.add.s(1, 1), t.boom.si("bad member")], t.tsum.s().onError(t.onError.s()));
      const linked = () => t.add.s(2, 2).link(t.note.s()).link(t.mul.s(10));
      // Eager.
      const e = failing().apply();
      await assert.rejects(() => e.get(), /bad step/);
      assert.equal(await e.state(), "FAILURE");
      const handle = await e.handle();
      assert.equal(await handle!.parent!.parent!.get(), 2);
      assert.equal(t.calls.get("errback"), 1);
      // get() follows parents as Celery's: the failing member's error; the body keeps
      // its stored ChordError.
      const ec = failingChord().apply();
      await assert.rejects(
        () => ec.get(),
        (e: Error) => e.name === "RangeError" && e.message === "bad member",
      );
      assert.equal((((await ec.meta()).result) as { exc_type: string }).exc_type, "ChordError");
      await assert.rejects(() => ec.get({ followParents: false }), ChordError);
      assert.equal(t.calls.get("errback"), 2);
      assert.equal(await linked().apply().get(), 4);
      assert.equal(t.calls.get("note:4"), 1);
      // The two callbacks went out as one group, as Celery's tracer sends them.
      const linkedHandle = await linked().apply().handle();
      const [child] = await linkedHandle!.children();
      assert.ok(child instanceof GroupResult, "several callbacks are one group child");
      assert.deepEqual(await child.get(), [4, 40]);
      // The same on a worker.
      t.calls.clear();
      await withWorker(t.app, async () => {
        const r = await failing().delay();
        await assert.rejects(() => r.get(T), /bad step/);
        const fc = await failingChord().delay();
        await assert.rejects(
          () => fc.get(T),
          (e: Error) => e.name === "RangeError" && e.message === "bad member",
        );
        await assert.rejects(() => fc.get({ ...T, followParents: false }), ChordError);
        const l = await linked().delay();
        assert.equal(await l.get(T), 4);
        const [c] = await l.children();
        assert.ok(c instanceof GroupResult);
        assert.deepEqual(await c.get(T), [4, 40]);
        await new Promise((res) => setTimeout(res, 200));
      });
      assert.equal(t.calls.get("errback"), 2);
      assert.equal(t.calls.get("note:4"), 1);
    } finally {
      if (t.prefix) await setup.cleanup?.(t.prefix);
    }
  });
}

Deno.test("taskAlwaysEager: delay() of a chain, a group and a chord runs them whole and stores every result", async () => {
  const ns = crypto.randomUUID();
  await using app = new App({
    broker: `memory://${ns}`,
    backend: `memory://${ns}`,
    taskAlwaysEager: true,
  });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const tsum = app.task("tasks.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const c = await chain(add.s(1, 2), add.s(10), add.s(100)).delay();
  assert.equal(await c.get({ timeout: 1000 }), 113);
  assert.equal(await c.parent!.get({ timeout: 1000 }), 13);
  const g = await group(add.s(1, 1), add.s(2, 2)).applyAsync();
  assert.deepEqual(await g.get({ timeout: 1000 }), [2, 4]);
  const d = await chord([add.s(1, 1), add.s(2, 2)], tsum.s()).delay();
  assert.equal(await d.get({ timeout: 1000 }), 6);
  // The chain's first step's stored children name the next step.
  const first = c.parent!.parent!;
  assert.deepEqual((await first.children()).map((x) => x.id), [c.parent!.id]);
});
