/** Log-line hygiene (lib/_log.ts), as the CLI's logger writes every line. */

import assert from "node:assert/strict";
import { escapeControl, formatFields, formatLogLine } from "../lib/_log.ts";

Deno.test("escapeControl() makes C0, C1, DEL, line separators and bidi controls visible", () => {
  assert.equal(escapeControl("a\nb\rc\td"), "a\\nb\\rc\\td");
  assert.equal(escapeControl("\x00\x07\x1b[31mred\x7f"), "\\x00\\x07\\x1b[31mred\\x7f");
  assert.equal(escapeControl("\u0085\u009b2J"), "\\x85\\x9b2J");
  assert.equal(
    escapeControl("x\u2028y\u2029z\u202ecba\u2066"),
    "x\\u2028y\\u2029z\\u202ecba\\u2066",
  );
  assert.equal(escapeControl("héllo ✓ 日本 🎉 C:\\dir"), "héllo ✓ 日本 🎉 C:\\dir");
  const long = "ok\n".repeat(1_000_000);
  assert.equal(escapeControl(long).length, long.length * 4 / 3);
});

Deno.test("formatLogLine() keeps a forged task name on one line", () => {
  const name = "tasks.add\n[2026-01-01T00:00:00.000Z] ERROR forged\x1b[2K";
  const line = formatLogLine("INFO", `Task ${name}[id] received`, { name, id: "a\u009bb" });
  assert.equal(line.split("\n").length, 1);
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\x00-\x1f\x7f-\x9f]/.test(line), line);
  assert.ok(line.includes("tasks.add\\n[2026-01-01T00:00:00.000Z] ERROR forged\\x1b[2K"));
});

Deno.test("formatFields() never throws: bigint, errors, cycles", () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  assert.equal(
    formatFields({ big: 10n ** 23n, error: new TypeError("bad\nline"), cyclic }),
    '{"big":100000000000000000000000,"error":"bad\\nline","cyclic":{"a":1,"self":"[Circular]"}}',
  );
  assert.equal(formatFields({}), "");
  assert.equal(formatFields(undefined), "");
  const evil = {
    toJSON() {
      throw new Error("nope");
    },
  };
  assert.match(formatFields({ evil }), /unformattable/);
});
