// The observability building blocks in one process: log formats, the Prometheus renderer and
// parser, the metrics kept from App signals, and tracing staying off without a provider.
import assert from "node:assert/strict";
import { App, Consumer } from "@celeriac/celeriac";
import { createLogger, parseLogLevel } from "../lib/observe/logger.ts";
import { parsePrometheus, renderPrometheus } from "../lib/observe/prometheus.ts";
import { formatRuntime, logTaskLines } from "../lib/observe/task_log.ts";
import { WorkerMetrics } from "../lib/observe/metrics.ts";
import { startPublishSpan, startRunSpan, tracingEnabled } from "../lib/observe/tracing.ts";
import { encodeTask } from "../lib/protocol/message.ts";

const NOW = () => new Date(0);

Deno.test("text lines keep the traceback on indented lines that cannot forge a log line", () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), now: NOW });
  log.error("Task t[1] raised TypeError: boom\n[1970] INFO forged", {
    task_id: "1",
    traceback:
      "TypeError: boom\n    at f (a.ts:1:1)\n[1970-01-01T00:00:00.000Z] INFO forged\x1b[2J",
  });
  const out = lines.join("\n").split("\n");
  assert.deepEqual(out, [
    "[1970-01-01T00:00:00.000Z] ERROR Task t[1] raised TypeError: boom\\n[1970] INFO forged",
    "  TypeError: boom",
    "      at f (a.ts:1:1)",
    "  [1970-01-01T00:00:00.000Z] INFO forged\\x1b[2J",
  ]);
});

Deno.test("json lines are valid JSON whatever the message carries", () => {
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), format: "json", now: NOW });
  log.node = "w@h";
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  log.warn("a\u2028b\u009bc\u202ed\n", { big: 10n ** 20n, cyclic, task_id: "7" });
  assert.equal(lines.length, 1);
  assert(!/[\u2028\u009b\u202e\n]/.test(lines[0]!), lines[0]!);
  const record = JSON.parse(lines[0]!);
  assert.equal(record.message, "a\u2028b\u009bc\u202ed\n");
  assert.equal(record.level, "WARN");
  assert.equal(record.node, "w@h");
  assert.equal(record.task_id, "7");
  assert.equal(record.time, "1970-01-01T00:00:00.000Z");
  assert.equal(record.cyclic.self, "[Circular]");
  assert(lines[0]!.includes('"big":100000000000000000000'));
});

Deno.test("levels: warning is warn, lower lines are dropped, an unknown name is refused", () => {
  assert.equal(parseLogLevel("WARNING"), "warn");
  assert.equal(parseLogLevel("critical"), "error");
  assert.throws(() => parseLogLevel("loud"), RangeError);
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l), level: "warn" });
  log.info("no");
  log.debug("no");
  log.warn("yes");
  assert.equal(lines.length, 1);
  assert(!log.enabled("info") && log.enabled("error"));
});

Deno.test("a logger whose writer throws does not throw", () => {
  const log = createLogger({
    write: () => {
      throw new Error("disk full");
    },
  });
  log.error("still fine");
});

Deno.test("the Prometheus renderer escapes labels and the parser reads them back", () => {
  const text = renderPrometheus([
    {
      name: "x_total",
      help: "Things\nhappening",
      type: "counter",
      samples: [{ labels: { task: 'a"b\\c\nd', worker: "w" }, value: 3 }],
    },
    {
      name: "x_seconds",
      help: "Durations",
      type: "histogram",
      buckets: [0.1, 1],
      series: [{ labels: { task: "t" }, counts: [1, 2, 3], sum: 7.5 }],
    },
  ]);
  assert(text.includes("# HELP x_total Things\\nhappening"));
  const samples = parsePrometheus(text);
  assert.deepEqual(samples[0], {
    name: "x_total",
    labels: { task: 'a"b\\c\nd', worker: "w" },
    value: 3,
  });
  const buckets = samples.filter((s) => s.name === "x_seconds_bucket").map((s) => s.value);
  assert.deepEqual(buckets, [1, 3, 6]);
  assert.equal(samples.find((s) => s.name === "x_seconds_count")?.value, 6);
  assert.equal(samples.find((s) => s.name === "x_seconds_sum")?.value, 7.5);
});

Deno.test("runtimes read like Celery's", () => {
  assert.equal(formatRuntime(0.0012345), "0.0012");
  assert.equal(formatRuntime(0.25), "0.25");
  assert.equal(formatRuntime(12.3456), "12.346");
});

Deno.test("worker metrics count a memory worker's tasks by final state", async () => {
  await using app = new App({ broker: "memory://obs-unit", backend: "memory://obs-unit" });
  app.task("u.add", (x: number, y: number) => x + y);
  app.task("u.fail", () => {
    throw new RangeError("no");
  });
  const lines: string[] = [];
  const log = (m: string) => lines.push(m);
  const stop = logTaskLines(app, { logger: { debug: log, info: log, warn: log, error: log } });
  const consumer = new Consumer(app, { pool: "inline", concurrency: 4 });
  const metrics = new WorkerMetrics(consumer, { broker: await app.getBroker(), otel: false });
  const running = consumer.run();
  try {
    const ok = await Promise.all([1, 2, 3].map((i) => app.sendTask("u.add", [i, i])));
    const bad = await app.sendTask("u.fail");
    for (const r of ok) await r.get({ timeout: 5000 });
    await bad.get({ timeout: 5000, propagate: false });
    const until = Date.now() + 5000;
    while (metrics.taskCounts()["u.fail"]?.FAILURE !== 1 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(metrics.taskCounts(), { "u.add": { SUCCESS: 3 }, "u.fail": { FAILURE: 1 } });
    const samples = parsePrometheus(await metrics.prometheus());
    const runtimeCount = samples.find((s) =>
      s.name === "flower_task_runtime_seconds_count" && s.labels.task === "u.fail"
    );
    assert.equal(runtimeCount?.value, 1);
    assert.equal(
      samples.find((s) => s.name === "celeriac_queue_messages" && s.labels.state === "waiting")
        ?.value,
      0,
    );
    assert.equal(lines.filter((l) => / received$/.test(l)).length, 4);
    assert.equal(
      lines.filter((l) => /^Task u\.add\[.*\] succeeded in .*s: [246]$/.test(l)).length,
      3,
    );
  } finally {
    stop();
    metrics.close();
    await consumer.close();
    await running;
  }
});

Deno.test({
  name: "with no tracer provider nothing is traced and the headers are left alone",
  ignore: tracingEnabled(),
}, () => {
  assert.equal(tracingEnabled(), false);
  const message = encodeTask({ id: "1", name: "t", args: [], kwargs: {} });
  const before = JSON.stringify(message.headers);
  assert.equal(
    startPublishSpan(
      { name: "t", id: "1", queue: "q", brokerUrl: "memory://", retries: 0 },
      message,
    ),
    null,
  );
  assert.equal(JSON.stringify(message.headers), before);
  assert.equal(
    startRunSpan({
      name: "t",
      id: "1",
      queue: "q",
      brokerUrl: "memory://",
      retries: 0,
      headers: {},
      hostname: "h",
    }),
    null,
  );
});
