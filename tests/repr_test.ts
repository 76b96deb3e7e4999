/** The bounded, Python-style repr (lib/protocol/repr.ts) and pyRepr, which events use. */

import assert from "node:assert/strict";
import { boundedRepr } from "../lib/protocol/repr.ts";
import { encodeTask, pyRepr } from "../lib/protocol/message.ts";

function nested(depth: number): unknown[] {
  const root: unknown[] = [];
  let at = root;
  for (let i = 0; i < depth; i++) {
    const next: unknown[] = [];
    at.push(next);
    at = next;
  }
  return root;
}

Deno.test("pyRepr() of args nested 3,000 and 100,000 deep is short and does not throw", () => {
  for (const depth of [3_000, 100_000]) {
    const args = [nested(depth)];
    // Three levels shown, as Celery's saferepr: the args tuple, the list, its list.
    assert.equal(pyRepr(args, true), "([[[...]]],)");
    assert.equal(pyRepr({ a: nested(depth) }), "{'a': [[[...]]]}");
  }
  // encodeTask builds argsrepr with it: the message is built, not a RangeError.
  const m = encodeTask({ id: "1", name: "t", args: [nested(3_000)], kwargs: {} });
  assert.equal(m.headers.argsrepr, "([[[...]]],)");
});

Deno.test("boundedRepr() shows '...' where a value contains itself", () => {
  const list: unknown[] = [1];
  list.push(list);
  assert.equal(boundedRepr(list), "[1, ...]");
  const object: Record<string, unknown> = { a: 1 };
  object.self = object;
  assert.equal(boundedRepr(object, { maxDepth: 10 }), "{'a': 1, 'self': ...}");
  // A shared (not cyclic) value is shown each time.
  const shared = [1];
  assert.equal(boundedRepr([shared, shared]), "[[1], [1]]");
});

Deno.test("boundedRepr() limits the depth, items per container, string length and total", () => {
  assert.equal(boundedRepr([1, [2, [3, [4]]]]), "[1, [2, [3, [...]]]]");
  assert.equal(boundedRepr({ a: { b: { c: { d: 1 } } } }), "{'a': {'b': {'c': {...}}}}");
  assert.equal(boundedRepr([1, 2, 3, 4, 5], { maxItems: 3 }), "[1, 2, 3, ...]");
  assert.equal(boundedRepr("abcdef", { maxString: 3 }), "'abc...'");
  const items = Array.from({ length: 100_000 }, (_, i) => i);
  assert.ok(boundedRepr(items).endsWith(", 98, 99, ...]"), "100 items, then ...");
  const long = boundedRepr(items, { maxItems: 1_000_000 });
  assert.equal(long.length, 1024);
  assert.ok(long.endsWith("..."));
  const huge = boundedRepr(["x".repeat(50_000_000)], { maxString: 10_000_000 });
  assert.equal(huge.length, 1024);
  assert.equal(boundedRepr(new Array(5000).fill("ab"), { maxLength: 30 }).length, 30);
});

Deno.test("boundedRepr() writes Python's repr of JSON values and escapes control characters", () => {
  assert.equal(pyRepr([2, "a", null, true], true), "(2, 'a', None, True)");
  assert.equal(pyRepr([2], true), "(2,)");
  assert.equal(pyRepr([], true), "()");
  assert.equal(
    boundedRepr([false, undefined, 1.5, 10n ** 23n]),
    "[False, None, 1.5, " +
      "100000000000000000000000]",
  );
  assert.equal(boundedRepr("it's"), `"it's"`);
  assert.equal(boundedRepr(`it's "x"`), `'it\\'s "x"'`);
  assert.equal(boundedRepr("a\nb\r\x1b[31m\u009b\\"), "'a\\nb\\r\\x1b[31m\\x9b\\\\'");
  assert.equal(boundedRepr([NaN, Infinity, -Infinity]), "[nan, inf, -inf]");
  assert.equal(boundedRepr(new Set()), "set()");
  assert.equal(boundedRepr(new Set([1])), "{1}");
  assert.equal(boundedRepr(new Map([["k", 1]])), "{'k': 1}");
  assert.equal(boundedRepr(new Uint8Array([0, 65, 255])), "b'\\x00A\\xff'");
  assert.equal(boundedRepr(new TypeError("bad")), "TypeError('bad')");
  assert.equal(boundedRepr(new (class Foo {})()), "<Foo object>");
  assert.equal(boundedRepr(function named() {}), "<function named>");
});

Deno.test("boundedRepr() never throws, even on a throwing getter", () => {
  const evil = {
    get boom() {
      throw new Error("getter");
    },
  };
  assert.equal(typeof boundedRepr(evil), "string");
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  assert.equal(typeof boundedRepr([revoked.proxy]), "string");
});

Deno.test("requestReprs() uses argsrepr/kwargsrepr as sent, bounded and escaped, else pyRepr", async () => {
  const { decodeTask, requestReprs } = await import("../lib/protocol/message.ts");
  const m = encodeTask({ id: "1", name: "t", args: [2, "secret"], kwargs: { k: 1 } });
  assert.deepEqual(requestReprs(decodeTask(m)), { args: "(2, 'secret')", kwargs: "{'k': 1}" });
  const masked = { ...m, headers: { ...m.headers, argsrepr: "'<masked>'", kwargsrepr: "{}" } };
  assert.deepEqual(requestReprs(decodeTask(masked)), { args: "'<masked>'", kwargs: "{}" });
  // Python's saferepr leaves a newline raw; a sender may put anything there.
  const raw = {
    ...m,
    headers: { ...m.headers, argsrepr: "('a\nb\x1b[2K\u2028',)", kwargsrepr: 5 },
  };
  const reprs = requestReprs(decodeTask(raw));
  assert.equal(reprs.args, "('a\\x0ab\\x1b[2K\\u2028',)");
  assert.equal(reprs.kwargs, "{'k': 1}", "a non-string kwargsrepr is ignored");
  const huge = { ...m, headers: { ...m.headers, argsrepr: "x".repeat(1_000_000) } };
  assert.equal(requestReprs(decodeTask(huge)).args.length, 1024);
  // Args nested 100,000 deep, with no argsrepr header (a hand-made message).
  const { argsrepr: _a, kwargsrepr: _k, ...headers } = m.headers;
  const deep = requestReprs({ args: [nested(100_000)], kwargs: {}, headers });
  assert.equal(deep.args, "([[[...]]],)");
});
