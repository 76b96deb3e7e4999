// Canvas: signatures, chain, group, chord, chunks/map/starmap, result graphs. Wire forms are
// checked against Python Celery 5.2.6's dicts and captured messages; the workflows run on an
// inline-pool worker over every result backend whose URL scheme is registered.
import assert from "node:assert/strict";
import {
  App,
  chain,
  chord,
  ChordError,
  chunks,
  Consumer,
  fromDict,
  group,
  GroupResult,
  pipe,
  signature,
  xmap,
  xstarmap,
} from "@celeriac/celeriac";
import { createBackend, createBroker } from "@celeriac/celeriac/transport";
import { decodeTask, type Message, type SignatureDict } from "@celeriac/celeriac/protocol";
import { fromKombuEnvelope } from "../lib/protocol/kombu.ts";

const fixture = (name: string) =>
  JSON.parse(Deno.readTextFileSync(new URL(`./fixtures/${name}.json`, import.meta.url)));

function decodeFixture(name: string) {
  return decodeTask(fromKombuEnvelope(fixture(name).envelope));
}

// Result backends to run the workflows on; a scheme not registered yet in lib/connect.ts is
// skipped. CELERIAC_CANVAS_BACKENDS (comma separated) overrides the list.
const BACKENDS = (Deno.env.get("CELERIAC_CANVAS_BACKENDS") ??
  `memory://,kv://${Deno.makeTempDirSync()}/canvas.sqlite3,redis://127.0.0.1:6379/1`)
  .split(",").map((u) => u.trim()).filter(Boolean);

