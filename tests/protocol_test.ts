/**
 * Protocol tests against fixtures captured from real Python Celery 5.2.6 (see
 * `tests/fixtures/capture.py`), and a round trip through a real Python Celery worker.
 */

import assert from "node:assert/strict";
import {
  ChordError,
  Ignore,
  MessageDecodeError,
  NotRegistered,
  Reject,
  Retry,
  SoftTimeLimitExceeded,
  TaskError,
  TaskRevokedError,
  TimeLimitExceeded,
  WorkerLostError,
} from "../lib/errors.ts";
import { errorToInfo, type ExceptionInfo, infoToError } from "../lib/protocol/exceptions.ts";
import { parseJson, stringifyJson } from "../lib/protocol/json.ts";
import { fromKombuEnvelope, type KombuEnvelope, toKombuEnvelope } from "../lib/protocol/kombu.ts";
import {
  decodeTask,
  encodeTask,
  type Message,
  parseIso,
  type SignatureDict,
  type TaskCall,
  toIso,
} from "../lib/protocol/message.ts";
import { parseResultMeta } from "../lib/protocol/result_meta.ts";
import { decompress } from "../lib/protocol/compression.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const PYTHON = "/usr/bin/python3";
const SEP = "\x06\x16";

interface TaskFixture {
  call: string;
  key: string;
  envelope: KombuEnvelope;
}

function fixture(name: string): TaskFixture {
  return JSON.parse(Deno.readTextFileSync(new URL(`${name}.json`, FIXTURES)));
}

function metaText(name: string): string {
  return JSON.parse(Deno.readTextFileSync(new URL(`meta_${name}.json`, FIXTURES))).raw;
}

function load(name: string) {
  const f = fixture(name);
  const message = fromKombuEnvelope(f.envelope);
  return { f, message, request: decodeTask(message), headers: f.envelope.headers };
}

