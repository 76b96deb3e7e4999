/**
 * Micro-benchmarks of the JSON codec and the envelope's base64 check on the hot path:
 * `stringifyJson` (the cheap walk, then plain `JSON.stringify`) against bare `JSON.stringify`
 * and against wave 1's codec (walk without the number/undefined checks), on the values a task
 * round trip encodes; and the linear base64 check against wave 1's regex.
 *
 * ```sh
 * deno bench bench/json_bench.ts
 * ```
 *
 * @module
 */

import { stringifyJson } from "../lib/protocol/json.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { fromKombuEnvelope, toKombuEnvelope } from "../lib/protocol/kombu.ts";

// Wave 1's stringifyJson fast path (a9bdbdb), kept here as the baseline.
function wave1IsPlain(value: unknown, depth: number): boolean {
  if (value === null) return true;
  const type = typeof value;
  if (type === "bigint") return false;
  if (type !== "object") return true;
  if (depth > 64) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!wave1IsPlain(value[i], depth + 1)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value instanceof Date;
  const object = value as Record<string, unknown>;
  if ("toJSON" in object) return false;
  for (const key in object) if (!wave1IsPlain(object[key], depth + 1)) return false;
  return true;
}
const wave1 = (v: unknown) => wave1IsPlain(v, 0) ? JSON.stringify(v) : "";

const PAYLOADS: Record<string, unknown> = {
  "task body [[i, i], {}, embed]": [[7, 7], {}, {
    callbacks: null,
    errbacks: null,
    chain: null,
    chord: null,
  }],
  "result meta": {
    status: "SUCCESS",
    result: 14,
    traceback: null,
    children: [],
    date_done: "2026-12-01T09:00:00.000000+00:00",
    task_id: "6f1c2a52-7d5e-4b8e-9f7a-2a9e0c1d3b4f",
  },
  "1 KB nested args": [{
    user: { id: 12345, name: "Ada", tags: ["a", "b", "c"], prefs: { dark: true, lang: "en" } },
    items: Array.from({ length: 20 }, (_, i) => ({ sku: `sku-${i}`, qty: i, price: i * 1.5 })),
  }],
  "100 KB array of numbers": [Array.from({ length: 20_000 }, (_, i) => i * 3)],
};

for (const [name, value] of Object.entries(PAYLOADS)) {
  Deno.bench({ name: `JSON.stringify: ${name}`, group: name, baseline: true }, () => {
    JSON.stringify(value);
  });
  Deno.bench({ name: `wave 1 stringifyJson: ${name}`, group: name }, () => {
    wave1(value);
  });
  Deno.bench({ name: `stringifyJson: ${name}`, group: name }, () => {
    stringifyJson(value);
  });
}

const withBig = [[10n ** 23n, 2], { at: new Date(0) }, { callbacks: null }];
Deno.bench(
  { name: "stringifyJson, slow path: bigint + Date in a task body", group: "slow" },
  () => {
    stringifyJson(withBig);
  },
);

Deno.bench({ name: "encodeTask() of add(7, 7)", group: "task" }, () => {
  encodeTask({ id: "6f1c2a52-7d5e-4b8e", name: "tasks.add", args: [7, 7], kwargs: {} });
});

const envelope = JSON.stringify(
  toKombuEnvelope(encodeTask({ id: "1", name: "tasks.add", args: [7, 7], kwargs: {} }), {
    queue: "celery",
    deliveryTag: "t",
  }),
);
Deno.bench({ name: "fromKombuEnvelope() of add(7, 7)", group: "task" }, () => {
  fromKombuEnvelope(envelope);
});

const WAVE1_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const NOT_BASE64_CHAR = /[^A-Za-z0-9+/]/;
const linear = (body: string) => {
  if (body.length % 4 !== 0) return false;
  let end = body.length;
  if (end > 0 && body.charCodeAt(end - 1) === 0x3d) end--;
  if (end > 0 && body.charCodeAt(end - 1) === 0x3d) end--;
  return !NOT_BASE64_CHAR.test(end === body.length ? body : body.slice(0, end));
};
const body = btoa(JSON.stringify(PAYLOADS["task body [[i, i], {}, embed]"]));
Deno.bench({ name: "wave 1 base64 regex, task body", group: "base64", baseline: true }, () => {
  WAVE1_BASE64.test(body);
});
Deno.bench({ name: "linear base64 check, task body", group: "base64" }, () => {
  linear(body);
});
