/**
 * Celery task message protocol v2 (and v1, decoded only), JSON serializer.
 * See `celery/app/amqp.py:AMQP.as_task_v2` and CELERY_PROTOCOL.md §2.1.
 *
 * @module
 */

import { MessageDecodeError } from "../errors.ts";
import { latin1ToBytes } from "./body.ts";
import { decompress, isCompressed } from "./compression.ts";
import { parseJson, stringifyJson } from "./json.ts";
import { boundedRepr, type ReprOptions } from "./repr.ts";
import { truthy } from "./truthy.ts";

/** Message properties, as kombu names them. Unknown properties are kept and ignored. */
export interface MessageProperties {
  /** The task id. */
  correlation_id?: string;
  /** Where `rpc://` results go. */
  reply_to?: string;
  /** 2 = persistent. */
  delivery_mode?: number;
  /** 0–9. */
  priority?: number;
  /** AMQP per-message TTL in ms, as a string. */
  expiration?: string;
  /** Any other property. */
  [key: string]: unknown;
}

/**
 * A transport-neutral message: what every broker stores and delivers. Brokers wrap it in their
 * own envelope (kombu's JSON envelope on Redis, AMQP properties on RabbitMQ).
 */
export interface Message {
  /** Application headers; for a task, Celery's v2 headers. */
  headers: Record<string, unknown>;
  /** Message properties. */
  properties: MessageProperties;
  /** The serialized body, as text. */
  body: string;
  /** MIME type of `body`: `application/json`. */
  contentType: string;
  /** Character set of `body`: `utf-8`. */
  contentEncoding: string;
}

/** A serialized signature, as Celery writes it (`celery/canvas.py:Signature`). */
export interface SignatureDict {
  /** Task name. */
  task: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** Calling options (`task_id`, `queue`, `link`, `link_error`, ...). */
  options: Record<string, unknown>;
  /** `null` for a plain task, `chain`, `group`, `chord`, `chunks`, ... for canvases. */
  subtask_type: string | null;
  /** Whether the parent's result is not prepended to `args`. */
  immutable: boolean;
  /** Extra keys kept as Celery sends them. */
  [key: string]: unknown;
}

/** The third element of a v2 body. */
export interface Embed {
  /** Signatures called with the result on success. */
  callbacks: SignatureDict[] | null;
  /** Signatures called on failure. */
  errbacks: SignatureDict[] | null;
  /** The rest of a chain, reversed: the next task is the last element. */
  chain: SignatureDict[] | null;
  /** The chord body this task is a header member of. */
  chord: SignatureDict | null;
}

/** What a producer wants sent: the input of {@linkcode encodeTask}. */
export interface TaskCall {
  /** Task id. */
  id: string;
  /** Registered task name. */
  name: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** First task of the workflow. @default {id} */
  rootId?: string | null;
  /** The task that sent this one. */
  parentId?: string | null;
  /** Group id. */
  group?: string | null;
  /** Position in a chord header. */
  groupIndex?: number | null;
  /** Display name. */
  shadow?: string | null;
  /** Earliest run time. */
  eta?: Date | null;
  /** Expiry time. */
  expires?: Date | null;
  /** Retries so far. @default {0} */
  retries?: number;
  /** Hard time limit in seconds. */
  timeLimit?: number | null;
  /** Soft time limit in seconds. */
  softTimeLimit?: number | null;
  /** Sender node name. */
  origin?: string;
  /** Whether the worker skips the result. @default {false} */
  ignoreResult?: boolean;
  /** Reply queue for `rpc://` results. */
  replyTo?: string;
  /** 0–9. */
  priority?: number | null;
  /** Extra headers merged flat. */
  headers?: Record<string, unknown>;
  /**
   * Celery 5.3+ stamps, name → value: sent as the `stamped_headers` (the names) and `stamps`
   * headers. Absent: `stamped_headers` is null and `stamps` empty, as Celery sends.
   */
  stamps?: Record<string, unknown> | null;
  /** How many `replace()` calls led here (`replaced_task_nesting`). @default {0} */
  replacedTaskNesting?: number;
  /** Success callbacks. */
  callbacks?: SignatureDict[] | null;
  /** Failure callbacks. */
  errbacks?: SignatureDict[] | null;
  /** Reversed rest of a chain. */
  chain?: SignatureDict[] | null;
  /** Chord body. */
  chord?: SignatureDict | null;
}

