// Celery 5.3+ stamps and `replaced_task_nesting` on every message a task sends as a follow-up:
// the next chain step, links, errbacks, a chord body, retries and replace(). Stamps live in
// the signatures' options (Celery's `Signature.stamp`), so what a worker sends from a stamped
// signature carries them; a retry keeps the request's. Run on the memory broker with an
// inline-pool worker; each published message's headers are checked, and each run's
// `this.stamps` / `this.replacedTaskNesting`.
import assert from "node:assert/strict";
import { App, chain, chord, group, signature, type TaskContext } from "@celeriac/celeriac";
import { encodeTask } from "@celeriac/celeriac/protocol";
import { eventually, startWorker } from "./_helpers.ts";

const T = { timeout: 10_000 };

interface Seen {
  stamps: Record<string, unknown>;
  stampedHeaders: readonly string[];
  nesting: number;
}

function stampApp() {
  const app = new App({ broker: "memory://", backend: "memory://" });
  const seen = new Map<string, Seen>();
  const published: { name: string; id: string; headers: Record<string, unknown> }[] = [];
  app.addEventListener("beforeTaskPublish", (e) => {
    published.push({ name: e.detail.name, id: e.detail.id, headers: e.detail.message.headers });
  });
  const runs: { id: string; retries: number; stamps: Record<string, unknown>; nesting: number }[] =
    [];
  const record = (ctx: TaskContext) => {
    runs.push({
      id: ctx.id,
      retries: ctx.retries,
      stamps: { ...ctx.stamps },
      nesting: ctx.replacedTaskNesting,
    });
    seen.set(ctx.id, {
      stamps: { ...ctx.stamps },
      stampedHeaders: [...ctx.stampedHeaders],
      nesting: ctx.replacedTaskNesting,
    });
  };
  const add = app.task("st.add", function (x: number, y: number = 0) {
    record(this);
    return x + y;
  });
  const boom = app.task("st.boom", function (): number {
    record(this);
    throw new RangeError("boom");
  });
  const onError = app.task("st.on_error", function (_id: string) {
    record(this);
    return "handled";
  });
  const tsum = app.task("st.tsum", function (xs: number[]) {
    record(this);
    return xs.reduce((a, b) => a + b, 0);
  });
  const flaky = app.task("st.flaky", function (x: number) {
    record(this);
    if (this.retries < 1) this.retry({ countdown: 0 });
    return x;
  }, { maxRetries: 3 });
  const replacer = app.task("st.replacer", function (x: number) {
    record(this);
    return this.replace(chain(add.s(x, 1), add.s(10)));
  });
  const replacer2 = app.task("st.replacer2", function (x: number) {
    record(this);
    return this.replace(replacer.s(x));
  });
  const stampsOf = (name: string) =>
    published.filter((p) => p.name === name).map((p) => ({
      stamped_headers: p.headers.stamped_headers,
      stamps: p.headers.stamps,
    }));
  return {
    app,
    seen,
    runs,
    published,
    stampsOf,
    add,
    boom,
    onError,
    tsum,
    flaky,
    replacer,
    replacer2,
  };
}

Deno.test("an unstamped message sends the 5.3+ headers as Celery does: nesting 0, no stamps", () => {
  const m = encodeTask({ id: "1", name: "t", args: [], kwargs: {} });
  assert.equal(m.headers.replaced_task_nesting, 0);
  assert.equal(m.headers.stamped_headers, null);
  assert.deepEqual(m.headers.stamps, {});
  const s = encodeTask({ id: "1", name: "t", args: [], kwargs: {}, stamps: { mon: "x" } });
  assert.deepEqual(s.headers.stamped_headers, ["mon"]);
  assert.deepEqual(s.headers.stamps, { mon: "x" });
});

Deno.test("stamp() writes Celery's option form: chain and group tasks, links; a chord's header only", () => {
  const a = signature("t.a", [1]);
  a.link(signature("t.cb"));
  a.linkError(signature("t.eb"));
  a.stamp({ mon: "l" });
  assert.deepEqual(a.options.stamped_headers, ["mon"]);
  assert.equal(a.options.mon, "l");
  for (const key of ["link", "link_error"]) {
    const [l] = a.options[key] as { options: Record<string, unknown> }[];
    assert.deepEqual(l!.options, { mon: "l", stamped_headers: ["mon"] });
  }
  // Celery 5.6: the new value wins, a list is extended by the one already there.
  const b = signature("t.a").stamp({ mon: "y" }).stamp({ mon: "z", other: 1 });
  assert.deepEqual(b.options, { mon: "z", other: 1, stamped_headers: ["mon", "other"] });
  const tags = signature("t.a").stamp({ tags: ["p"] }).stamp({ tags: ["q"] });
  assert.deepEqual(tags.options.tags, ["q", "p"]);
  const c = chain(signature("t.a"), group(signature("t.b"), signature("t.c"))).stamp({ m: 1 });
  const d = JSON.parse(JSON.stringify(c));
  assert.equal(d.kwargs.tasks[0].options.m, 1);
  for (const t of d.kwargs.tasks[1].kwargs.tasks) assert.equal(t.options.m, 1);
  assert.equal(d.options.m, undefined);
  const ch = JSON.parse(
    JSON.stringify(chord([signature("t.a"), signature("t.b")], signature("t.s")).stamp({ m: 2 })),
  );
  const header = Array.isArray(ch.kwargs.header) ? ch.kwargs.header : ch.kwargs.header.kwargs.tasks;
  for (const t of header) assert.equal(t.options.m, 2);
  assert.equal(ch.kwargs.body.options.m, undefined);
  assert.throws(() => signature("t.a").stamp(null as never), TypeError);
});

