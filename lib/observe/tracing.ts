/**
 * OpenTelemetry spans for the one data path: a PRODUCER span for every publish (`delay`,
 * `applyAsync`, `sendTask`, canvas sends, retries) and a CONSUMER span for every execution,
 * linked by W3C `traceparent`/`tracestate` in the message headers, where Python's
 * opentelemetry-instrumentation-celery puts and reads them, so traces cross between Python
 * and celeriac both ways. Span names follow that instrumentation (`apply_async/<task>`,
 * `run/<task>`); attributes follow OpenTelemetry's messaging conventions.
 *
 * Spans go through `@opentelemetry/api`: with Deno's built-in OpenTelemetry
 * (`OTEL_DENO=true`) or any SDK registered globally before the first publish they are
 * exported; otherwise every function here returns at once, before making anything
 * ({@linkcode tracingEnabled}).
 *
 * @module
 */

import {
  type Attributes,
  type Context,
  context,
  propagation,
  ProxyTracerProvider,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { Message } from "../protocol/message.ts";

const SCOPE = "celeriac";

let cachedTracer: Tracer | undefined;

let enabled: boolean | undefined;

/**
 * Whether a tracer provider is registered (Deno's built-in one with `OTEL_DENO=true`, or an
 * SDK's). Decided at the first call (the first publish or run) and remembered, so that with
 * tracing off a publish or a run costs one variable read: register an SDK before sending.
 *
 * @returns True when spans would be recorded.
 * @example
 * ```ts
 * import { tracingEnabled } from "./tracing.ts";
 * console.assert(typeof tracingEnabled() === "boolean");
 * ```
 */
export function tracingEnabled(): boolean {
  return enabled ??= !(trace.getTracerProvider() instanceof ProxyTracerProvider);
}

function tracer(): Tracer {
  return cachedTracer ??= trace.getTracer(SCOPE);
}

/**
 * The `messaging.system` of a broker URL: `rabbitmq` (amqp), `aws_sqs`, `redis`, `deno_kv`,
 * `memory`, else the scheme.
 *
 * @param brokerUrl The broker URL.
 * @returns The system name.
 * @example
 * ```ts
 * import { messagingSystem } from "./tracing.ts";
 * console.assert(messagingSystem("amqps://h") === "rabbitmq");
 * ```
 */
export function messagingSystem(brokerUrl: string): string {
  const scheme = brokerUrl.slice(0, Math.max(0, brokerUrl.indexOf(":"))).toLowerCase();
  if (scheme.startsWith("amqp")) return "rabbitmq";
  if (scheme === "sqs") return "aws_sqs";
  if (scheme.startsWith("redis")) return "redis";
  if (scheme === "kv") return "deno_kv";
  return scheme || "unknown";
}

const headerGetter = {
  keys: (carrier: Record<string, unknown>) => Object.keys(carrier),
  get: (carrier: Record<string, unknown>, key: string) => {
    const value = carrier[key];
    return typeof value === "string" ? value : undefined;
  },
};

const headerSetter = {
  set: (carrier: Record<string, unknown>, key: string, value: string) => {
    carrier[key] = value;
  },
};

/**
 * The context a message's `traceparent`/`tracestate` headers continue (the active context
 * when they carry none or tracing is off).
 *
 * @param headers Message headers (untrusted: a bad value is ignored).
 * @returns The context.
 */
export function contextFromHeaders(headers: Record<string, unknown>): Context {
  return propagation.extract(context.active(), headers, headerGetter);
}

/** What a publish is, for its span. */
export interface PublishInfo {
  /** The task name. */
  name: string;
  /** The task id (`messaging.message.id`). */
  id: string;
  /** The queue (`messaging.destination.name`). */
  queue: string;
  /** The broker URL (for `messaging.system`). */
  brokerUrl: string;
  /** The message's retries. */
  retries: number;
}

/** A PRODUCER span in progress; {@linkcode startPublishSpan} makes it. */
export interface PublishSpan {
  /** Records that the publish failed. */
  fail(error: unknown): void;
  /** Ends the span. */
  end(): void;
}

/**
 * Starts the PRODUCER span of one publish, a child of the active context (a task being run,
 * or the caller's own span), and writes its context into the message's headers
 * (`traceparent`, `tracestate`). Returns null, having done nothing, when tracing is off.
 *
 * @param info What is published.
 * @param message The message; its `headers` get the trace context.
 * @returns The span, or null.
 * @example
 * ```ts
 * import { startPublishSpan } from "./tracing.ts";
 * import { encodeTask } from "../protocol/message.ts";
 * const m = encodeTask({ id: "1", name: "t", args: [], kwargs: {} });
 * const span = startPublishSpan({ name: "t", id: "1", queue: "celery", brokerUrl: "memory://", retries: 0 }, m);
 * span?.end();
 * ```
 */
export function startPublishSpan(info: PublishInfo, message: Message): PublishSpan | null {
  if (!tracingEnabled()) return null;
  const attributes: Attributes = {
    "messaging.system": messagingSystem(info.brokerUrl),
    "messaging.operation.type": "send",
    "messaging.operation.name": "apply_async",
    "messaging.destination.name": info.queue,
    "messaging.message.id": info.id,
    "celery.action": "apply_async",
    "celery.task_name": info.name,
    "celery.retries": info.retries,
  };
  const span = tracer().startSpan(`apply_async/${info.name}`, {
    kind: SpanKind.PRODUCER,
    attributes,
  });
  propagation.inject(trace.setSpan(context.active(), span), message.headers, headerSetter);
  return {
    fail: (error) => recordError(span, error),
    end: () => span.end(),
  };
}

/** What an execution is, for its span. */
export interface RunInfo {
  /** The task name. */
  name: string;
  /** The task id. */
  id: string;
  /** The queue it came from. */
  queue: string;
  /** The broker URL. */
  brokerUrl: string;
  /** Its retries so far. */
  retries: number;
  /** Its message headers (the parent's `traceparent` is read from them). */
  headers: Record<string, unknown>;
  /** The worker's node name. */
  hostname: string;
}

/** A CONSUMER span in progress; {@linkcode startRunSpan} makes it. */
export interface RunSpan {
  /**
   * The headers to hand to the pool: the message's, with this span's `traceparent` and
   * `tracestate`, so that what the task sends (in a Web Worker too) is this span's child.
   */
  carrier(headers: Record<string, unknown>): Record<string, unknown>;
  /** Runs `fn` with this span active (so follow-ups it sends are children). */
  within<T>(fn: () => Promise<T>): Promise<T>;
  /** Records that the task failed. */
  fail(error: { name: string; message: string; stack?: string | null }): void;
  /** Ends the span with the task's final state. */
  end(state: string | undefined): void;
}

/**
 * Starts the CONSUMER span of one execution, continuing the trace in the message's headers.
 * Returns null, having done nothing, when tracing is off.
 *
 * @param info The execution.
 * @returns The span, or null.
 */
export function startRunSpan(info: RunInfo): RunSpan | null {
  if (!tracingEnabled()) return null;
  const parent = contextFromHeaders(info.headers);
  const span = tracer().startSpan(`run/${info.name}`, {
    kind: SpanKind.CONSUMER,
    attributes: {
      "messaging.system": messagingSystem(info.brokerUrl),
      "messaging.operation.type": "process",
      "messaging.operation.name": "run",
      "messaging.destination.name": info.queue,
      "messaging.message.id": info.id,
      "celery.action": "run",
      "celery.task_name": info.name,
      "celery.retries": info.retries,
      "celery.hostname": info.hostname,
    },
  }, parent);
  const active = trace.setSpan(parent, span);
  return {
    carrier(headers) {
      const out: Record<string, unknown> = { ...headers };
      delete out.traceparent;
      delete out.tracestate;
      propagation.inject(active, out, headerSetter);
      return out;
    },
    within: (fn) => context.with(active, fn),
    fail(error) {
      span.recordException({
        name: error.name,
        message: error.message,
        ...(error.stack ? { stack: error.stack } : {}),
      });
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${error.name}: ${error.message}` });
    },
    end(state) {
      if (state) span.setAttribute("celery.state", state);
      span.end();
    },
  };
}

/**
 * Runs a task function in the context its headers carry, when tracing is on and no span is
 * active already (in a Web Worker: the CONSUMER span of the parent isolate continues here,
 * through the `traceparent` the pool was handed).
 *
 * @param headers The run's headers.
 * @param fn The task call.
 * @returns What `fn` returns.
 */
export function withHeadersContext<T>(headers: Record<string, unknown>, fn: () => T): T {
  if (!tracingEnabled() || trace.getActiveSpan() || typeof headers.traceparent !== "string") {
    return fn();
  }
  return context.with(contextFromHeaders(headers), fn);
}

function recordError(span: Span, error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error));
  span.recordException(e);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
}