/** A decoded task message: what a worker runs. */
export interface TaskRequest {
  /** Task id. */
  id: string;
  /** Task name. */
  name: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** Callbacks, errbacks, chain and chord. */
  embed: Embed;
  /** First task of the workflow. */
  rootId: string;
  /** The task that sent this one. */
  parentId: string | null;
  /** Group id. */
  group: string | null;
  /** Position in a chord header. */
  groupIndex: number | null;
  /** Display name. */
  shadow: string | null;
  /** Earliest run time. */
  eta: Date | null;
  /** Expiry time. */
  expires: Date | null;
  /** Retries so far. */
  retries: number;
  /** `[hard, soft]` in seconds. */
  timeLimit: [number | null, number | null];
  /** Sender node name. */
  origin: string | null;
  /** Whether to skip the result. */
  ignoreResult: boolean;
  /** Reply queue for `rpc://` results. */
  replyTo: string | null;
  /** Priority from the properties. */
  priority: number | null;
  /** All headers, including custom ones. */
  headers: Record<string, unknown>;
  /** Protocol version the message used. */
  protocol: 1 | 2;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/**
 * Formats a time as Celery does: UTC, microseconds, `+00:00`.
 *
 * @param date The time.
 * @returns `2026-11-21T01:19:41.338000+00:00`.
 * @throws {RangeError} For an invalid date, or a year outside 1–9999.
 * @example
 * ```ts
 * import { toIso } from "./message.ts";
 * console.assert(toIso(new Date(0)) === "1970-01-01T00:00:00.000000+00:00");
 * ```
 */
export function toIso(date: Date): string {
  const year = date.getUTCFullYear();
  // Python's datetime (and Celery's parser) only knows four-digit years.
  if (Number.isNaN(year) || year < 1 || year > 9999) {
    throw new RangeError(`Cannot format time as ISO-8601: it must be a valid date in years 1-9999`);
  }
  return `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}T${
    pad(date.getUTCHours())
  }:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${
    pad(date.getUTCMilliseconds(), 3)
  }000+00:00`;
}

// Celery's own grammar (`celery/utils/iso8601.py`), anchored; a space may separate date and time.
const ISO_8601 =
  /^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * Parses an ISO-8601 time; a time without an offset is UTC, as Celery assumes. The grammar is
 * Celery's (`celery/utils/iso8601.py`), anchored, so text that `Date` would guess at (`"1"`,
 * `"tomorrow"`) and impossible dates (`2026-02-31`) are rejected.
 *
 * @param value The header value.
 * @returns The time, or `null` for `null`/absent.
 * @throws {MessageDecodeError} When the value is not a valid time.
 * @example
 * ```ts
 * import { parseIso } from "./message.ts";
 * console.assert(parseIso("2026-11-21T01:19:41.338833")?.toISOString() === "2026-11-21T01:19:41.338Z");
 * ```
 */
export function parseIso(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  const invalid = () => new MessageDecodeError(`Expected an ISO-8601 time, got ${brief(value)}`);
  if (typeof value !== "string") throw invalid();
  const m = ISO_8601.exec(value.trim());
  if (!m) throw invalid();
  const [, y, mo, d, h = "0", mi = "0", sec = "0", fraction = "", zone = "Z"] = m;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, sec].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // The fraction is a decimal fraction of a second; JavaScript keeps milliseconds.
  const ms = Number(fraction.padEnd(3, "0").slice(0, 3));
  let offset = 0;
  if (zone.toUpperCase() !== "Z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    offset = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2)));
  }
  const time = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  const check = new Date(time);
  // Date.UTC rolls 2026-02-31 over into March: reject instead.
  if (
    check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59
  ) {
    throw invalid();
  }
  return new Date(time - offset * 60_000);
}

