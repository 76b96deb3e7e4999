// Typed canvas: `task.s()` checks its arguments as the trailing part of the task's
// parameters, `task.si()` as `delay()` does; chain, group and chord infer their result types
// (the last step, a tuple of the members, the body). Each `@ts-expect-error` line must be a
// type error: `deno check` (and `deno test`, which checks first) fails if one compiles.
import assert from "node:assert/strict";
import {
  App,
  type AsyncResult,
  chain,
  chord,
  group,
  GroupResult,
  type ResultOf,
  signature,
} from "@celeriac/celeriac";

// A type-level equality check: `expectType<Exact<A, B>>(true)` compiles only when A is B.
type Exact<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
const expectType = <T extends true>(_: T) => {};

Deno.test("typed signatures: wrong argument types do not compile; canvas results are inferred", async () => {
  await using app = new App({ broker: "memory://", backend: "memory://" });
  const add = app.task("types.add", (x: number, y: number) => x + y);
  const greet = app.task("types.greet", (name: string, times: number = 1) => name.repeat(times));
  const label = app.task("types.label", (n: number, prefix: string) => `${prefix}${n}`);
  const tsum = app.task("types.tsum", (xs: number[]) => xs.reduce((a, b) => a + b, 0));
  const untyped = app.task("types.any", (...args: unknown[]) => args.length);

  // s(): the whole list, or its trailing part (a parent's result fills the rest).
  add.s(1, 2);
  add.s(2);
  add.s();
  greet.s("a", 2);
  greet.s(3);
  // @ts-expect-error "a" is not a number
  add.s("a", 2);
  // @ts-expect-error the trailing parameter y is a number
  add.s("2");
  // @ts-expect-error too many arguments
  add.s(1, 2, 3);
  // @ts-expect-error name is a string, times a number: (2, "x") fits neither way
  greet.s(2, "x");

  // si(): immutable, so the arguments are the whole list, checked as delay() checks them.
  add.si(1, 2);
  greet.si("a");
  // @ts-expect-error y is missing: nothing is prepended to an immutable signature
  add.si(1);
  // @ts-expect-error "1" is not a number
  add.si("1", 2);
  // @ts-expect-error as delay() would say
  void add.delay("1", 2).catch(() => {});
  // A task with rest parameters takes anything.
  untyped.s(1, "two", [3]);
  untyped.si();

  // Results: a signature carries its task's value type.
  const one = add.s(1, 2);
  expectType<Exact<ResultOf<typeof one>, number>>(true);
  // @ts-expect-error a number task's value is not a string
  expectType<Exact<ResultOf<typeof one>, string>>(true);
  // chain: the last step's value.
  const c = chain(add.s(1, 2), label.s("n="));
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof c.apply>["get"]>>, string>>(true);
  expectType<Exact<Awaited<ReturnType<typeof c.applyAsync>>, AsyncResult<string>>>(true);
  const cl = chain([add.s(1, 2), add.s(3)]);
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof cl.apply>["get"]>>, number>>(true);
  // group: a tuple of the members' values.
  const g = group(add.s(1, 2), greet.s("a"), tsum.s([1]));
  type G = Awaited<ReturnType<ReturnType<typeof g.apply>["get"]>>;
  expectType<Exact<G, [number, string, number]>>(true);
  const handle = await g.applyAsync();
  expectType<Exact<Awaited<ReturnType<typeof handle.join>>, [number, string, number]>>(true);
  assert.ok(handle instanceof GroupResult);
  // A group of a list: an array of the element's value.
  const list = [add.s(1, 1), add.s(2, 2)];
  const gl = group(list);
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof gl.apply>["get"]>>, number[]>>(true);
  // chord: the body's value.
  const ch = chord([add.s(1, 1), add.s(2, 2)], tsum.s());
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof ch.apply>["get"]>>, number>>(true);
  // A chain ending in a group gives the group's handle and values.
  const cg = chain(add.s(1, 1), group(add.s(1), label.s("#")));
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof cg.apply>["get"]>>, [number, string]>>(
    true,
  );
  // Untyped parts fall back to unknown.
  const u = chain(add.s(1, 2), signature("elsewhere.task"));
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof u.apply>["get"]>>, unknown>>(true);
  const ud = group({
    task: "x",
    args: [],
    kwargs: {},
    options: {},
    subtask_type: null,
    immutable: false,
  }, add.s(1, 1));
  expectType<Exact<Awaited<ReturnType<ReturnType<typeof ud.apply>["get"]>>, [unknown, number]>>(
    true,
  );

  // And the values are what the types say.
  assert.equal(await c.apply().get(), "n=3");
  assert.deepEqual(await g.apply().get(), [3, "a", 1]);
  assert.equal(await ch.apply().get(), 6);
  const typed: [number, string] = await cg.apply().get();
  assert.deepEqual(typed, [3, "#2"]);
});