async function supported(url: string): Promise<boolean> {
  try {
    const backend = await createBackend(url.startsWith("memory:") ? "memory://probe" : url);
    await backend.close();
    const broker = await createBroker(brokerFor(url, "probe"));
    await broker.close();
    return true;
  } catch (error) {
    if (error instanceof TypeError && /supported schemes/.test(error.message)) return false;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------
// Wire form (no worker).

const sig = (task: string, args: unknown[] = [], extra: Partial<SignatureDict> = {}) => ({
  task,
  args,
  kwargs: {},
  options: {},
  subtask_type: null,
  immutable: false,
  ...extra,
});

Deno.test("signatures serialize exactly as Celery's dicts", async () => {
  await using app = new App({ broker: "memory://", backend: "memory://" });
  const add = app.task("tasks.add", (x: number, y: number = 0) => x + y);
  app.task("tasks.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const tsum = signature("tasks.tsum");
  // Each expectation is Python's json.dumps() of the same canvas (celery 5.2.6).
  assert.deepEqual(
    JSON.parse(JSON.stringify(add.s(1).set({ queue: "q" }).onError(add.si(0, 0)))),
    sig("tasks.add", [1], {
      options: { queue: "q", link_error: [sig("tasks.add", [0, 0], { immutable: true })] },
    }),
  );
  assert.deepEqual(JSON.parse(JSON.stringify(chain(add.s(1, 2), add.s(3)))), {
    task: "celery.chain",
    args: [],
    kwargs: { tasks: [sig("tasks.add", [1, 2]), sig("tasks.add", [3])] },
    options: {},
    subtask_type: "chain",
    immutable: false,
  });
  assert.deepEqual(JSON.parse(JSON.stringify(group(add.s(1, 1), add.s(2, 2)))), {
    task: "celery.group",
    args: [],
    kwargs: { tasks: [sig("tasks.add", [1, 1]), sig("tasks.add", [2, 2])] },
    options: {},
    subtask_type: "group",
    immutable: false,
  });
  const chordDict = {
    task: "celery.chord",
    args: [],
    kwargs: {
      kwargs: {},
      header: [sig("tasks.add", [1]), sig("tasks.add", [2])],
      body: sig("tasks.tsum"),
    },
    options: {},
    subtask_type: "chord",
    immutable: false,
  };
  assert.deepEqual(
    JSON.parse(JSON.stringify(chord([add.s(1), add.s(2)], tsum))),
    chordDict,
  );
  // chain(x, group, y) upgrades the group to a chord whose body is y.
  const upgraded = JSON.parse(JSON.stringify(chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum)));
  assert.deepEqual(upgraded.kwargs.tasks, [sig("tasks.add", [1, 1]), chordDict]);
  // group | task and chain(group, task) are chords.
  assert.equal(pipe(group(add.s(1), add.s(2)), tsum).subtask_type, "chord");
  assert.equal(chain(group(add.s(1), add.s(2)), tsum).subtask_type, "chord");
  // A chord followed by more steps extends its body into a chain.
  const longer = JSON.parse(
    JSON.stringify(chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum, add.s(5))),
  );
  assert.equal(longer.kwargs.tasks[1].kwargs.body.subtask_type, "chain");
  assert.deepEqual(longer.kwargs.tasks[1].kwargs.body.kwargs.tasks, [
    sig("tasks.tsum"),
    sig("tasks.add", [5]),
  ]);
  // A group of one is unrolled in a chain.
  assert.deepEqual(
    JSON.parse(JSON.stringify(chain(group(add.s(1, 1)), tsum))).kwargs.tasks,
    [sig("tasks.add", [1, 1]), sig("tasks.tsum")],
  );
  assert.deepEqual(JSON.parse(JSON.stringify(add.chunks([[1, 2], [3, 4], [5, 6]], 2))), {
    task: "celery.chunks",
    args: [],
    kwargs: { task: sig("tasks.add"), it: [[1, 2], [3, 4], [5, 6]], n: 2 },
    options: {},
    subtask_type: null,
    immutable: true,
  });
  assert.deepEqual(JSON.parse(JSON.stringify(add.map([1, 2]))), {
    task: "celery.map",
    args: [],
    kwargs: { task: sig("tasks.add"), it: [1, 2] },
    options: {},
    subtask_type: null,
    immutable: true,
  });
  assert.equal(xstarmap(add, [[1, 2]]).task, "celery.starmap");
  assert.equal(xmap(add.s(), [1]).task, "celery.map");
  // Round trip: dict -> object -> dict is the identity, nested canvases included.
  const dict = JSON.parse(JSON.stringify(longer));
  assert.deepEqual(JSON.parse(JSON.stringify(fromDict(dict))), dict);
});

Deno.test("clone() prepends partial args unless immutable; link() and set() do not leak", async () => {
  await using app = new App({ broker: "memory://", backend: "memory://" });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const s = add.s(2);
  const c = s.clone([1], {}, { queue: "q" });
  assert.deepEqual(c.args, [1, 2]);
  assert.equal(c.options.queue, "q");
  assert.equal(s.options.queue, undefined);
  assert.deepEqual(add.si(2, 3).clone([1]).args, [2, 3]);
  s.link(add.s(3)).linkError(add.si(0, 0));
  assert.equal((s.options.link as unknown[]).length, 1);
  assert.equal(c.options.link, undefined);
  assert.throws(() => signature(""), TypeError);
  assert.throws(() => chunks(add, [[1]], 0), RangeError);
  await assert.rejects(() => signature("x").delay(), /no app/);
});

function publishedMessages(app: App) {
  const messages: { queue: string; message: Message }[] = [];
  app.addEventListener("beforeTaskPublish", (e) => {
    const d = (e as CustomEvent).detail;
    messages.push({ queue: d.queue, message: d.message });
  });
  return messages;
}

Deno.test("chain(): the first message carries the rest reversed, as Celery's captured chain", async () => {
  await using app = new App({ broker: "memory://", backend: "memory://" });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const mul = app.task("tasks.mul", (x: number, y: number) => x * y);
  const sent = publishedMessages(app);
  const r = await chain(add.s(1, 2), mul.s(10), add.si(5, 5).set({ queue: "other" })).delay();
  assert.equal(sent.length, 1);
  const mine = decodeTask(sent[0]!.message);
  const python = decodeFixture("task_chain");
  assert.deepEqual(mine.args, python.args);
  const shape = (s: SignatureDict) => ({
    task: s.task,
    args: s.args,
    immutable: s.immutable,
    keys: Object.keys(s.options).sort(),
  });
  // Celery 5.2's capture was without the queue option; everything else matches.
  assert.deepEqual(
    mine.embed.chain!.map(shape).map((s) => ({ ...s, keys: s.keys.filter((k) => k !== "queue") })),
    python.embed.chain!.map(shape),
  );
  assert.equal(mine.embed.chain![0]!.options.queue, "other");
  assert.equal(mine.group, null);
  // The chain's handle is the last task's, with parent links to the earlier ones.
  assert.equal(r.id, mine.embed.chain![0]!.options.task_id);
  assert.equal(r.parent?.id, mine.embed.chain![1]!.options.task_id);
  assert.equal(r.parent?.parent?.id, mine.id);
});

Deno.test("group() tags members with the group id and null group_index; chord() sets size, embed.chord and group_index", async () => {
  const ns = crypto.randomUUID();
  await using app = new App({ broker: `memory://${ns}`, backend: `memory://${ns}` });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const tsum = app.task("tasks.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const sent = publishedMessages(app);
  const g = await group(add.s(1, 1), add.s(2, 2)).applyAsync();
  assert.ok(g instanceof GroupResult);
  const members = sent.map((m) => decodeTask(m.message));
  const python = decodeFixture("task_group");
  for (const m of members) {
    assert.equal(m.group, g.id);
    assert.equal(m.groupIndex, python.groupIndex);
    assert.deepEqual(m.embed, python.embed);
  }
  assert.deepEqual(members.map((m) => m.id), g.results.map((r) => r.id));

  sent.length = 0;
  const r = await chord([add.s(1, 1), add.s(2, 2)], tsum.s()).delay();
  const header = sent.map((m) => decodeTask(m.message));
  const pyChord = decodeFixture("task_chord");
  assert.deepEqual(header.map((h) => h.groupIndex), [0, 1]);
  assert.equal(header[0]!.group, header[1]!.group);
  assert.equal(header[0]!.embed.chord!.task, pyChord.embed.chord!.task);
  assert.equal(header[0]!.embed.chord!.options.task_id, r.id);
  assert.ok(r.parent instanceof GroupResult);
  assert.equal(r.parent.id, header[0]!.group);
  assert.deepEqual(Object.keys(header[0]!.embed).sort(), Object.keys(pyChord.embed).sort());
  // The chord size is recorded before the header is sent: two parts complete it.
  const backend = await app.getBackend();
  assert.equal(
    await backend.chordPartReturn(r.parent.id, 0, { taskId: "a", status: "SUCCESS", result: 2 }),
    null,
  );
  assert.deepEqual(
    (await backend.chordPartReturn(r.parent.id, 1, {
      taskId: "b",
      status: "SUCCESS",
      result: 4,
    }))?.map((p) => p.result),
    [2, 4],
  );
});

Deno.test("link and link_error are sent in message form, as Celery's captured link", async () => {
  await using app = new App({ broker: "memory://", backend: "memory://" });
  const add = app.task("tasks.add", (x: number, y: number) => x + y);
  const mul = app.task("tasks.mul", (x: number, y: number) => x * y);
  const sent = publishedMessages(app);
  await add.s(2, 2).link(mul.s(3)).linkError(add.si(0, 0)).delay();
  const mine = decodeTask(sent[0]!.message);
  assert.deepEqual(mine.embed, decodeFixture("task_link").embed);
});

// ---------------------------------------------------------------------------------------
// Workflows on a worker, per backend.

// The broker goes with the backend: memory with memory, Redis db 0 with Redis, the same KV
// file with KV; every test run uses its own queue.
function brokerFor(backendUrl: string, ns: string): string {
  if (backendUrl.startsWith("redis")) return backendUrl.replace(/\/\d+$/, "/0");
  if (backendUrl.startsWith("kv:")) return backendUrl;
  return `memory://${ns}`;
}

function canvasApp(backendUrl: string) {
  const ns = crypto.randomUUID();
  const backend = backendUrl.startsWith("memory:") ? `memory://${ns}` : backendUrl;
  const app = new App({
    broker: brokerFor(backendUrl, ns),
    backend,
    defaultQueue: `canvas-${ns}`,
  });
  const calls = new Map<string, number>();
  const count = (key: string) => calls.set(key, (calls.get(key) ?? 0) + 1);
  const tasks = {
    add: app.task("tasks.add", (x: number, y: number = 0) => x + y),
    mul: app.task("tasks.mul", (x: number, y: number) => x * y),
    tsum: app.task("tasks.tsum", (xs: number[]) => {
      count("tsum");
      return xs.reduce((a, b) => a + b, 0);
    }),
    collectAll: app.task("tasks.collect", (xs: unknown[]) => {
      count("collect");
      return xs;
    }),
    boom: app.task("tasks.boom", (message: string) => {
      throw new TypeError(message);
    }),
    onError: app.task("tasks.on_error", (taskId: string) => {
      count(`errback:${taskId}`);
      count("errback");
      return taskId;
    }),
    sleepy: app.task("tasks.sleepy", async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    }),
  };
  return { app, calls, ...tasks };
}

async function withWorker<T>(
  app: App,
  fn: () => Promise<T>,
): Promise<T> {
  const stop = new AbortController();
  const worker = new Consumer(app, { pool: "inline", concurrency: 50, signal: stop.signal });
  const running = worker.run();
  try {
    return await fn();
  } finally {
    stop.abort();
    await running;
  }
}

const T = { timeout: 15_000 };

for (const url of BACKENDS) {
  const scheme = url.split(":")[0];
  const ignore = !(await supported(url));

  Deno.test({
    name: `[${scheme}] chain() feeds each result to the next; parents hold the earlier values`,
    ignore,
    fn: async () => {
      const { app, add, mul } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const r = await chain(add.s(1, 2), mul.s(10), add.si(5, 5), add.s(1)).delay();
        assert.equal(await r.get(T), 11);
        assert.equal(await r.parent!.get(T), 10);
        assert.equal(await r.parent!.parent!.get(T), 30);
        // Partial args given at call time go to the first task.
        const p = await chain(add.s(2), mul.s(3)).delay(1);
        assert.equal(await p.get(T), 9);
        // The first task's stored children name the next link; collect() walks the graph.
        const first = r.parent!.parent!.parent!;
        const seen: unknown[] = [];
        for await (const [, value] of first.collect(T)) seen.push(value);
        assert.deepEqual(seen, [3, 30, 10, 11]);
        assert.deepEqual((await first.children()).map((c) => c.id), [r.parent!.parent!.id]);
      });
    },
  });

  Deno.test({
    name: `[${scheme}] a failing chain link fails the rest of the chain and runs its errback once`,
    ignore,
    fn: async () => {
      const { app, add, boom, onError, calls } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const r = await chain(add.s(1, 1), boom.si("bad"), add.s(1)).linkError(onError.s())
          .delay();
        await assert.rejects(() => r.get(T), /bad/);
        await assert.rejects(() => r.parent!.get(T), /bad/);
        assert.equal(await r.parent!.parent!.get(T), 2);
        const failedId = r.parent!.id;
        await waitFor(() => calls.get(`errback:${failedId}`) === 1);
        await new Promise((res) => setTimeout(res, 50));
        assert.equal(calls.get("errback"), 1);
      });
    },
  });

  Deno.test({
    name: `[${scheme}] link() callbacks get the result; link_error errbacks get the task id`,
    ignore,
    fn: async () => {
      const { app, add, mul, boom, onError, calls } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const r = await add.s(2, 2).link(mul.s(3)).delay();
        assert.equal(await r.get(T), 4);
        const [child] = await r.children();
        assert.equal(await child!.get(T), 12);
        const f = await boom.s("x").linkError(onError.s()).delay();
        await assert.rejects(() => f.get(T), /x/);
        await waitFor(() => calls.get(`errback:${f.id}`) === 1);
      });
    },
  });

  Deno.test({
    name:
      `[${scheme}] group(): completion-order iteration, call-order join, nested groups, save/restore`,
    ignore,
    fn: async () => {
      const { app, add, sleepy } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const g = await group(sleepy.s(150), sleepy.s(1), group(sleepy.s(60), add.s(1, 1)))
          .applyAsync();
        assert.equal(g.results.length, 4);
        const order: unknown[] = [];
        for await (const meta of g) order.push(meta.result);
        assert.equal(order.at(-1), 150);
        assert.deepEqual(await g.join(T), [150, 1, 60, 2]);
        assert.equal(await g.completedCount(), 4);
        assert.equal(await g.ready(), true);
        await g.save();
        const back = await GroupResult.restore(app, g.id);
        assert.deepEqual(back?.results.map((r) => r.id), g.results.map((r) => r.id));
        assert.deepEqual(await back!.get(T), [150, 1, 60, 2]);
        await g.delete();
        assert.equal(await GroupResult.restore(app, g.id), null);
        // Partial args reach every member.
        const p = await group(add.s(1), add.s(2)).applyAsync([10]);
        assert.deepEqual(await p.get(T), [11, 12]);
      });
    },
  });

  Deno.test({
    name: `[${scheme}] chord() runs the body once with the header's results in order`,
    ignore,
    fn: async () => {
      const { app, add, sleepy, tsum, collectAll, calls } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const r = await chord([sleepy.s(80), add.s(1, 1), sleepy.s(20)], collectAll.s()).delay();
        assert.deepEqual(await r.get(T), [80, 2, 20]);
        assert.deepEqual(await (r.parent as GroupResult).get(T), [80, 2, 20]);
        // group | task and chain(group, task) are chords too.
        const g = await pipe(group(add.s(1, 1), add.s(2, 2)), tsum.s()).delay();
        assert.equal(await g.get(T), 6);
        const c = await chain(group(add.s(3, 3), add.s(4, 4)), tsum.s()).delay();
        assert.equal(await c.get(T), 14);
        // An empty header sends the body with [].
        const e = await chord([], tsum.s()).delay();
        assert.equal(await e.get(T), 0);
        await new Promise((res) => setTimeout(res, 50));
        assert.equal(calls.get("tsum"), 3);
        assert.equal(calls.get("collect"), 1);
      });
    },
  });

  Deno.test({
    name: `[${scheme}] a 1,000-member chord fires its body once with 1,000 results in order`,
    ignore,
    fn: async () => {
      const { app, add, collectAll, calls } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const n = 1000;
        const started = performance.now();
        const r = await chord(
          Array.from({ length: n }, (_, i) => add.s(i, 0)),
          collectAll.s(),
        ).delay();
        const value = await r.get({ timeout: 60_000 });
        const ms = performance.now() - started;
        assert.deepEqual(value, Array.from({ length: n }, (_, i) => i));
        await new Promise((res) => setTimeout(res, 100));
        assert.equal(calls.get("collect"), 1);
        // deno-lint-ignore no-console
        console.log(`    [${scheme}] 1000-member chord: ${ms.toFixed(0)} ms`);
      });
    },
  });

  Deno.test({
    name:
      `[${scheme}] a failing chord member fails the body with ChordError, get() throws the member's error (as Celery), its errback runs once`,
    ignore,
    fn: async () => {
      const { app, add, boom, tsum, onError, calls } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        const body = tsum.s().onError(onError.s());
        const r = await chord([add.s(1, 1), boom.si("header broke"), add.s(2, 2)], body).delay();
        // Celery's get() follows parents: the failing header member's own error.
        await assert.rejects(() => r.get(T), (e: Error) => {
          assert.equal(`${e.name}: ${e.message}`, "TypeError: header broke");
          return true;
        });
        // The body's stored result is unchanged: the ChordError naming the member.
        const stored = (await r.meta())!;
        assert.equal(stored.status, "FAILURE");
        assert.equal((stored.result as { exc_type: string }).exc_type, "ChordError");
        await assert.rejects(() => r.get({ ...T, followParents: false }), (e: Error) => {
          assert.ok(e instanceof ChordError, `${e.name}: ${e.message}`);
          assert.match(e.message, /Dependency .* raised TypeError\('header broke'\)/);
          return true;
        });
        await waitFor(() => calls.get(`errback:${r.id}`) === 1);
        await new Promise((res) => setTimeout(res, 100));
        assert.equal(calls.get("errback"), 1);
        assert.equal(calls.get("tsum"), undefined);
      });
    },
  });

  Deno.test({
    name:
      `[${scheme}] nested canvases: chord in a chain, group of chains, chain body, chord in a chord header`,
    ignore,
    fn: async () => {
      const { app, add, mul, tsum, collectAll } = canvasApp(url);
      await using _ = app;
      await withWorker(app, async () => {
        // add(1,1)=2 -> [2+1, 2+2] -> tsum=7 -> +5 = 12
        const a = await chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), add.s(5)).delay();
        assert.equal(await a.get(T), 12);
        // Group of chains.
        const b = await group(chain(add.s(1, 1), mul.s(10)), chain(add.s(2, 2), mul.s(10)))
          .applyAsync();
        assert.deepEqual(await b.get(T), [20, 40]);
        // Chord whose header members are chains and whose body is a chain.
        const c = await chord(
          [chain(add.s(1, 1), mul.s(10)), chain(add.s(2, 2), mul.s(10))],
          chain(tsum.s(), mul.s(2)),
        ).delay();
        assert.equal(await c.get(T), 120);
        // A chord inside a chord's header: the inner body is one part of the outer chord.
        const d = await chord(
          [chord([add.s(1, 1), add.s(2, 2)], tsum.s()), add.s(10, 10)],
          collectAll.s(),
        ).delay();
        assert.deepEqual(await d.get(T), [6, 20]);
        // Chain of groups: group -> chord body group -> join.
        const e = await chain(group(add.s(1, 1), add.s(2, 2)), tsum.s(), group(add.s(1), add.s(2)))
          .delay();
        const eg = e as unknown as GroupResult;
        assert.ok(eg instanceof GroupResult);
        assert.deepEqual(await eg.get(T), [7, 8]);
      });
    },
  });

  Deno.test({
    name: `[${scheme}] a canvas in Python's dict form is sent as Celery would`,
    ignore,
    fn: async () => {
      const { app } = canvasApp(url);
      await using _ = app;
      // Python: json.dumps(chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), add.s(5)))
      const python = JSON.parse(
        '{"task": "celery.chain", "args": [], "kwargs": {"tasks": [{"task": "tasks.add", "args": [1, 1], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}, {"task": "celery.chord", "args": [], "kwargs": {"kwargs": {}, "header": [{"task": "tasks.add", "args": [1], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}, {"task": "tasks.add", "args": [2], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}], "body": {"task": "celery.chain", "args": [], "kwargs": {"tasks": [{"task": "tasks.tsum", "args": [], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}, {"task": "tasks.add", "args": [5], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}]}, "options": {}, "subtask_type": "chain", "immutable": false}}, "options": {}, "subtask_type": "chord", "immutable": false}]}, "options": {}, "subtask_type": "chain", "immutable": false}',
      );
      await withWorker(app, async () => {
        const r = await fromDict(python, app).delay();
        assert.equal(await r.get(T), 12);
      });
    },
  });

  Deno.test({
    name: `[${scheme}] chunks, map and starmap run on Celery's builtin task names`,
    ignore,
    fn: async () => {
      const { app, add } = canvasApp(url);
      await using _ = app;
      const sent = publishedMessages(app);
      await withWorker(app, async () => {
        const m = await add.map([1, 2, 3]).delay();
        assert.deepEqual(await m.get(T), [1, 2, 3]);
        const s = await add.starmap([[1, 2], [3, 4]]).delay();
        assert.deepEqual(await s.get(T), [3, 7]);
        const c = await add.chunks([[1, 1], [2, 2], [3, 3]], 2).applyAsync();
        assert.deepEqual(await c.get(T), [[2, 4], [6]]);
        // Python sends celery.chunks as a task with kwargs {task, it, n}: the builtin expands it.
        const viaTask = await app.sendTask("celery.chunks", [], {
          task: add.s().toJSON(),
          it: [[5, 5], [6, 6]],
          n: 1,
        });
        const tuple = await viaTask.get(T) as unknown[];
        const [[gid]] = tuple as [[string]];
        assert.equal(typeof gid, "string");
        const members = (tuple[1] as [[string]][]).map(([[id]]) => app.asyncResult(id));
        assert.deepEqual(
          await new GroupResult(gid, members, app).get(T),
          [[10], [12]],
        );
      });
      assert.ok(sent.some((x) => decodeTask(x.message).name === "celery.map"));
      assert.ok(sent.some((x) => decodeTask(x.message).name === "celery.starmap"));
    },
  });
}