/**
 * A Python-style `repr` of arguments, for the `argsrepr`/`kwargsrepr` headers and the task
 * events that monitors show: bounded as Celery's `saferepr` is (3 levels, then `[...]`; at
 * most 100 items per container; 1,024 characters in all; `...` where a value contains itself),
 * so any input, however deep, large or cyclic, gives a short text and never throws.
 *
 * @param value The value.
 * @param tuple Render an array as a Python tuple.
 * @returns The repr text, at most 1,024 characters.
 * @example
 * ```ts
 * import { pyRepr } from "./message.ts";
 * console.assert(pyRepr([2, "a", null, true], true) === "(2, 'a', None, True)");
 * ```
 */
export function pyRepr(value: unknown, tuple = false): string {
  return boundedRepr(value, tuple ? TUPLE : undefined);
}

const TUPLE: ReprOptions = { tuple: true };

/** What task events and `inspect` show of a request's arguments. */
export interface RequestReprs {
  /** The positional arguments, as a Python tuple repr. */
  args: string;
  /** The keyword arguments, as a Python dict repr. */
  kwargs: string;
}

// argsrepr/kwargsrepr as sent: at most what pyRepr writes, and never a control character.
function sentRepr(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const text = value.length > 1024 ? value.slice(0, 1021) + "..." : value;
  return escapeReprControl(text);
}

// deno-lint-ignore no-control-regex -- finding control characters is the point
const REPR_CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/g;
const escapeReprControl = (text: string) =>
  text.replace(REPR_CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });

/**
 * The args and kwargs texts for task events (`task-received`) and `inspect`, as a Python worker
 * shows them: the message's `argsrepr`/`kwargsrepr` headers when the sender set them (so
 * arguments a client masked stay masked), else a bounded {@linkcode pyRepr} of the values. Both
 * are at most 1,024 characters and free of control characters, whatever the message holds.
 *
 * @param request The decoded request.
 * @returns The two texts.
 * @example
 * ```ts
 * import { decodeTask, encodeTask, requestReprs } from "./message.ts";
 * const m = encodeTask({ id: "1", name: "t", args: [2], kwargs: {}, headers: { argsrepr: "'<masked>'" } });
 * console.assert(requestReprs(decodeTask(m)).args === "'<masked>'");
 * ```
 */
export function requestReprs(
  request: Pick<TaskRequest, "args" | "kwargs" | "headers">,
): RequestReprs {
  const headers = request.headers ?? {};
  return {
    args: sentRepr(headers.argsrepr) ?? pyRepr(request.args, true),
    kwargs: sentRepr(headers.kwargsrepr) ?? pyRepr(request.kwargs),
  };
}

// A short repr of an untrusted value for an error reason: bounded, and safe to log.
const brief = (value: unknown) => boundedRepr(value, { maxDepth: 2, maxItems: 5, maxLength: 80 });

/**
 * Encodes a task call as a Celery protocol v2 JSON message, with every header Celery 5.6 sends
 * (5.3+ added `replaced_task_nesting`, `stamped_headers` and `stamps`; older workers ignore
 * them).
 *
 * @param call What to send.
 * @returns The message.
 * @example
 * ```ts
 * import { encodeTask } from "./message.ts";
 * const m = encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} });
 * console.assert(m.headers.task === "tasks.add" && m.body.startsWith("[[2,2],{}"));
 * ```
 */
