// this.replace(sig) in the task context, with Celery 5.2's semantics: the replacement takes
// over the task's id (a client waiting on it gets the replacement's value), the task's links,
// errbacks, the rest of its chain and its chord membership move to the replacement, and the
// replaced run stores nothing of its own. A signature, a chain and a group; on memory and
// Redis, eagerly, and with a Python Celery client waiting on the replaced id.
import assert from "node:assert/strict";
import { App, chain, chord, group, type TaskContext } from "@celeriac/celeriac";
import { withWorker } from "./_helpers.ts";
import { deleteByPrefix, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

const T = { timeout: 20_000 };
const PYDIR = new URL("./python/", import.meta.url).pathname;

function replaceApp(
  conf: { broker: string; backend: string; transportOptions?: Record<string, unknown> },
  queue = `replace-${crypto.randomUUID()}`,
) {
  const app = new App({ ...conf, defaultQueue: queue });
  const calls = new Map<string, number>();
  const count = (key: string) => calls.set(key, (calls.get(key) ?? 0) + 1);
  const add = app.task("tsreplace.add", (x: number, y: number = 0) => x + y);
  const mul = app.task("tsreplace.mul", (x: number, y: number) => x * y);
  const tsum = app.task("tsreplace.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const boom = app.task("tsreplace.boom", (x: number): number => {
    throw new RangeError(`boom ${x}`);
  });
  const note = app.task("tsreplace.note", (value: unknown) => {
    count(`note:${JSON.stringify(value)}`);
    return value;
  });
  const onError = app.task("tsreplace.on_error", (taskId: string) => {
    count(`errback:${taskId}`);
    count("errback");
  });
  const ran = (name: string) =>
    function (this: TaskContext) {
      count(`ran:${name}`);
    };
  const toSig = app.task("tsreplace.to_sig", function (x: number) {
    ran("to_sig").call(this);
    return this.replace(add.s(x, 1));
  });
  const toChain = app.task("tsreplace.to_chain", function (x: number) {
    ran("to_chain").call(this);
    return this.replace(chain(add.s(x, 1), mul.s(10)));
  });
  const toGroup = app.task("tsreplace.to_group", function (x: number) {
    ran("to_group").call(this);
    return this.replace(group(add.s(x, 1), add.s(x, 2)));
  });
  const toBoom = app.task("tsreplace.to_boom", function (x: number) {
    return this.replace(boom.s(x));
  });
  return { app, calls, add, mul, tsum, note, onError, toSig, toChain, toGroup, toBoom, queue };
}

const SETUPS = [
  {
    name: "memory",
    conf: () => {
      const ns = crypto.randomUUID();
      return { broker: `memory://${ns}`, backend: `memory://${ns}`, prefix: "" };
    },
  },
  {
    name: "redis",
    conf: () => {
      const prefix = `celeriac-replace-${crypto.randomUUID()}:`;
      return {
        broker: REDIS,
        backend: REDIS_BACKEND,
        transportOptions: { global_keyprefix: prefix },
        prefix,
      };
    },
  },
];

async function waitFor(predicate: () => boolean, ms = 10_000) {
  const until = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const setup of SETUPS) {
  Deno.test(`[${setup.name}] replace() with a signature, a chain and a group keeps the id for the caller`, async () => {
    const { prefix, ...conf } = setup.conf();
    const r = replaceApp(conf);
    await using _ = r.app;
    const states: string[] = [];
    try {
      await withWorker(r.app, async () => {
        const s = await r.toSig.delay(1);
        const meta: string[] = [];
        assert.equal(await s.get({ ...T, onMessage: (m) => meta.push(m.status) }), 2);
        // The replaced run stored nothing of its own: the only state is the replacement's.
        assert.deepEqual(meta, ["SUCCESS"]);
        assert.equal((await s.meta())?.task_id, s.id);
        const c = await r.toChain.delay(2);
        assert.equal(await c.get(T), 30);
        const g = await r.toGroup.delay(3);
        assert.deepEqual(await g.get(T), [4, 5]);
        // Links, errbacks, the rest of a chain and chord membership move to the replacement.
        const linked = await r.toSig.s(10).link(r.note.s()).delay();
        assert.equal(await linked.get(T), 11);
        await waitFor(() => r.calls.get("note:11") === 1);
        const inChain = await chain(r.toChain.s(1), r.add.s(100)).delay();
        assert.equal(await inChain.get(T), 120);
        assert.equal(await inChain.parent!.get(T), 20);
        const inChord = await chord([r.toSig.s(1), r.toGroup.s(1), r.add.s(1, 1)], r.note.s())
          .delay();
        assert.deepEqual(await inChord.get(T), [2, [2, 3], 2]);
        const failing = await r.toBoom.s(7).linkError(r.onError.s()).delay();
        await assert.rejects(() => failing.get(T), /boom 7/);
        await waitFor(() => r.calls.get(`errback:${failing.id}`) === 1);
        await new Promise((res) => setTimeout(res, 200));
        assert.equal(r.calls.get("errback"), 1);
        assert.equal(r.calls.get("note:11"), 1);
        states.push(await s.state(), await c.state(), await g.state());
      });
      assert.deepEqual(states, ["SUCCESS", "SUCCESS", "SUCCESS"]);
      assert.equal(r.calls.get("ran:to_sig"), 3);
    } finally {
      if (prefix) await deleteByPrefix(prefix);
    }
  });
}

Deno.test("replace() in eager mode runs the replacement here and returns its value", async () => {
  const ns = crypto.randomUUID();
  const r = replaceApp({ broker: `memory://${ns}`, backend: `memory://${ns}` });
  await using _ = r.app;
  assert.equal(await r.toSig.apply([1]).get(), 2);
  assert.equal(await r.toChain.s(2).apply().get(), 30);
  assert.deepEqual(await r.toGroup.s(3).apply().get(), [4, 5]);
  assert.equal(await chain(r.toChain.s(1), r.add.s(100)).apply().get(), 120);
  // The task's own link runs once, after it returns the replacement's value.
  assert.equal(await r.toSig.s(10).link(r.note.s()).apply().get(), 11);
  assert.equal(r.calls.get("note:11"), 1);
  await assert.rejects(() => r.toBoom.s(7).apply().get(), /boom 7/);
});

Deno.test("replace(): a Python Celery client waiting on the replaced id gets the replacement's result", async () => {
  const prefix = `celeriac-replace-py-${crypto.randomUUID()}:`;
  const r = replaceApp({
    broker: REDIS,
    backend: REDIS_BACKEND,
    transportOptions: { global_keyprefix: prefix },
  });
  await using _ = r.app;
  try {
    const out = await withWorker(r.app, async () => {
      const calls = [
        { name: "tsreplace.to_sig", args: [1], queue: r.queue },
        { name: "tsreplace.to_chain", args: [2], queue: r.queue },
        { name: "tsreplace.to_group", args: [3], queue: r.queue },
      ];
      const child = await new Deno.Command("/usr/bin/python3", {
        args: ["replace_client.py", REDIS, REDIS_BACKEND, prefix, JSON.stringify(calls)],
        cwd: PYDIR,
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!child.success) throw new Error(new TextDecoder().decode(child.stderr));
      return JSON.parse(new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!);
    });
    assert.deepEqual(out.map((x: { result: unknown }) => x.result), [2, 30, [4, 5]]);
    assert.deepEqual(out.map((x: { state: string }) => x.state), ["SUCCESS", "SUCCESS", "SUCCESS"]);
  } finally {
    await deleteByPrefix(prefix);
  }
});