async function waitFor(predicate: () => boolean, ms = 10_000) {
  const until = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("workers pool: a chord, a chain and celery.chunks run with tasks in Web Workers", async () => {
  const { default: app, add } = await import("./apps/core_app.ts");
  const { startWorker } = await import("./_helpers.ts");
  await using _worker = startWorker(app, { concurrency: 2 });
  const r = await chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], add.si(40, 2)).delay();
  // The first result waits for the Web Workers to start (type checking on a cold cache).
  assert.equal(await r.get({ timeout: 90_000 }), 42);
  assert.deepEqual(await (r.parent as GroupResult).get(T), [2, 4, 6]);
  const c = await chain(add.s(1, 2), add.s(10), add.s(100)).delay();
  assert.equal(await c.get(T), 113);
  // The builtin runs in a Web Worker and sends the starmap group through the parent.
  const viaTask = await app.sendTask("celery.chunks", [], {
    task: add.s().toJSON(),
    it: [[1, 1], [2, 2], [3, 3]],
    n: 2,
  });
  const tuple = await viaTask.get(T) as [[string], [[string]][]];
  const members = tuple[1].map(([[id]]) => app.asyncResult(id));
  assert.deepEqual(await new GroupResult(tuple[0][0], members, app).get(T), [[2, 4], [6]]);
});