export function encodeTask(call: TaskCall): Message {
  const headers: Record<string, unknown> = {
    lang: "py",
    task: call.name,
    id: call.id,
    shadow: call.shadow ?? null,
    eta: call.eta ? toIso(call.eta) : null,
    expires: call.expires ? toIso(call.expires) : null,
    group: call.group ?? null,
    group_index: call.groupIndex ?? null,
    retries: call.retries ?? 0,
    timelimit: [call.timeLimit ?? null, call.softTimeLimit ?? null],
    root_id: call.rootId ?? call.id,
    parent_id: call.parentId ?? null,
    argsrepr: pyRepr(call.args, true),
    kwargsrepr: pyRepr(call.kwargs),
    origin: call.origin ?? null,
    ignore_result: call.ignoreResult ?? false,
    replaced_task_nesting: call.replacedTaskNesting ?? 0,
    stamped_headers: call.stamps ? Object.keys(call.stamps) : null,
    stamps: call.stamps ? { ...call.stamps } : {},
    ...call.headers,
  };
  const properties: MessageProperties = {
    correlation_id: call.id,
    reply_to: call.replyTo ?? "",
    delivery_mode: 2,
    priority: call.priority ?? 0,
  };
  if (call.expires) {
    properties.expiration = String(Math.max(0, call.expires.getTime() - Date.now()));
  }
  const embed: Embed = {
    callbacks: call.callbacks ?? null,
    errbacks: call.errbacks ?? null,
    chain: call.chain ?? null,
    chord: call.chord ?? null,
  };
  return {
    headers,
    properties,
    body: encodeBody(call.args, call.kwargs, embed),
    contentType: "application/json",
    contentEncoding: "utf-8",
  };
}

