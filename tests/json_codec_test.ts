/**
 * The one JSON codec (lib/protocol/json.ts): the encoding rule for values JSON cannot hold,
 * checked against Python's kombu where the wire matters.
 */

import assert from "node:assert/strict";
import { EncodeError } from "../lib/errors.ts";
import { MAX_ENCODE_DEPTH, parseJson, stringifyJson } from "../lib/protocol/json.ts";
import { errorToInfo, infoToError } from "../lib/protocol/exceptions.ts";

const PYTHON = "/usr/bin/python3";

async function python(code: string, input: string): Promise<unknown> {
  const child = new Deno.Command(PYTHON, {
    args: ["-c", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const { code: status, stdout, stderr } = await child.output();
  assert.equal(status, 0, new TextDecoder().decode(stderr));
  return JSON.parse(new TextDecoder().decode(stdout));
}

function assertEncodeError(value: unknown, path: string, pattern: RegExp, root?: string): void {
  assert.throws(() => stringifyJson(value, root), (e: unknown) => {
    assert.ok(e instanceof EncodeError, `expected EncodeError, got ${String(e)}`);
    assert.equal(e.path, path);
    assert.ok(e.message.startsWith(`${path} `), e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("stringifyJson() writes a bigint back as the same JSON integer", () => {
  const text = '[123456789012345678901234567890,-9007199254740993,{"x":18446744073709551616}]';
  assert.equal(stringifyJson(parseJson(text)), text);
  assert.equal(stringifyJson(10n), "10");
  assert.equal(stringifyJson({ a: [1n, 2] }), '{"a":[1,2]}');
});

Deno.test("an int above 2^53 from Python goes back to Python as the same int", async () => {
  const fromPython = await python(
    "import json, sys; print(json.dumps(json.dumps([10**23, {'k': -(2**64)}])))",
    "",
  ) as string;
  const back = stringifyJson(parseJson(fromPython));
  const ok = await python(
    "import json, sys; v = json.load(sys.stdin); print(json.dumps(v == [10**23, {'k': -(2**64)}]))",
    back,
  );
  assert.equal(ok, true);
});

Deno.test("stringifyJson() writes a Date as kombu 5.2's JSONEncoder writes a UTC datetime", async () => {
  const dates = [
    new Date(Date.UTC(2026, 10, 21, 1, 19, 41, 338)),
    new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 0)),
  ];
  const ours = JSON.parse(stringifyJson(dates));
  const kombu = await python(
    `
import json, sys, datetime
from kombu.utils.json import dumps
utc = datetime.timezone.utc
print(dumps([datetime.datetime(2026, 11, 21, 1, 19, 41, 338000, tzinfo=utc),
             datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc)]))
`,
    "",
  );
  assert.deepEqual(ours, kombu);
  assert.deepEqual(ours, ["2026-11-21T01:19:41.338000Z", "2026-01-02T03:04:05Z"]);
  assertEncodeError({ d: new Date(NaN) }, "value.d", /Date/);
});

Deno.test("stringifyJson() writes undefined as null, in arrays and objects alike", () => {
  assert.equal(stringifyJson(undefined), "null");
  assert.equal(stringifyJson([1, undefined]), "[1,null]");
  assert.equal(stringifyJson({ a: undefined, b: 1 }), '{"a":null,"b":1}');
  // A hole in an array is written as null, as JSON.stringify does.
  assert.equal(stringifyJson([1, , 3]), "[1,null,3]");
});

Deno.test("stringifyJson() refuses what JSON cannot hold with an EncodeError naming the path", () => {
  assertEncodeError([1, 2, { foo: new Map() }], "result[2].foo", /is a Map/, "result");
  assertEncodeError({ s: new Set([1]) }, "result.s", /is a Set/, "result");
  assertEncodeError({ "a b": () => 1 }, 'args["a b"]', /is a function/, "args");
  assertEncodeError([Symbol("x")], "args[0]", /is a symbol/, "args");
  assertEncodeError({ n: NaN }, "kwargs.n", /is NaN/, "kwargs");
  assertEncodeError([Infinity], "kwargs[0]", /is Infinity/, "kwargs");
  assertEncodeError([-Infinity], "kwargs[0]", /is -Infinity/, "kwargs");
  class Point {
    constructor(readonly x: number) {}
  }
  assertEncodeError({ p: new Point(1) }, "value.p", /an instance of Point/);
  assertEncodeError([new Float64Array(2)], "value[0]", /an instance of Float64Array/);
  assertEncodeError(new Error("x"), "value", /an instance of Error/);
  const cyclic: Record<string, unknown> = { a: [1] };
  (cyclic.a as unknown[]).push(cyclic);
  assertEncodeError(cyclic, "result.a[1]", /refers back to result \(a cycle\)/, "result");
  // The fast path must not let these through silently either.
  assert.throws(() => stringifyJson({ deep: { deeper: new Map() } }), EncodeError);
});

Deno.test("stringifyJson() keeps the other rules: toJSON, Uint8Array, shared values", () => {
  const sig = { toJSON: () => ({ task: "t", args: [1n] }) };
  assert.equal(stringifyJson([sig]), '[{"task":"t","args":[1]}]');
  assert.equal(
    stringifyJson({ b: new Uint8Array([0, 1, 255]) }),
    '{"b":{"__type__":"base64","__value__":"AAH/"}}',
  );
  const shared = [1];
  assert.equal(stringifyJson([shared, shared, 1n]), "[[1],[1],1]");
  assert.equal(stringifyJson(Object.assign(Object.create(null), { a: 1 })), '{"a":1}');
  assert.equal(stringifyJson(['a\u2028"\n', -0, 1e21]), JSON.stringify(['a\u2028"\n', -0, 1e21]));
});

function nested(depth: number, leaf: unknown): unknown[] {
  const root: unknown[] = [];
  let at = root;
  for (let i = 0; i < depth; i++) {
    const next: unknown[] = [];
    at.push(next);
    at = next;
  }
  at.push(leaf);
  return root;
}

Deno.test("stringifyJson() encodes deep nesting without the stack, up to MAX_ENCODE_DEPTH", () => {
  const deep = nested(MAX_ENCODE_DEPTH - 1, 1n);
  const text = stringifyJson(deep);
  assert.equal(text.length, 2 * MAX_ENCODE_DEPTH + 1);
  assert.ok(text.includes("[1]"));
  assert.throws(
    () => stringifyJson(nested(100_000, 1n), "args"),
    (e: unknown) =>
      e instanceof EncodeError &&
      /levels\)\.\.\..* is nested more than 10000 levels deep/.test(e.message) &&
      e.message.length < 200,
  );
});

Deno.test("parseJson() revives bigints and kombu tags in a body too deep for V8's reviver", () => {
  const depth = 200_000;
  const text = `[${"[".repeat(depth)}12345678901234567890,{"__type__":"uuid","__value__":"u"},` +
    `"a \\" 12345678901234567890 \\u0000",1.5e300,-9007199254740993${"]".repeat(depth)}, 7]`;
  const value = parseJson(text) as unknown[];
  let at = value[0] as unknown[];
  for (let i = 1; i < depth; i++) at = at[0] as unknown[];
  assert.deepEqual(at, [
    12345678901234567890n,
    "u",
    'a " 12345678901234567890 \u0000',
    1.5e300,
    -9007199254740993n,
  ]);
  assert.equal(value[1], 7);
  const proto = parseJson(
    `${
      "[".repeat(depth)
    }{"__proto__":{"__type__":"uuid","__value__":"p"},"n":12345678901234567890}${
      "]".repeat(depth)
    }`,
  );
  let inner = proto as unknown;
  for (let i = 0; i < depth; i++) inner = (inner as unknown[])[0];
  assert.equal(Object.getPrototypeOf(inner), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(inner, "__proto__")?.value, "p");
  assert.equal((inner as { n: bigint }).n, 12345678901234567890n);
  assert.throws(() => parseJson(`${"[".repeat(depth)}12345678901234567890,`), /not valid JSON/);
  // Without anything to revive, JSON.parse takes any depth.
  assert.ok(Array.isArray(parseJson("[".repeat(depth) + "]".repeat(depth))));
});

Deno.test("EncodeError is kombu.exceptions.EncodeError on the wire, both ways", () => {
  const info = errorToInfo(new EncodeError("result.x is a Map"));
  assert.deepEqual(info, {
    exc_type: "EncodeError",
    exc_message: ["result.x is a Map"],
    exc_module: "kombu.exceptions",
  });
  assert.ok(infoToError(info) instanceof EncodeError);
});

Deno.test({
  name:
    "every backend stores a result by the same rule: bigint exact, Date as kombu text, Map refused",
  async fn() {
    const { MemoryBackend } = await import("../lib/backends/memory.ts");
    const { KvBackend } = await import("../lib/backends/kv.ts");
    const { RedisBackend } = await import("../lib/backends/redis.ts");
    const dir = await Deno.makeTempDir({ prefix: "celeriac-json-codec-" });
    try {
      const backends = [
        new MemoryBackend(`memory://json-codec-${crypto.randomUUID()}`),
        new KvBackend(`kv://${dir}/results.kv`),
        new RedisBackend("redis://127.0.0.1:6379/1", { resultExpires: 60_000 }),
      ];
      for (const backend of backends) {
        await using _ = backend;
        const id = `json-codec-${crypto.randomUUID()}`;
        const meta = (result: unknown) => ({
          status: "SUCCESS",
          result,
          traceback: null,
          children: [],
          date_done: null,
          task_id: id,
        });
        await backend.store(id, meta({ big: 10n ** 23n, at: new Date(0), gone: undefined }));
        const back = await backend.get(id);
        assert.deepEqual(back?.result, {
          big: 10n ** 23n,
          at: "1970-01-01T00:00:00Z",
          gone: null,
        }, backend.constructor.name);
        await assert.rejects(
          backend.store(`${id}-map`, meta([1, { foo: new Map() }])),
          (e: unknown) => e instanceof EncodeError && e.path === "result[1].foo",
          backend.constructor.name,
        );
        await backend.forget(id);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("infoToError() of an error whose args hold an int above 2^53 does not throw", () => {
  const error = infoToError({
    exc_type: "ValueError",
    exc_message: [10n ** 23n, { n: 2n ** 64n }],
    exc_module: "builtins",
  });
  assert.equal(error.name, "ValueError");
  assert.match(error.message, /^100000000000000000000000, \{'n': 18446744073709551616\}$/);
});

Deno.test("encodeTask() refuses args and kwargs JSON cannot hold, naming them", async () => {
  const { encodeTask } = await import("../lib/protocol/message.ts");
  const call = { id: "1", name: "t", args: [1, new Map()] as unknown[], kwargs: {} };
  assert.throws(
    () => encodeTask(call),
    (e: unknown) => e instanceof EncodeError && e.path === "args[1]",
  );
  assert.throws(
    () => encodeTask({ ...call, args: [], kwargs: { when: NaN } }),
    (e: unknown) => e instanceof EncodeError && e.path === "kwargs.when",
  );
  const m = encodeTask({ ...call, args: [10n ** 23n, undefined], kwargs: { at: new Date(0) } });
  assert.ok(m.body.startsWith('[[100000000000000000000000,null],{"at":"1970-01-01T00:00:00Z"},'));
});
