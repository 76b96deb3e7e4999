import assert from "node:assert/strict";
import { bindArguments, parameterNames } from "../lib/worker/arguments.ts";

Deno.test("parameterNames() reads plain, defaulted, destructured and rest parameters", () => {
  assert.deepEqual(parameterNames((x: number, y = 2) => x + y), ["x", "y"]);
  assert.deepEqual(
    parameterNames(function named(a: string, { b }: { b: number }) {
      return a + b;
    }),
    ["a", null],
  );
  assert.deepEqual(
    parameterNames(async (first: number, ...rest: number[]) => await first + rest.length),
    [
      "first",
    ],
  );
  assert.deepEqual(parameterNames((x: number) => x), ["x"]);
  assert.deepEqual(parameterNames((p = { a: [1, 2] }, q = (1 + 2) * 3) => [p, q]), ["p", "q"]);
});

Deno.test("bindArguments() fills parameters by name and gathers the rest as the last parameter", () => {
  assert.deepEqual(bindArguments([2], { y: 3 }, ["x", "y"]), [2, 3]);
  assert.deepEqual(bindArguments([], { y: 3, x: 1 }, ["x", "y"]), [1, 3]);
  assert.deepEqual(bindArguments([7], { flag: true }, ["x", "y", "options"]), [7, undefined, {
    flag: true,
  }]);
  assert.deepEqual(bindArguments([], { a: 1, b: 2 }, ["options"]), [{ a: 1, b: 2 }]);
  assert.deepEqual(bindArguments([1, 2], { z: 3 }, ["x", "y"]), [1, 2, { z: 3 }]);
});

Deno.test("bindArguments() refuses a keyword that repeats a positional argument", () => {
  assert.throws(() => bindArguments([1], { x: 2 }, ["x"]), /multiple values for argument 'x'/);
});