// One codec call for the usual body; when it fails, the parts again, so that the EncodeError
// names `args[1]`, `kwargs.x` or `embed.callbacks[0]...` rather than a position in the body.
function encodeBody(args: unknown[], kwargs: Record<string, unknown>, embed: Embed): string {
  try {
    return stringifyJson([args, kwargs, embed], "body");
  } catch {
    return `[${stringifyJson(args, "args")},${stringifyJson(kwargs, "kwargs")},${
      stringifyJson(embed, "embed")
    }]`;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * The largest time limit a `timelimit` header may hold, in seconds: 2^31 s (about 68 years).
 * Larger, negative or non-numeric limits are refused by {@linkcode decodeTask}. Timers past
 * 2^31 ms (24.8 days) are chained by `lib/_timer.ts`, so every accepted limit is honoured.
 */
export const MAX_TIME_LIMIT_SECONDS = 2 ** 31;

// What a value is, for a reason: "a string 'x'", "a list", "null".
function kind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string ${brief(value)}`;
  return `${typeof value} ${brief(value)}`;
}

function optionalString(value: unknown, field: string): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "string") {
    throw new MessageDecodeError(`Header ${field} must be a string, got ${kind(value)}`);
  }
  return value;
}

function optionalNumber(value: unknown, field: string): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new MessageDecodeError(`Header ${field} must be a number, got ${kind(value)}`);
  }
  return value;
}

function optionalCount(value: unknown, field: string): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new MessageDecodeError(
      `Header ${field} must be a non-negative integer, got ${kind(value)}`,
    );
  }
  return value;
}

function requiredId(value: unknown, field: string): string {
  if (typeof value !== "string" || value === "") {
    throw new MessageDecodeError(
      value === undefined || value === null
        ? `Task message has no ${field}`
        : `Task ${field} must be a non-empty string, got ${kind(value)}`,
    );
  }
  return value;
}

function signature(value: unknown, field: string): SignatureDict {
  if (!isObject(value) || typeof value.task !== "string") {
    throw new MessageDecodeError(
      `${field} must be a signature {task, args, kwargs, options}, got ${brief(value)}`,
    );
  }
  return value as SignatureDict;
}

function signatures(value: unknown, field: string): SignatureDict[] | null {
  if (value === null || value === undefined) return null;
  if (!Array.isArray(value)) {
    throw new MessageDecodeError(
      `${field} must be a list of signatures or null, got ${kind(value)}`,
    );
  }
  return value.map((v, i) => signature(v, `${field}[${i}]`));
}

function readEmbed(value: unknown, where: string): Embed {
  if (value !== null && value !== undefined && !isObject(value)) {
    throw new MessageDecodeError(`${where} must be a mapping or null, got ${kind(value)}`);
  }
  const embed = value ?? {};
  return {
    callbacks: signatures(embed.callbacks, "callbacks"),
    errbacks: signatures(embed.errbacks, "errbacks"),
    chain: signatures(embed.chain, "chain"),
    chord: embed.chord === null || embed.chord === undefined
      ? null
      : signature(embed.chord, "chord"),
  };
}

function timeLimit(value: unknown, field: string): number | null {
  if (value === null || value === undefined) return null;
  if (
    typeof value !== "number" || !Number.isFinite(value) || value < 0 ||
    value > MAX_TIME_LIMIT_SECONDS
  ) {
    throw new MessageDecodeError(
      `Header ${field} must be null or a number of seconds from 0 to 2^31, got ${kind(value)}`,
    );
  }
  return value;
}

function readTimeLimit(value: unknown): [number | null, number | null] {
  if (value === null || value === undefined) return [null, null];
  if (!Array.isArray(value) || value.length !== 2) {
    throw new MessageDecodeError(
      `Header timelimit must be [hard, soft] or null, got ${kind(value)}${
        Array.isArray(value) ? ` of ${value.length}` : ""
      }`,
    );
  }
  return [timeLimit(value[0], "timelimit[0] (hard)"), timeLimit(value[1], "timelimit[1] (soft)")];
}

/**
 * The content type of a placeholder {@linkcode undecodableMessage}: never sent on the wire.
 */
export const UNDECODABLE_CONTENT_TYPE = "application/x-celeriac-undecodable";

/**
 * A placeholder for a delivery whose broker envelope could not be read (not JSON, bad base64,
 * bad UTF-8): a broker hands it to the consumer instead of the message, so that the delivery
 * is still settled, and {@linkcode decodeTask} then throws a `MessageDecodeError` with the
 * envelope's own reason, for the dead-letter log line.
 *
 * @param cause Why the envelope could not be read (its message becomes the reason).
 * @param properties Properties the broker still knows (delivery tag, ...).
 * @returns The placeholder message.
 * @example
 * ```ts
 * import { decodeTask, undecodableMessage } from "./message.ts";
 * try {
 *   decodeTask(undecodableMessage(new Error("body is not valid base64")));
 * } catch (e) {
 *   console.assert((e as Error).message.endsWith("body is not valid base64"));
 * }
 * ```
 */
export function undecodableMessage(cause: unknown, properties: MessageProperties = {}): Message {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return {
    headers: {},
    properties,
    body: reason,
    contentType: UNDECODABLE_CONTENT_TYPE,
    contentEncoding: "utf-8",
  };
}

const SERIALIZER_NAMES: Record<string, string> = {
  "application/x-python-serialize": "pickle",
  "application/x-yaml": "yaml",
  "application/x-msgpack": "msgpack",
  "application/data": "raw bytes",
  "application/text": "raw text",
};

function checkContent(message: Message): void {
  if (!isObject(message)) {
    throw new MessageDecodeError(`A message must be an object, got ${kind(message)}`);
  }
  if (typeof message.contentType !== "string") {
    throw new MessageDecodeError("A message needs a string contentType");
  }
  if (typeof message.body !== "string") {
    throw new MessageDecodeError("A message body must be text");
  }
  if (message.headers !== null && message.headers !== undefined && !isObject(message.headers)) {
    throw new MessageDecodeError(`Message headers must be a mapping, got ${kind(message.headers)}`);
  }
  if (
    message.properties !== null && message.properties !== undefined &&
    !isObject(message.properties)
  ) {
    throw new MessageDecodeError(
      `Message properties must be a mapping, got ${kind(message.properties)}`,
    );
  }
  const type = message.contentType.trim().toLowerCase();
  if (type === UNDECODABLE_CONTENT_TYPE) {
    throw new MessageDecodeError(`The broker envelope could not be read: ${message.body}`);
  }
  if (type === "") {
    throw new MessageDecodeError(
      "The message has no content type (its broker envelope could not be read)",
    );
  }
  if (type !== "application/json") {
    const serializer = SERIALIZER_NAMES[type];
    throw new MessageDecodeError(
      `Content type ${brief(message.contentType)}${
        serializer ? ` (${serializer})` : ""
      } is not accepted: celeriac reads only application/json (Celery's task_serializer='json')`,
    );
  }
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// The JSON text of a body: inflated when compressed, UTF-8-decoded when carried as bytes.
function bodyText(message: Message): string {
  const headers = isObject(message.headers) ? message.headers : {};
  const compressed = isCompressed(headers);
  const bytesBody = compressed || message.contentEncoding?.toLowerCase?.() === "binary";
  if (!bytesBody) return message.body;
  const raw = latin1ToBytes(message.body);
  const bytes = compressed ? decompress(raw, headers.compression) : raw;
  try {
    return utf8Decoder.decode(bytes);
  } catch (cause) {
    throw new MessageDecodeError(
      `The ${compressed ? "inflated " : ""}body is not valid UTF-8 JSON text`,
      { cause },
    );
  }
}

/**
 * Decodes a task message, protocol v2 (a `task` header) or v1 (everything in the body).
 *
 * Every field is checked, and anything wrong is a {@linkcode MessageDecodeError} whose message
 * says what: a content type other than JSON (pickle, yaml, msgpack), an unsupported
 * `compression` (gzip/zlib and brotli bodies are inflated), a missing or non-string task name
 * or id, args that are not a list, kwargs or embed that are not a mapping, `retries` that is not
 * a non-negative integer, `eta`/`expires` that are not ISO-8601 times, a `timelimit` that is not
 * `[hard, soft]` of nulls or seconds from 0 to {@linkcode MAX_TIME_LIMIT_SECONDS}.
 *
 * Accepted as Celery accepts them: an `eta` or `expires` far in the future (year 9999: the
 * broker holds the message, and timers past 2^31 ms are chained), and task names or ids with
 * control characters (they are data; every log line escapes them, see `lib/_log.ts`).
 *
 * @param message A message from a broker.
 * @returns The request.
 * @throws {MessageDecodeError} For anything that is not a valid JSON task message.
 * @example
 * ```ts
 * import { decodeTask, encodeTask } from "./message.ts";
 * const m = encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} });
 * console.assert(decodeTask(m).args[1] === 2);
 * ```
 */
export function decodeTask(message: Message): TaskRequest {
  checkContent(message);
  const headers = isObject(message.headers) ? message.headers : {};
  const body = parseJson(bodyText(message));
  const properties = isObject(message.properties) ? message.properties : {};
  const priority = optionalNumber(properties.priority, "priority");
  if (headers.task !== undefined && headers.task !== null) {
    if (typeof headers.task !== "string" || headers.task === "") {
      throw new MessageDecodeError(
        `Header task must be a non-empty task name, got ${kind(headers.task)}`,
      );
    }
    return decodeV2(headers, properties, body, priority);
  }
  if (isObject(body) && body.task !== undefined && body.task !== null) {
    if (typeof body.task !== "string" || body.task === "") {
      throw new MessageDecodeError(
        `Protocol v1 body task must be a non-empty task name, got ${kind(body.task)}`,
      );
    }
    return decodeV1(body, properties, priority);
  }
  throw new MessageDecodeError("Not a Celery task message: no task name in headers or body");
}

/**
 * Decodes only the headers of a protocol v2 task message: the body is not read, so args and
 * kwargs are empty and the embed is `null`s. For a message whose body cannot be read (an
 * unsupported compression) but whose task id is known, so that a failure can be stored.
 *
 * @param message A message from a broker.
 * @returns The request, without its body.
 * @throws {MessageDecodeError} When the headers are not valid v2 task headers.
 * @example
 * ```ts
 * import { decodeTaskHeaders, encodeTask } from "./message.ts";
 * const m = encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} });
 * console.assert(decodeTaskHeaders({ ...m, body: "?" }).id === "1");
 * ```
 */
export function decodeTaskHeaders(message: Message): TaskRequest {
  const headers = isObject(message) && isObject(message.headers) ? message.headers : {};
  if (typeof headers.task !== "string" || headers.task === "") {
    throw new MessageDecodeError("Not a protocol v2 task message: no task header");
  }
  const properties = isObject(message.properties) ? message.properties : {};
  const priority = optionalNumber(properties.priority, "priority");
  return decodeV2(headers, properties, [[], {}, null], priority);
}

function decodeV2(
  headers: Record<string, unknown>,
  properties: Record<string, unknown>,
  body: unknown,
  priority: number | null,
): TaskRequest {
  const id = requiredId(headers.id, "id header");
  if (!Array.isArray(body) || body.length < 2) {
    throw new MessageDecodeError(
      `Task body must be the JSON list [args, kwargs, embed], got ${kind(body)}${
        Array.isArray(body) ? ` of ${body.length}` : ""
      }`,
    );
  }
  const [args, kwargs, embed] = body;
  if (!Array.isArray(args)) {
    throw new MessageDecodeError(`Task args must be a list, got ${kind(args)}`);
  }
  if (!isObject(kwargs)) {
    throw new MessageDecodeError(`Task kwargs must be a mapping, got ${kind(kwargs)}`);
  }
  return {
    id,
    name: headers.task as string,
    args,
    kwargs,
    embed: readEmbed(embed, "Task body embed (third element)"),
    rootId: optionalString(headers.root_id, "root_id") ?? id,
    parentId: optionalString(headers.parent_id, "parent_id"),
    group: optionalString(headers.group, "group"),
    groupIndex: optionalCount(headers.group_index, "group_index"),
    shadow: optionalString(headers.shadow, "shadow"),
    eta: parseIsoHeader(headers.eta, "eta"),
    expires: parseIsoHeader(headers.expires, "expires"),
    retries: optionalCount(headers.retries, "retries") ?? 0,
    timeLimit: readTimeLimit(headers.timelimit),
    origin: optionalString(headers.origin, "origin"),
    ignoreResult: truthy(headers.ignore_result),
    replyTo: optionalString(properties.reply_to, "reply_to") || null,
    priority,
    headers,
    protocol: 2,
  };
}

function parseIsoHeader(value: unknown, field: string): Date | null {
  try {
    return parseIso(value);
  } catch (cause) {
    throw new MessageDecodeError(`Header ${field} must be an ISO-8601 time, got ${kind(value)}`, {
      cause,
    });
  }
}

function decodeV1(
  body: Record<string, unknown>,
  properties: Record<string, unknown>,
  priority: number | null,
): TaskRequest {
  const id = requiredId(body.id, "id in the body");
  const args = body.args ?? [];
  const kwargs = body.kwargs ?? {};
  if (!Array.isArray(args)) {
    throw new MessageDecodeError(`Task args must be a list, got ${kind(args)}`);
  }
  if (!isObject(kwargs)) {
    throw new MessageDecodeError(`Task kwargs must be a mapping, got ${kind(kwargs)}`);
  }
  const { callbacks, errbacks, chord } = readEmbed(
    { callbacks: body.callbacks, errbacks: body.errbacks, chord: body.chord },
    "Task body",
  );
  return {
    id,
    name: body.task as string,
    args,
    kwargs,
    embed: { callbacks, errbacks, chain: null, chord },
    rootId: id,
    parentId: null,
    // Celery's proto1_to_proto2 reads the group from `taskset`; 3.x senders set only `group`.
    group: optionalString(body.taskset ?? body.group, "taskset"),
    groupIndex: optionalCount(body.group_index, "group_index"),
    shadow: null,
    eta: parseIsoHeader(body.eta, "eta"),
    expires: parseIsoHeader(body.expires, "expires"),
    retries: optionalCount(body.retries, "retries") ?? 0,
    timeLimit: readTimeLimit(body.timelimit),
    origin: null,
    ignoreResult: false,
    replyTo: optionalString(properties.reply_to, "reply_to") || null,
    priority,
    headers: { task: body.task, id },
    protocol: 1,
  };
}