/** Runs a Python snippet with JSON on stdin, returns its parsed JSON stdout. */
async function python(code: string, input: unknown, cwd?: string): Promise<unknown> {
  const child = new Deno.Command(PYTHON, {
    args: ["-c", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    ...(cwd ? { cwd } : {}),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(input)));
  await writer.close();
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `python failed:\n${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

const TASK_FIXTURES = [
  "task_plain",
  "task_kwargs",
  "task_options",
  "task_time_limits",
  "task_link",
  "task_chain",
  "task_chord",
  "task_group",
  "task_unicode",
  "task_send_task",
];

// ---------------------------------------------------------------------------------------------
// kombu envelope

Deno.test("fromKombuEnvelope() undoes base64 and the dashed content keys of every fixture", () => {
  for (const name of [...TASK_FIXTURES, "task_v1"]) {
    const { envelope } = fixture(name);
    const message = fromKombuEnvelope(envelope);
    const raw = new TextDecoder().decode(
      Uint8Array.from(atob(envelope.body), (c) => c.charCodeAt(0)),
    );
    assert.equal(message.body, raw, name);
    assert.equal(message.contentType, "application/json", name);
    assert.equal(message.contentEncoding, "utf-8", name);
    assert.deepEqual(message.headers, envelope.headers, name);
    assert.equal(message.properties.body_encoding, undefined, name);
    assert.equal(message.properties.correlation_id, envelope.properties.correlation_id, name);
    assert.deepEqual(message.properties.delivery_info, envelope.properties.delivery_info, name);
    // And the same from the JSON text as popped from Redis.
    assert.deepEqual(fromKombuEnvelope(JSON.stringify(envelope)), message, name);
  }
});

Deno.test("toKombuEnvelope() writes the envelope a Python producer writes", () => {
  for (const name of TASK_FIXTURES) {
    const { envelope } = fixture(name);
    const queue = envelope.properties.delivery_info.routing_key;
    const again = toKombuEnvelope(fromKombuEnvelope(envelope), {
      queue,
      deliveryTag: envelope.properties.delivery_tag,
    });
    assert.deepEqual(again, envelope, name);
    assert.deepEqual(Object.keys(again), Object.keys(envelope), name);
    assert.deepEqual(Object.keys(again.properties).sort(), Object.keys(envelope.properties).sort());
  }
  const m = encodeTask({ id: "x", name: "tasks.add", args: ["ü"], kwargs: {} });
  const env = toKombuEnvelope(m, { queue: "q1" });
  assert.match(env.properties.delivery_tag, /^[0-9a-f-]{36}$/);
  assert.deepEqual(env.properties.delivery_info, { exchange: "", routing_key: "q1" });
  assert.equal(env.properties.priority, 0);
  assert.deepEqual(fromKombuEnvelope(env).body, m.body);
  assert.throws(() => toKombuEnvelope(m, { queue: "" }), TypeError);
});

Deno.test("toKombuEnvelope() keeps a binary body byte for byte", () => {
  const bytes = new Uint8Array(256).map((_, i) => i);
  const message: Message = {
    headers: {},
    properties: {},
    body: String.fromCharCode(...bytes),
    contentType: "application/x-python-serialize",
    contentEncoding: "binary",
  };
  const env = toKombuEnvelope(message, { queue: "q" });
  assert.deepEqual(Uint8Array.fromBase64(env.body), bytes);
  assert.equal(fromKombuEnvelope(env).body, message.body);
});

Deno.test("fromKombuEnvelope() rejects what is not an envelope with MessageDecodeError", () => {
  const good = fixture("task_plain").envelope;
  const bad: [unknown, RegExp][] = [
    ["not json", /Envelope is not valid JSON/],
    [null, /must be a JSON object/],
    [[1, 2], /must be a JSON object, got a list/],
    [{ ...good, body: 42 }, /body must be a string/],
    [{ ...good, "content-type": undefined }, /content-type/],
    [{ ...good, headers: [1] }, /headers must be a mapping/],
    [{ ...good, properties: "x" }, /properties must be a mapping/],
    [{ ...good, body: "%%%not base64" }, /not valid base64/],
    [{ ...good, body: btoa("\xff\xfe") }, /not valid UTF-8/],
    [
      { ...good, properties: { ...good.properties, body_encoding: "rot13" } },
      /Unsupported kombu body_encoding/,
    ],
  ];
  for (const [value, pattern] of bad) {
    assert.throws(() => fromKombuEnvelope(value), (e: unknown) => {
      assert.ok(e instanceof MessageDecodeError, `${String(e)} for ${JSON.stringify(value)}`);
      assert.match(e.message, pattern);
      return true;
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Decoding Celery's messages

Deno.test("decodeTask() reads a plain apply_async((2, 2)) from Celery", () => {
  const { request, headers, message } = load("task_plain");
  assert.equal(request.protocol, 2);
  assert.equal(request.id, headers.id);
  assert.equal(request.id, message.properties.correlation_id);
  assert.equal(request.name, "tasks.add");
  assert.deepEqual(request.args, [2, 2]);
  assert.deepEqual(request.kwargs, {});
  assert.equal(request.rootId, request.id);
  assert.equal(request.parentId, null);
  assert.equal(request.group, null);
  assert.equal(request.groupIndex, null);
  assert.equal(request.eta, null);
  assert.equal(request.expires, null);
  assert.equal(request.retries, 0);
  assert.deepEqual(request.timeLimit, [null, null]);
  assert.equal(request.priority, 0);
  assert.equal(request.shadow, null);
  assert.equal(request.ignoreResult, false);
  assert.match(request.origin ?? "", /^gen\d+@/);
  assert.equal(request.replyTo, message.properties.reply_to);
  assert.deepEqual(request.embed, { callbacks: null, errbacks: null, chain: null, chord: null });
});

Deno.test("decodeTask() reads kwargs", () => {
  const { request } = load("task_kwargs");
  assert.deepEqual(request.args, [2]);
  assert.deepEqual(request.kwargs, { y: 3 });
});

Deno.test("decodeTask() reads countdown, expires, priority and custom headers as sent", () => {
  const { f, request, headers } = load("task_options");
  assert.equal(f.key, `${SEP}3`, "priority 5 goes to the step-3 list");
  assert.ok(request.eta instanceof Date && request.expires instanceof Date);
  // expires=60 and countdown=10 from the same `now`: 50 s apart.
  assert.equal(request.expires.getTime() - request.eta.getTime(), 50_000);
  const microseconds = (headers.eta as string).match(/\.(\d{6})\+00:00$/)?.[1];
  assert.ok(microseconds, `Celery sends 6 fraction digits: ${headers.eta}`);
  assert.equal(request.eta.getUTCMilliseconds(), Math.floor(Number(microseconds) / 1000));
  assert.equal(request.eta.toISOString().slice(0, 19), (headers.eta as string).slice(0, 19));
  assert.equal(request.priority, 5);
  assert.equal(request.headers["x-custom"], "v");
  assert.equal(fromKombuEnvelope(f.envelope).properties.expiration, "60000");
});

Deno.test("decodeTask() reads time limits as [hard, soft]", () => {
  assert.deepEqual(load("task_time_limits").request.timeLimit, [30, 20]);
});

Deno.test("decodeTask() reads link and link_error as callbacks and errbacks", () => {
  const { embed } = load("task_link").request;
  assert.equal(embed.callbacks?.length, 1);
  assert.equal(embed.callbacks?.[0]?.task, "tasks.mul");
  assert.deepEqual(embed.callbacks?.[0]?.args, [3]);
  assert.equal(embed.callbacks?.[0]?.immutable, false);
  assert.equal(embed.errbacks?.[0]?.task, "tasks.add");
  assert.deepEqual(embed.errbacks?.[0]?.args, [0, 0]);
  assert.equal(embed.errbacks?.[0]?.immutable, true);
  assert.equal(embed.chain, null);
});

Deno.test("decodeTask() reads the rest of a chain reversed: the next task is last", () => {
  const { request } = load("task_chain");
  assert.deepEqual(request.args, [1, 2]);
  const chain = request.embed.chain ?? [];
  assert.deepEqual(chain.map((s) => [s.task, s.args, s.immutable]), [
    ["tasks.add", [5, 5], true],
    ["tasks.mul", [10], false],
  ]);
  for (const sig of chain) assert.match(String(sig.options.task_id), /^[0-9a-f-]{36}$/);
});

Deno.test("decodeTask() reads a chord header member: group, group_index and chord body", () => {
  const { request, headers } = load("task_chord");
  assert.equal(request.group, headers.group);
  assert.match(request.group ?? "", /^[0-9a-f-]{36}$/);
  assert.equal(request.groupIndex, 0);
  assert.deepEqual(request.args, [1, 1]);
  assert.equal(request.embed.chord?.task, "tasks.tsum");
  assert.deepEqual(request.embed.chord?.args, []);
  assert.match(String(request.embed.chord?.options.task_id), /^[0-9a-f-]{36}$/);
});

Deno.test("decodeTask() reads a group member: group set, no group_index", () => {
  const { request } = load("task_group");
  assert.match(request.group ?? "", /^[0-9a-f-]{36}$/);
  assert.equal(request.groupIndex, null);
  assert.equal(request.embed.chord, null);
});

Deno.test("decodeTask() reads unicode and nested JSON arguments", () => {
  const { request } = load("task_unicode");
  assert.deepEqual(request.args, ["héllo ✓ 日本 🎉"]);
  assert.deepEqual(request.kwargs, {
    y: { nested: { list: [1, 2.5, null, true, { deep: ["x"] }], empty: {}, "ü": "\u0000" } },
  });
});

Deno.test("decodeTask() reads send_task of a name nobody registered", () => {
  const { request } = load("task_send_task");
  assert.equal(request.name, "remote.unregistered");
  assert.deepEqual(request.args, [1]);
  assert.deepEqual(request.kwargs, { k: "v" });
});

Deno.test("decodeTask() reads a protocol v1 message (everything in the body)", () => {
  const { request, message } = load("task_v1");
  const body = JSON.parse(message.body);
  assert.equal(request.protocol, 1);
  assert.equal(request.id, body.id);
  assert.equal(request.id, message.properties.correlation_id);
  assert.equal(request.name, "tasks.add");
  assert.deepEqual(request.args, [2, 2]);
  assert.deepEqual(request.kwargs, {});
  assert.ok(request.eta && request.expires);
  assert.equal(request.expires.getTime() - request.eta.getTime(), 50_000);
  assert.equal(request.eta.toISOString().slice(0, 19), body.eta.slice(0, 19));
  assert.deepEqual(request.timeLimit, [null, null]);
  assert.equal(request.group, null);
  assert.equal(request.rootId, request.id);
  assert.deepEqual(request.embed, { callbacks: null, errbacks: null, chain: null, chord: null });
});

// ---------------------------------------------------------------------------------------------
// Encoding what Celery sends

/** The celeriac call equivalent to each fixture, built from the fixture's own values. */
function equivalentCall(name: string): TaskCall {
  const { request, headers } = load(name);
  const call: TaskCall = {
    id: request.id,
    name: request.name,
    args: request.args,
    kwargs: request.kwargs,
    rootId: request.rootId,
    parentId: request.parentId,
    group: request.group,
    groupIndex: request.groupIndex,
    eta: request.eta,
    expires: request.expires,
    timeLimit: request.timeLimit[0],
    softTimeLimit: request.timeLimit[1],
    priority: request.priority,
    origin: headers.origin as string,
    replyTo: request.replyTo ?? "",
    callbacks: request.embed.callbacks,
    errbacks: request.embed.errbacks,
    chain: request.embed.chain,
    chord: request.embed.chord,
  };
  if ("x-custom" in headers) call.headers = { "x-custom": headers["x-custom"] };
  return call;
}

function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

Deno.test("encodeTask() sends every v2 header Celery sends, with compatible value types", () => {
  for (const name of TASK_FIXTURES) {
    const theirs = fixture(name).envelope;
    const ours = encodeTask(equivalentCall(name));
    // The fixtures are Celery 5.2.6's; celeriac also sends the three headers 5.3+ added.
    const { replaced_task_nesting, stamped_headers, stamps, ...older } = ours.headers;
    assert.deepEqual([replaced_task_nesting, stamped_headers, stamps], [0, null, {}], name);
    assert.deepEqual(
      Object.keys(older).sort(),
      Object.keys(theirs.headers).sort(),
      `${name}: header keys`,
    );
    for (const [key, value] of Object.entries(theirs.headers)) {
      const mine = ours.headers[key];
      assert.equal(jsonType(mine), jsonType(value), `${name}: type of header ${key}`);
      if (key === "eta" || key === "expires" || key === "timelimit") {
        assert.deepEqual(
          key === "timelimit" ? mine : parseIso(mine)?.getTime(),
          key === "timelimit" ? value : parseIso(value)?.getTime(),
          `${name}: ${key}`,
        );
      } else if (key !== "argsrepr" && key !== "kwargsrepr") {
        assert.deepEqual(mine, value, `${name}: header ${key}`);
      }
    }
    if (name !== "task_unicode") {
      // Python's saferepr elides deep nesting, and shows args given as a list as a list.
      const items = (repr: unknown) => String(repr).replace(/^[[(](.*?),?[\])]$/, "$1");
      assert.equal(items(ours.headers.argsrepr), items(theirs.headers.argsrepr), `${name}`);
      assert.equal(ours.headers.kwargsrepr, theirs.headers.kwargsrepr, `${name}: kwargsrepr`);
    }
    assert.deepEqual(
      JSON.parse(ours.body),
      JSON.parse(fromKombuEnvelope(theirs).body),
      `${name}: body`,
    );
    const theirProps = fromKombuEnvelope(theirs).properties;
    for (const key of ["correlation_id", "reply_to", "delivery_mode", "priority"]) {
      assert.deepEqual(ours.properties[key], theirProps[key], `${name}: property ${key}`);
    }
    assert.equal(
      "expiration" in ours.properties,
      "expiration" in theirProps,
      `${name}: expiration property present when expires is set`,
    );
    if (theirProps.expiration) {
      assert.match(String(ours.properties.expiration), /^\d+$/);
      assert.ok(Number(ours.properties.expiration) <= 60_000);
    }
    const withoutRepr = (m: Message) => {
      // The repr text differs (list vs tuple), and JavaScript keeps milliseconds, not micro-
      // seconds: eta/expires are compared as Dates in the request instead.
      const {
        argsrepr: _a,
        kwargsrepr: _k,
        eta: _e,
        expires: _x,
        replaced_task_nesting: _n,
        stamped_headers: _h,
        stamps: _s,
        ...headers
      } = decodeTask(m).headers;
      return { ...decodeTask(m), headers };
    };
    assert.deepEqual(withoutRepr(ours), withoutRepr(fromKombuEnvelope(theirs)), `${name}: decode`);
  }
});

Deno.test("encodeTask() writes eta/expires in Celery's format, read right by parse_iso8601", async () => {
  const dates = [
    new Date(0),
    new Date("2026-11-21T01:19:41.338Z"),
    new Date("2026-11-21T01:19:41.007Z"),
    new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 60)),
    new Date("2099-12-31T23:59:59.999Z"),
  ];
  const pythonEta = fixture("task_options").envelope.headers.eta as string;
  const format = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/;
  assert.match(pythonEta, format);
  const texts = dates.map((eta) => {
    const m = encodeTask({ id: "1", name: "t", args: [], kwargs: {}, eta, expires: eta });
    assert.equal(m.headers.eta, m.headers.expires);
    assert.match(m.headers.eta as string, format);
    assert.equal(m.headers.eta, toIso(eta));
    return m.headers.eta as string;
  });
  const micros = await python(
    `
import json, sys
from datetime import datetime, timezone
from celery.utils.iso8601 import parse_iso8601
epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
out = []
for s in json.load(sys.stdin):
    d = parse_iso8601(s)
    delta = d - epoch
    out.append([(delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds,
                d.utcoffset().total_seconds()])
print(json.dumps(out))
`,
    texts,
  ) as [number, number][];
  assert.deepEqual(micros, dates.map((d) => [d.getTime() * 1000, 0]));
});

// ---------------------------------------------------------------------------------------------
// Malformed input

function validMessage(): Message {
  return encodeTask({ id: "abc", name: "tasks.add", args: [1], kwargs: {} });
}

function assertDecodeError(message: unknown, pattern: RegExp): void {
  assert.throws(() => decodeTask(message as Message), (e: unknown) => {
    assert.ok(
      e instanceof MessageDecodeError,
      `expected MessageDecodeError, got ${String(e)} for ${JSON.stringify(message)}`,
    );
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("decodeTask() rejects malformed messages with a clear MessageDecodeError", () => {
  const m = validMessage();
  assertDecodeError({ ...m, body: "[[1], {" }, /Body is not valid JSON/);
  assertDecodeError({ ...m, body: '{"a": 1}' }, /must be the JSON list \[args, kwargs, embed\]/);
  assertDecodeError({ ...m, body: '"text"' }, /must be the JSON list/);
  assertDecodeError({ ...m, body: "[1, {}, {}]" }, /args must be a list/);
  assertDecodeError({ ...m, body: "[[], [], {}]" }, /kwargs must be a mapping/);
  assertDecodeError({ ...m, body: "[[], null, {}]" }, /kwargs must be a mapping/);
  const { id: _id, ...noId } = m.headers;
  assertDecodeError({ ...m, headers: noId }, /no id header/);
  assertDecodeError(
    { ...m, body: '[[{"__type__": "pickle", "__value__": "x"}], {}, {}]' },
    /Unsupported kombu JSON type tag "pickle"/,
  );
  assertDecodeError(
    { ...m, contentType: "application/x-python-serialize", contentEncoding: "binary" },
    /'application\/x-python-serialize' \(pickle\) is not accepted: celeriac reads only application\/json/,
  );
  assertDecodeError({ ...m, contentType: "" }, /no content type \(its broker envelope/);
  assertDecodeError(
    { ...m, headers: { ...m.headers, compression: "application/x-gzip" } },
    /compressed body is not valid zlib\/gzip data/,
  );
  assertDecodeError(
    { ...m, headers: { ...m.headers, compression: "bzip2" } },
    /compression 'bzip2' is not supported/,
  );
  assertDecodeError({ ...m, headers: { lang: "py" }, body: "[[], {}, {}]" }, /no task name/);
  assertDecodeError({ ...m, body: '{"task": "t", "args": []}', headers: {} }, /no id/);
  assertDecodeError({ ...m, headers: { ...m.headers, eta: "tomorrow" } }, /ISO-8601/);
  assertDecodeError({ ...m, headers: { ...m.headers, eta: "1" } }, /ISO-8601/);
  assertDecodeError({ ...m, headers: { ...m.headers, eta: "2026-13-45T99:00:00" } }, /ISO-8601/);
  assertDecodeError({ ...m, headers: { ...m.headers, retries: "2" } }, /retries/);
  assertDecodeError({ ...m, headers: { ...m.headers, timelimit: ["a", 1] } }, /timelimit/);
  assertDecodeError({ ...m, body: '[[], {}, {"chain": 5}]' }, /chain/);
  assertDecodeError({ ...m, body: '[[], {}, {"callbacks": [1]}]' }, /callbacks/);
  assertDecodeError({ ...m, body: '[[], {}, {"chord": "x"}]' }, /chord/);
});

Deno.test("decodeTask() throws only MessageDecodeError, whatever the input", () => {
  const m = validMessage();
  const values: unknown[] = [
    undefined,
    null,
    0,
    "",
    "x",
    true,
    [],
    {},
    [1, 2],
    { a: 1 },
    -1,
    1e400,
    [[1], { a: 1 }, {}],
    { __type__: "uuid", __value__: 1 },
  ];
  const fields = ["headers", "properties", "body", "contentType", "contentEncoding"] as const;
  const headerKeys = Object.keys(m.headers);
  let cases = 0;
  const check = (message: unknown) => {
    cases++;
    try {
      decodeTask(message as Message);
    } catch (e) {
      assert.ok(
        e instanceof MessageDecodeError,
        `${(e as Error)?.name}: ${(e as Error)?.message} for ${Deno.inspect(message)}`,
      );
    }
  };
  for (const v of values) {
    check(v);
    for (const field of fields) check({ ...m, [field]: v });
    for (const key of headerKeys) check({ ...m, headers: { ...m.headers, [key]: v } });
    check({ ...m, properties: { ...m.properties, priority: v } });
    check({ ...m, properties: { ...m.properties, reply_to: v } });
    check({ ...m, body: JSON.stringify(v) ?? "" });
    check({ ...m, body: JSON.stringify([[], {}, v]) ?? "" });
    check({ ...m, headers: {}, body: JSON.stringify({ task: "t", id: "i", args: v }) });
    check({ ...m, headers: {}, body: JSON.stringify({ task: "t", id: "i", eta: v }) });
    check({ ...m, headers: {}, body: JSON.stringify({ task: "t", id: "i", callbacks: v }) });
  }
  assert.ok(cases > 300);
});

// ---------------------------------------------------------------------------------------------
// kombu JSON dialect

Deno.test("parseJson() decodes kombu __type__ tags and rejects unknown ones", () => {
  const text = JSON.stringify([
    { __type__: "datetime", __value__: "2026-11-21T01:19:41.338833+00:00" },
    { __type__: "date", __value__: "2026-11-21" },
    { __type__: "time", __value__: "01:19:41" },
    { __type__: "decimal", __value__: "1.10" },
    { __type__: "uuid", __value__: "6fa3851e-a66b-44ff-b62b-a3b1b7634827" },
    { __type__: "bytes", __value__: "héllo" },
    { __type__: "base64", __value__: "AP8=" },
    { __type__: "x", __value__: 1, extra: true },
    { nested: [{ __type__: "uuid", __value__: "u" }] },
  ]);
  assert.deepEqual(parseJson(text), [
    "2026-11-21T01:19:41.338833+00:00",
    "2026-11-21",
    "01:19:41",
    "1.10",
    "6fa3851e-a66b-44ff-b62b-a3b1b7634827",
    "héllo",
    new Uint8Array([0, 255]),
    { __type__: "x", __value__: 1, extra: true },
    { nested: ["u"] },
  ]);
  assert.throws(
    () => parseJson('{"__type__": "set", "__value__": [1]}'),
    (e) =>
      e instanceof MessageDecodeError && /Unsupported kombu JSON type tag "set"/.test(e.message),
  );
  assert.throws(
    () => parseJson('{"__type__": "base64", "__value__": "!!"}'),
    (e) => e instanceof MessageDecodeError && /base64/.test(e.message),
  );
});

Deno.test("kombu's own JSON decoder reads what stringifyJson() writes", async () => {
  const value = {
    big: 12345678901234567890n,
    bytes: new Uint8Array([0, 1, 255]),
    date: new Date("2026-11-21T01:19:41.338Z"),
    text: "héllo ✓ 🎉",
  };
  const raw = await python(
    `
import json, sys
from kombu.utils.json import loads
v = loads(json.load(sys.stdin))
ok = v["big"] == 12345678901234567890
print(json.dumps({"big_ok": ok, "date": v["date"],
                  "text": v["text"], "bytes": v["bytes"]}))
`,
    stringifyJson(value),
  ) as Record<string, unknown>;
  assert.equal(raw.big_ok, true, "a bigint reaches Python as the exact int");
  assert.equal(raw.date, "2026-11-21T01:19:41.338000Z", "kombu 5.2's datetime text");
  assert.equal(raw.text, "héllo ✓ 🎉");
  assert.deepEqual(raw.bytes, { __type__: "base64", __value__: "AAH/" });
});

Deno.test("parseJson() keeps integers beyond 2^53 exact, as bigint", () => {
  const v = parseJson("[12345678901234567890, 9007199254740991, -9007199254740993, 1.5e300]");
  assert.deepEqual(v, [12345678901234567890n, 9007199254740991, -9007199254740993n, 1.5e300]);
  assert.equal(
    stringifyJson(v),
    "[12345678901234567890,9007199254740991,-9007199254740993,1.5e+300]",
  );
});

Deno.test("stringifyJson() encodes a large Uint8Array without overflowing the stack", () => {
  const big = new Uint8Array(1_000_000).fill(7);
  const back = parseJson(stringifyJson([big])) as Uint8Array[];
  assert.deepEqual(back[0], big);
});

// ---------------------------------------------------------------------------------------------
// Result metas and exceptions

Deno.test("parseResultMeta() reads the metas Celery's Redis backend stores", () => {
  const success = parseResultMeta(metaText("success"));
  assert.equal(success.status, "SUCCESS");
  assert.equal(success.result, 4);
  assert.equal(success.traceback, null);
  assert.deepEqual(success.children, []);
  assert.match(success.date_done ?? "", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/);
  assert.match(success.task_id, /^[0-9a-f-]{36}$/);

  const failure = parseResultMeta(metaText("failure"));
  assert.equal(failure.status, "FAILURE");
  assert.deepEqual(failure.result, {
    exc_type: "ValueError",
    exc_message: ["boom"],
    exc_module: "builtins",
  });
  assert.match(
    failure.traceback ?? "",
    /^Traceback \(most recent call last\):\n[\s\S]*ValueError: boom\n$/,
  );

  const revoked = parseResultMeta(metaText("revoked"));
  assert.equal(revoked.status, "REVOKED");
  const revokedError = infoToError(revoked.result as ExceptionInfo);
  assert.ok(revokedError instanceof TaskRevokedError);
  assert.equal(revokedError.message, "revoked");

  const progress = parseResultMeta(metaText("progress"));
  assert.equal(progress.status, "PROGRESS");
  assert.deepEqual(progress.result, { done: 50, total: 100 });
  assert.equal(progress.date_done, null);

  for (const bad of ["", "[]", '{"status": 1, "task_id": "x"}', '{"status": "SUCCESS"}']) {
    assert.throws(() => parseResultMeta(bad), MessageDecodeError, bad);
  }
});

Deno.test("infoToError() of Celery's FAILURE meta is a ValueError('boom') with its traceback", () => {
  const meta = parseResultMeta(metaText("failure"));
  const error = infoToError(meta.result as ExceptionInfo, meta.traceback);
  assert.ok(error instanceof TaskError);
  assert.equal(error.name, "ValueError");
  assert.equal(error.message, "boom");
  assert.equal(error.excModule, "builtins");
  assert.deepEqual(error.excArgs, ["boom"]);
  assert.equal(error.traceback, meta.traceback);
});

const CELERIAC_ERRORS: Error[] = [
  new Retry("later"),
  new Reject("bad"),
  new Ignore("skip"),
  new SoftTimeLimitExceeded(20),
  new TimeLimitExceeded(30),
  new TaskRevokedError("expired"),
  new NotRegistered("tasks.nope"),
  new ChordError("Dependency x raised ValueError('boom')"),
  new WorkerLostError("Worker exited prematurely"),
  new TaskError("KeyError", "builtins", ["k"]),
  new TaskError("MyError", "myapp.errors", ["a", 2]),
  new TypeError("bad type"),
  new RangeError("out of range"),
  new Error("plain"),
];

Deno.test("errorToInfo() and infoToError() round-trip celeriac's errors", () => {
  for (const error of CELERIAC_ERRORS) {
    const info = errorToInfo(error);
    const back = infoToError(info);
    assert.equal(back.message, error.message, error.name);
    assert.equal(back.name, info.exc_type, error.name);
    assert.deepEqual(errorToInfo(back), info, error.name);
    if (!(error instanceof TaskError) && error.constructor !== Error) {
      const builtin = ["TypeError", "RangeError"].includes(error.name);
      if (!builtin) assert.equal(back.constructor, error.constructor, error.name);
    }
  }
  assert.deepEqual(errorToInfo("a string"), {
    exc_type: "Exception",
    exc_message: ["a string"],
    exc_module: "builtins",
  });
  assert.equal((infoToError(errorToInfo(new NotRegistered("t"))) as NotRegistered).taskName, "t");
});

Deno.test("infoToError() maps only Celery's own modules to celeriac's error classes", () => {
  const own = infoToError({
    exc_type: "Retry",
    exc_message: ["later"],
    exc_module: "celery.exceptions",
  });
  assert.ok(own instanceof Retry);
  const theirs = infoToError({ exc_type: "Retry", exc_message: ["x"], exc_module: "myapp.errors" });
  assert.ok(theirs instanceof TaskError && !(theirs instanceof Retry));
  assert.equal(theirs.name, "Retry");
  assert.equal((theirs as TaskError).excModule, "myapp.errors");
  const limit = infoToError({
    exc_type: "TimeLimitExceeded",
    exc_message: ["TimeLimitExceeded(30,)"],
    exc_module: "billiard.exceptions",
  });
  assert.ok(limit instanceof TimeLimitExceeded);
});

Deno.test("toIso() refuses dates Python cannot represent", () => {
  assert.throws(() => toIso(new Date(NaN)), RangeError);
  assert.throws(() => toIso(new Date(Date.UTC(10000, 0, 1))), RangeError);
  assert.throws(
    () => encodeTask({ id: "1", name: "t", args: [], kwargs: {}, eta: new Date("nope") }),
    RangeError,
  );
  assert.equal(toIso(new Date(Date.UTC(999, 0, 1))), "0999-01-01T00:00:00.000000+00:00");
});

Deno.test("Celery's exception_to_python rebuilds the errors celeriac stores", async () => {
  const infos = CELERIAC_ERRORS.map((e) => errorToInfo(e));
  const rebuilt = await python(
    `
import json, sys
from celery import Celery
backend = Celery(backend="cache+memory://").backend
out = []
for info in json.load(sys.stdin):
    exc = backend.exception_to_python(info)
    out.append([type(exc).__module__, type(exc).__name__, isinstance(exc, BaseException)])
print(json.dumps(out))
`,
    infos,
  ) as [string, string, boolean][];
  rebuilt.forEach(([module, name, isException], i) => {
    const info = infos[i]!;
    assert.equal(name, info.exc_type, `exc_type ${info.exc_type}`);
    assert.ok(isException);
    // A known module gives the real Python class; an unknown one a class Celery makes up.
    const known = ["builtins", "celery.exceptions", "billiard.exceptions"];
    if (known.includes(info.exc_module)) assert.equal(module, info.exc_module, info.exc_type);
  });
});

// ---------------------------------------------------------------------------------------------
// Round trip through a real Python Celery worker

const PUSH_AND_WAIT = `
import json, sys, time, redis
job = json.load(sys.stdin)
broker = redis.Redis.from_url("redis://127.0.0.1:6379/0")
results = redis.Redis.from_url("redis://127.0.0.1:6379/1")
keys = ["celery-task-meta-" + i for i in job["wait"]]
try:
    for key, envelope in job["push"]:
        broker.lpush(key, envelope)
    deadline = time.time() + job["timeout"]
    metas = {}
    while time.time() < deadline and len(metas) < len(keys):
        for key, raw in zip(keys, results.mget(keys)):
            if raw is not None:
                meta = json.loads(raw)
                if meta["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                    metas[meta["task_id"]] = meta
        time.sleep(0.05)
    print(json.dumps(metas))
finally:
    results.delete(*keys)
    broker.delete(*[key for key, _ in job["push"]], "_kombu.binding." + job["queue"])
`;

Deno.test({
  name: "a Python Celery worker runs celeriac-encoded messages pushed in kombu envelope form",
  async fn() {
    const queue = `celeriac-fixtures-${crypto.randomUUID()}`;
    const worker = new Deno.Command(PYTHON, {
      args: [
        "-m",
        "celery",
        "-A",
        "capture",
        "worker",
        "--pool",
        "solo",
        "-c",
        "1",
        "-Q",
        queue,
        "-n",
        `fixtures-${crypto.randomUUID()}@%h`,
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "-l",
        "INFO",
      ],
      cwd: new URL(".", FIXTURES).pathname,
      env: { CELERIAC_WORKER: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const logs = Promise.all([
      new Response(worker.stdout).text(),
      new Response(worker.stderr).text(),
    ]);
    try {
      const now = Date.now();
      const ids = {
        chain: crypto.randomUUID(),
        next: crypto.randomUUID(),
        options: crypto.randomUUID(),
        expired: crypto.randomUUID(),
        unicode: crypto.randomUUID(),
      };
      const next: SignatureDict = {
        task: "tasks.mul",
        args: [10],
        kwargs: {},
        options: { task_id: ids.next, queue },
        subtask_type: null,
        immutable: false,
      };
      const messages: [string, Message][] = [
        [
          queue,
          encodeTask({ id: ids.chain, name: "tasks.add", args: [2, 3], kwargs: {}, chain: [next] }),
        ],
        [
          `${queue}${SEP}3`,
          encodeTask({
            id: ids.options,
            name: "tasks.add",
            args: [4],
            kwargs: { y: 5 },
            eta: new Date(now + 1000),
            expires: new Date(now + 60_000),
            timeLimit: 30,
            softTimeLimit: 20,
            priority: 5,
            headers: { "x-custom": "v" },
          }),
        ],
        [
          queue,
          encodeTask({
            id: ids.expired,
            name: "tasks.add",
            args: [1, 1],
            kwargs: {},
            expires: new Date(now - 1000),
          }),
        ],
        [
          queue,
          encodeTask({
            id: ids.unicode,
            name: "tasks.add",
            args: ["héllo ✓ "],
            kwargs: { y: "🎉" },
          }),
        ],
      ];
      const push = messages.map(([key, m]) => [key, JSON.stringify(toKombuEnvelope(m, { queue }))]);
      const started = performance.now();
      const metas = await python(PUSH_AND_WAIT, {
        push,
        queue,
        wait: Object.values(ids),
        timeout: 15,
      }) as Record<string, { status: string; result: unknown }>;
      const elapsed = performance.now() - started;
      assert.deepEqual(
        Object.fromEntries(
          Object.entries(ids).map(([k, id]) => [k, metas[id]?.status ?? "PENDING"]),
        ),
        {
          chain: "SUCCESS",
          next: "SUCCESS",
          options: "SUCCESS",
          expired: "REVOKED",
          unicode: "SUCCESS",
        },
        `metas after ${Math.round(elapsed)} ms: ${JSON.stringify(metas)}`,
      );
      assert.equal(metas[ids.chain]?.result, 5);
      assert.equal(metas[ids.next]?.result, 50, "the worker followed the reversed chain");
      assert.equal(metas[ids.options]?.result, 9, "kwargs reached the Python task");
      assert.equal(metas[ids.unicode]?.result, "héllo ✓ 🎉");
      assert.deepEqual(metas[ids.expired]?.result, {
        exc_type: "TaskRevokedError",
        exc_message: ["expired"],
        exc_module: "celery.exceptions",
      });
    } catch (e) {
      worker.kill("SIGTERM");
      await worker.status;
      const [out, err] = await logs;
      throw new Error(`${(e as Error).message}\n--- worker log ---\n${out}\n${err}`, { cause: e });
    }
    worker.kill("SIGTERM");
    const status = await worker.status;
    await logs;
    assert.ok(
      status.success || status.signal === "SIGTERM",
      `worker exit ${JSON.stringify(status)}`,
    );
  },
});

// ---------------------------------------------------------------------------------------------
// Protocol edge: large, compressed and absurd messages

function kombuOf(message: Message): KombuEnvelope {
  return toKombuEnvelope(message, { queue: "celery", deliveryTag: "t" });
}

Deno.test("fromKombuEnvelope() decodes 20 MB and 50 MB Redis bodies (linear-time base64 check)", () => {
  for (const mb of [20, 50]) {
    const count = Math.ceil((mb * 1024 * 1024) / 6.5);
    const args = [Array.from({ length: count }, (_, i) => i % 1_000_000), "end"];
    const m = encodeTask({ id: `big-${mb}`, name: "tasks.big", args, kwargs: { mb } });
    assert.ok(m.body.length >= mb * 1024 * 1024, `${m.body.length} bytes`);
    // Through JSON text, as the Redis broker pops it.
    const request = decodeTask(fromKombuEnvelope(JSON.stringify(kombuOf(m))));
    assert.equal(request.args.length, 2);
    const list = request.args[0] as number[];
    assert.equal(list.length, count);
    assert.equal(list[count - 1], (count - 1) % 1_000_000);
    assert.equal(request.args[1], "end");
    assert.deepEqual(request.kwargs, { mb });
  }
});

Deno.test("fromKombuEnvelope() says what is wrong with a body that is not base64", () => {
  const env = kombuOf(validMessage());
  const bad = (body: string) => () => fromKombuEnvelope({ ...env, body });
  assert.throws(bad(env.body + "A"), /not valid base64: its length \d+ is not a multiple/);
  assert.throws(bad("ab!d" + env.body), /not valid base64: character "!" at offset 2/);
  assert.throws(bad("ab=d"), /padding "=" at offset 2 is not at the end/);
  // A large invalid body gives the same clear reason, not a stack overflow.
  assert.throws(bad("A".repeat(8_000_001) + "!"), /not valid base64/);
});

Deno.test("decodeTask() validates timelimit, retries, eta/expires, id, name, args, kwargs, embed", () => {
  const m = validMessage();
  const h = (extra: Record<string, unknown>) => ({ ...m, headers: { ...m.headers, ...extra } });
  for (const timelimit of [[-1, null], [null, -0.5], [NaN, null], ["30", null], [2 ** 31 + 1, 1]]) {
    assertDecodeError(
      h({ timelimit }),
      /Header timelimit\[[01]\] \((hard|soft)\) must be null or a number of seconds from 0 to 2\^31/,
    );
  }
  assertDecodeError(
    h({ timelimit: [1, 2, 3] }),
    /timelimit must be \[hard, soft\] or null, got a list of 3/,
  );
  assertDecodeError(h({ timelimit: "30" }), /timelimit must be \[hard, soft\]/);
  assert.deepEqual(decodeTask(h({ timelimit: [2 ** 31, 0] })).timeLimit, [2 ** 31, 0]);
  assert.deepEqual(decodeTask(h({ timelimit: [null, 1.5] })).timeLimit, [null, 1.5]);
  for (const retries of [-1, 1.5, "2", 1e300]) {
    assertDecodeError(h({ retries }), /Header retries must be a non-negative integer/);
  }
  assertDecodeError(h({ eta: 5 }), /Header eta must be an ISO-8601 time, got number 5/);
  assertDecodeError(h({ expires: "soon" }), /Header expires must be an ISO-8601 time/);
  // Year 9999 is a valid time: accepted, as Celery does (the broker holds it).
  assert.equal(decodeTask(h({ eta: "9999-12-31T23:59:59" })).eta?.getUTCFullYear(), 9999);
  assertDecodeError(h({ id: 5 }), /Task id header must be a non-empty string, got number 5/);
  assertDecodeError(h({ id: "" }), /Task id header must be a non-empty string/);
  assertDecodeError(h({ task: 7 }), /Header task must be a non-empty task name, got number 7/);
  assertDecodeError(h({ task: "" }), /Header task must be a non-empty task name/);
  assertDecodeError(
    { ...m, headers: [1] as unknown as Record<string, unknown> },
    /headers must be a mapping, got a list/,
  );
  assertDecodeError({ ...m, body: '["a", {}, {}]' }, /args must be a list, got the string 'a'/);
  assertDecodeError({ ...m, body: "[[], 3, {}]" }, /kwargs must be a mapping, got number 3/);
  assertDecodeError(
    { ...m, body: "[[], {}, []]" },
    /embed \(third element\) must be a mapping or null, got a list/,
  );
  // Names and ids with control characters are data, accepted as Celery accepts them; reasons
  // that quote untrusted values escape them.
  assert.equal(decodeTask(h({ task: "evil\n\x1b[31m" })).name, "evil\n\x1b[31m");
  assertDecodeError(h({ retries: "\n\x1b" }), /got the string '\\n\\x1b'$/);
  // A huge wrong value is quoted briefly.
  assert.throws(
    () => decodeTask(h({ shadow: ["x".repeat(1_000_000)] })),
    (e: Error) => e.message.length < 200,
  );
});

Deno.test("decodeTask() names the serializer of a non-JSON body", () => {
  const m = validMessage();
  for (
    const [type, name] of [
      ["application/x-python-serialize", "pickle"],
      ["application/x-yaml", "yaml"],
      ["application/x-msgpack", "msgpack"],
    ]
  ) {
    assertDecodeError(
      { ...m, contentType: type!, contentEncoding: "binary" },
      new RegExp(`\\(${name}\\) is not accepted`),
    );
  }
  assertDecodeError(
    { ...m, contentType: "text/x-weird" },
    /'text\/x-weird' is not accepted: celeriac reads only application\/json/,
  );
});

Deno.test("decodeTask() inflates brotli bodies; decompress() refuses a decompression bomb", async () => {
  const { brotliCompressSync, deflateSync } = await import("node:zlib");
  const m = encodeTask({ id: "br", name: "tasks.add", args: [1, 2], kwargs: {} });
  const compressed = (bytes: Uint8Array, compression: string): Message => ({
    ...m,
    headers: { ...m.headers, compression },
    body: String.fromCharCode(...bytes),
  });
  const br = compressed(
    brotliCompressSync(new TextEncoder().encode(m.body)),
    "application/x-brotli",
  );
  assert.deepEqual(decodeTask(fromKombuEnvelope(JSON.parse(JSON.stringify(kombuOf(br))))).args, [
    1,
    2,
  ]);
  const bomb = deflateSync(new Uint8Array(4 * 1024 * 1024));
  assert.throws(
    () => decompress(bomb, "zlib", 1024 * 1024),
    (e: Error) =>
      e instanceof MessageDecodeError && /inflates to more than 1048576 bytes/.test(e.message),
  );
  assert.equal(decompress(bomb, "application/x-gzip").length, 4 * 1024 * 1024);
  assertDecodeError(
    { ...m, headers: { ...m.headers, compression: "zstd" } },
    /compression 'zstd' is not supported \(supported: gzip, zlib, brotli\)/,
  );
});

Deno.test({
  name:
    "decodeTask() reads gzip- and zlib-compressed messages from Python Celery; bzip2 is refused clearly",
  async fn() {
    const captured = await python(
      `
import json, sys, uuid
import redis
from celery import Celery
app = Celery("tasks", broker="redis://127.0.0.1:6379/0")
app.conf.broker_connection_retry_on_startup = False
queue = f"celeriac-compression-{uuid.uuid4()}"
client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
out = {}
try:
    for compression in ["gzip", "zlib", "bzip2"]:
        app.send_task("tasks.add", args=[2, {"big": 10**23, "text": "h\\u00e9llo " * 200}],
                      kwargs={"c": compression}, queue=queue, compression=compression)
        raw = client.rpop(queue)
        out[compression] = json.loads(raw)
finally:
    client.delete(queue, f"_kombu.binding.{queue}")
    app.close()
print(json.dumps(out))
`,
      null,
    ) as Record<string, KombuEnvelope>;
    for (const compression of ["gzip", "zlib"]) {
      const envelope = captured[compression]!;
      assert.equal(envelope.headers.compression, "application/x-gzip", "kombu's content type");
      const request = decodeTask(fromKombuEnvelope(JSON.stringify(envelope)));
      assert.deepEqual(request.args, [2, { big: 10n ** 23n, text: "héllo ".repeat(200) }]);
      assert.deepEqual(request.kwargs, { c: compression });
      // Republished as is (a requeue or dead letter), it stays the same compressed bytes.
      const again = toKombuEnvelope(fromKombuEnvelope(envelope), { queue: "q" });
      assert.equal(again.body, envelope.body);
    }
    const bzip2 = fromKombuEnvelope(JSON.stringify(captured.bzip2));
    assertDecodeError(bzip2, /compression 'application\/x-bz2' is not supported/);
  },
});

Deno.test("a Redis envelope that cannot be read is dead-lettered with its own reason; a 20 MB body decodes", async () => {
  const { RedisBroker } = await import("../lib/brokers/redis.ts");
  const { deleteByPrefix, rawClient, REDIS } = await import("./_redis_helpers.ts");
  const id = crypto.randomUUID();
  const prefix = `celeriac-test-${id}:`;
  const queue = `q-${id}`;
  await using broker = new RedisBroker(REDIS, {
    keyPrefix: prefix,
    connectionName: `celeriac-test-${id}`,
  });
  const redis = await rawClient();
  try {
    const bad = { ...kombuOf(validMessage()), body: "not!base64" };
    const big = encodeTask({
      id: "big",
      name: "tasks.big",
      args: ["x".repeat(20 * 1024 * 1024)],
      kwargs: {},
    });
    // kombu LPUSHes and the consumer pops from the right: bad first, then the 20 MB body.
    await redis.lPush(`${prefix}${queue}`, JSON.stringify(bad));
    await redis.lPush(`${prefix}${queue}`, JSON.stringify(kombuOf(big)));
    const controller = new AbortController();
    const reasons: string[] = [];
    const args: unknown[] = [];
    const consumed = broker.consume([queue], {
      prefetch: 1,
      signal: controller.signal,
      onDeadLetter: (e) => reasons.push(e.reason),
    });
    for await (const d of consumed) {
      args.push(decodeTask(d.message).args[0]);
      await d.ack();
      controller.abort();
    }
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /not valid base64: character "!" at offset 3/);
    assert.equal((args[0] as string).length, 20 * 1024 * 1024);
    assert.equal(await redis.lLen(`${prefix}${queue}.dlq`), 1);
  } finally {
    await redis.disconnect();
    await deleteByPrefix(prefix);
  }
});