Deno.test("a stamped chain's next steps are sent with the stamps, and each run sees them", async () => {
  const t = stampApp();
  await using _app = t.app;
  await using _w = startWorker(t.app, { pool: "inline" });
  const c = chain(t.add.s(1, 2), t.add.s(3), t.add.s(4)).stamp({ mon: "x", tags: ["a"] });
  const r = await c.applyAsync();
  assert.equal(await r.get(T), 10);
  const want = { stamped_headers: ["mon", "tags"], stamps: { mon: "x", tags: ["a"] } };
  // The first message from the client, then the two steps the worker sent.
  assert.deepEqual(t.stampsOf("st.add"), [want, want, want]);
  assert.equal(t.seen.size, 3);
  for (const s of t.seen.values()) {
    assert.deepEqual(s.stamps, { mon: "x", tags: ["a"] });
    assert.deepEqual(s.stampedHeaders, ["mon", "tags"]);
  }
});

Deno.test("a stamped link and errback are sent with their stamps", async () => {
  const t = stampApp();
  await using _app = t.app;
  await using _w = startWorker(t.app, { pool: "inline" });
  const ok = t.add.s(1, 1);
  ok.link(t.add.s(5));
  ok.stamp({ mon: "link" });
  const r = await ok.applyAsync();
  assert.equal(await r.get(T), 2);
  const bad = t.boom.s();
  bad.linkError(t.onError.s());
  bad.stamp({ mon: "err" });
  const b = await bad.applyAsync();
  await assert.rejects(b.get(T));
  await eventually(() => t.published.some((p) => p.name === "st.on_error"));
  await eventually(() => [...t.seen.values()].length === 4);
  assert.deepEqual(t.stampsOf("st.add"), [
    { stamped_headers: ["mon"], stamps: { mon: "link" } },
    { stamped_headers: ["mon"], stamps: { mon: "link" } },
  ]);
  assert.deepEqual(t.stampsOf("st.on_error"), [{
    stamped_headers: ["mon"],
    stamps: { mon: "err" },
  }]);
  for (const s of t.seen.values()) assert.equal(s.stampedHeaders.length, 1);
});

Deno.test("a stamped chord body is sent with its stamps by the last header task", async () => {
  const t = stampApp();
  await using _app = t.app;
  await using _w = startWorker(t.app, { pool: "inline" });
  const c = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s().stamp({ mon: "body" }))
    .stamp({ mon: "head" });
  const r = await c.applyAsync();
  assert.equal(await r.get(T), 6);
  assert.deepEqual(t.stampsOf("st.add").map((s) => s.stamps), [{ mon: "head" }, {
    mon: "head",
  }]);
  assert.deepEqual(t.stampsOf("st.tsum"), [{
    stamped_headers: ["mon"],
    stamps: { mon: "body" },
  }]);
  assert.deepEqual(t.seen.get(r.id)?.stamps, { mon: "body" });
});

Deno.test("a retry keeps the request's stamps", async () => {
  const t = stampApp();
  await using _app = t.app;
  await using _w = startWorker(t.app, { pool: "inline" });
  const r = await t.flaky.s(7).stamp({ mon: "again" }).applyAsync();
  assert.equal(await r.get(T), 7);
  // The client's message only: the worker republished the retry itself.
  assert.equal(t.published.filter((p) => p.id === r.id).length, 1);
  assert.deepEqual(t.runs.filter((x) => x.id === r.id), [
    { id: r.id, retries: 0, stamps: { mon: "again" }, nesting: 0 },
    { id: r.id, retries: 1, stamps: { mon: "again" }, nesting: 0 },
  ]);
});

Deno.test("replace() sends nesting + 1 on the replacement and every step after it", async () => {
  const t = stampApp();
  await using _app = t.app;
  await using _w = startWorker(t.app, { pool: "inline" });
  // replacer2 → replacer (nesting 1) → chain(add, add) (nesting 2), then the outer chain's
  // own next step (nesting 2 too, as Celery sets it on the rest of the chain).
  const r = await chain(t.replacer2.s(1), t.add.s(100)).applyAsync();
  assert.equal(await r.get(T), 112);
  const nestings = t.published.map((p) => [p.name, p.headers.replaced_task_nesting]);
  assert.deepEqual(nestings, [
    ["st.replacer2", 0],
    ["st.replacer", 1],
    ["st.add", 2],
    ["st.add", 2],
    ["st.add", 2],
  ]);
  assert.deepEqual(t.runs.map((s) => s.nesting), [0, 1, 2, 2, 2]);
});

Deno.test("applyAsync({stamps}) and sendTask({stamps}) stamp a call; the signature's own win", async () => {
  const t = stampApp();
  await using _app = t.app;
  await using _w = startWorker(t.app, { pool: "inline" });
  const a = await t.app.sendTask("st.add", [1, 1], {}, { stamps: { mon: "send" } });
  assert.equal(await a.get(T), 2);
  const b = await t.add.s(2, 2).stamp({ mon: "own" }).applyAsync([], {}, {
    stamps: { mon: "call", extra: 1 },
  });
  assert.equal(await b.get(T), 4);
  assert.deepEqual(t.seen.get(a.id)?.stamps, { mon: "send" });
  assert.deepEqual(t.seen.get(b.id)?.stamps, { mon: "own", extra: 1 });
});

Deno.test("eager apply() runs a stamped chain with the stamps on every step", async () => {
  const t = stampApp();
  await using _app = t.app;
  const r = chain(t.add.s(1, 2), t.add.s(3)).stamp({ mon: "eager" }).apply();
  assert.equal(await r.get(), 6);
  assert.equal(t.seen.size, 2);
  for (const s of t.seen.values()) assert.deepEqual(s.stamps, { mon: "eager" });
});
