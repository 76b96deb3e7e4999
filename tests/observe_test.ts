// Observability end to end, in real processes on Redis: OpenTelemetry traces exported by
// Deno's built-in OTel (OTEL_DENO=true) to an OTLP/HTTP JSON receiver started here, a Python
// client's traceparent continued, the worker's Prometheus endpoint, and the log lines.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { parsePrometheus } from "../lib/observe/prometheus.ts";
import { deleteByPrefix, REDIS, REDIS_BACKEND } from "./_redis_helpers.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const APP = new URL("./apps/observe_app.ts", import.meta.url).pathname;
const PRODUCER = new URL("./observe_procs/producer.ts", import.meta.url).pathname;
const PY_SEND = new URL("./python/otel_send.py", import.meta.url).pathname;
const PY_PRODUCER = new URL("./observe_procs/py_producer.ts", import.meta.url).pathname;

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
  events?: { name: string }[];
  service: string;
}

const SPAN_KIND_PRODUCER = 4;
const SPAN_KIND_CONSUMER = 5;

// A tiny OTLP/HTTP JSON receiver: keeps every span with its resource's service.name.
function otlpReceiver() {
  const spans: OtlpSpan[] = [];
  const points: { name: string; attributes: Record<string, unknown>; value: number }[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const body = await req.text();
    if (new URL(req.url).pathname === "/v1/traces") {
      const data = JSON.parse(body) as {
        resourceSpans?: {
          resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
          scopeSpans?: { spans?: Omit<OtlpSpan, "service">[] }[];
        }[];
      };
      for (const rs of data.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value
          .stringValue ?? "";
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) spans.push({ ...s, service });
        }
      }
    }
    if (new URL(req.url).pathname === "/v1/metrics") {
      type Point = {
        attributes?: { key: string; value: Record<string, unknown> }[];
        asInt?: string | number;
        asDouble?: number;
        count?: string | number;
      };
      const data = JSON.parse(body) as {
        resourceMetrics?: {
          scopeMetrics?: {
            metrics?: {
              name: string;
              sum?: { dataPoints?: Point[] };
              histogram?: { dataPoints?: Point[] };
              gauge?: { dataPoints?: Point[] };
            }[];
          }[];
        }[];
      };
      for (const rm of data.resourceMetrics ?? []) {
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            const dps = m.sum?.dataPoints ?? m.histogram?.dataPoints ?? m.gauge?.dataPoints ?? [];
            for (const p of dps) {
              const attributes = Object.fromEntries(
                (p.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
              );
              const value = Number(p.asInt ?? p.asDouble ?? p.count ?? NaN);
              points.push({ name: m.name, attributes, value });
            }
          }
        }
      }
    }
    return Response.json({});
  });
  const port = (server.addr as Deno.NetAddr).port;
  return {
    spans,
    points,
    endpoint: `http://127.0.0.1:${port}`,
    close: () => server.shutdown(),
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v?.stringValue ?? v?.intValue ?? v?.doubleValue ?? v?.boolValue;
};

function spawn(args: string[], env: Record<string, string>, stdout: "piped" | "null" = "null") {
  const child = new Deno.Command(args[0]!, {
    args: args.slice(1),
    env: { NO_COLOR: "1", ...env },
    stdout,
    stderr: "piped",
  }).spawn();
  let log = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stderr) log += decoder.decode(chunk, { stream: true });
  })();
  let stopped: Promise<Deno.CommandStatus> | undefined;
  return {
    child,
    log: () => log,
    stop: () =>
      stopped ??= (async () => {
        try {
          child.kill("SIGTERM");
        } catch {
          // Already exited.
        }
        const status = await child.status;
        await reading;
        return status;
      })(),
  };
}

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function setup(name: string) {
  const id = crypto.randomUUID().slice(0, 8);
  const prefix = `obs-${name}-${id}:`;
  const queue = `obs-${name}-${id}`;
  const env = {
    CELERIAC_BROKER_URL: REDIS,
    CELERIAC_RESULT_BACKEND: REDIS_BACKEND,
    CELERIAC_TEST_PREFIX: prefix,
    CELERIAC_TEST_QUEUE: queue,
  };
  const app = () =>
    new App({
      broker: REDIS,
      backend: REDIS_BACKEND,
      transportOptions: { global_keyprefix: prefix },
      defaultQueue: queue,
    });
  const cleanup = async () => {
    await deleteByPrefix(prefix, REDIS);
  };
  return { prefix, queue, env, app, cleanup };
}

function otelEnv(endpoint: string, service: string): Record<string, string> {
  return {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_SERVICE_NAME: service,
    OTEL_BSP_SCHEDULE_DELAY: "200",
    OTEL_METRIC_EXPORT_INTERVAL: "500",
  };
}

function worker(
  t: ReturnType<typeof setup>,
  extra: string[],
  env: Record<string, string> = {},
) {
  return spawn(
    [Deno.execPath(), "run", "-A", CLI, "worker", "--app", APP, "-Q", t.queue, ...extra],
    { ...t.env, ...env },
  );
}

async function waitReady(w: ReturnType<typeof worker>, ms = 20_000) {
  await waitFor("the worker to be ready", () => /ready/.test(w.log()) || undefined, ms);
}

for (const pool of ["workers", "inline"] as const) {
  Deno.test(`a chain in two processes is one trace: publish -> run -> publish -> run (${pool} pool)`, async () => {
    const t = setup(`chain-${pool}`);
    const otlp = otlpReceiver();
    const w = worker(
      t,
      ["--pool", pool, "-c", "2", "-l", "debug"],
      otelEnv(otlp.endpoint, "worker"),
    );
    try {
      await waitReady(w);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", PRODUCER],
        env: { ...t.env, ...otelEnv(otlp.endpoint, "producer") },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(out.success, `producer failed: ${new TextDecoder().decode(out.stderr)}`);
      const sent = JSON.parse(new TextDecoder().decode(out.stdout).trim()) as {
        last: string;
        chainValue: number;
        nested: string;
        nestedChild: string;
        flaky: string;
        flakyValue: number;
      };
      assert.equal(sent.chainValue, 8);
      await w.stop();
      const spans = otlp.spans;
      // Producer: apply_async of the first chain step (a root span).
      const byName = (name: string, service: string) =>
        spans.filter((s) => s.name === name && s.service === service);
      const pub1 = await waitFor(
        "the producer's first publish",
        () => byName("apply_async/obs.add", "producer").find((s) => !s.parentSpanId),
      );
      const run1 = spans.find((s) =>
        s.name === "run/obs.add" && s.service === "worker" && s.parentSpanId === pub1.spanId
      );
      assert(run1, `no run span under ${pub1.spanId}: ${JSON.stringify(spans.map(brief))}`);
      assert.equal(run1.traceId, pub1.traceId);
      assert.equal(run1.kind, SPAN_KIND_CONSUMER);
      assert.equal(pub1.kind, SPAN_KIND_PRODUCER);
      assert.equal(attr(run1, "celery.state"), "SUCCESS");
      assert.equal(attr(run1, "messaging.destination.name"), t.queue);
      const pub2 = spans.find((s) =>
        s.name === "apply_async/obs.add" && s.service === "worker" &&
        s.parentSpanId === run1.spanId
      );
      assert(pub2, "the chain's second publish is not a child of the first run");
      const run2 = spans.find((s) => s.name === "run/obs.add" && s.parentSpanId === pub2.spanId);
      assert(run2, "the second run is not a child of the second publish");
      assert.equal(run2.traceId, pub1.traceId);
      assert.equal(attr(run2, "messaging.message.id"), sent.last);
      // A task that sends from inside (a Web Worker with the workers pool): its publish is a
      // child of its run.
      const nestedRun = spans.find((s) =>
        s.name === "run/obs.nested" && attr(s, "messaging.message.id") === sent.nested
      );
      assert(nestedRun, "no run span of obs.nested");
      const nestedPub = spans.find((s) =>
        s.name === "apply_async/obs.add" && attr(s, "messaging.message.id") === sent.nestedChild
      );
      assert(nestedPub, "no publish span of the nested send");
      assert.equal(nestedPub.parentSpanId, nestedRun.spanId);
      assert.equal(nestedPub.traceId, nestedRun.traceId);
      // A retry is published from the run that asked for it, and runs under that publish.
      assert.equal(sent.flakyValue, 1);
      const flakyRuns = spans.filter((s) =>
        s.name === "run/obs.flaky" && attr(s, "messaging.message.id") === sent.flaky
      );
      const first = flakyRuns.find((s) => Number(attr(s, "celery.retries")) === 0);
      assert(first, JSON.stringify(flakyRuns));
      assert.equal(attr(first, "celery.state"), "RETRY");
      const retryPub = spans.find((s) =>
        s.name === "apply_async/obs.flaky" && s.parentSpanId === first.spanId
      );
      assert(retryPub, "the retry's publish is not a child of the first run");
      const second = flakyRuns.find((s) => s.parentSpanId === retryPub.spanId);
      assert(second, "the retried run is not a child of the retry's publish");
      assert.equal(attr(second, "celery.state"), "SUCCESS");
      // OpenTelemetry metrics: the task counter (cumulative) reached 3 obs.add successes.
      await waitFor("the task counter", () => {
        const adds = otlp.points.filter((p) =>
          p.name === "celeriac.tasks" && p.attributes["celery.task_name"] === "obs.add" &&
          p.attributes["celery.state"] === "SUCCESS"
        );
        return adds.some((p) => p.value === 3) || undefined;
      }, 5000).catch(() => {
        throw new Error(`no celeriac.tasks = 3: ${JSON.stringify(otlp.points)}`);
      });
      assert(otlp.points.some((p) => p.name === "celeriac.task.runtime"));
      assert(otlp.points.some((p) => p.name === "celeriac.task.queue_wait"));
    } finally {
      await w.stop();
      await otlp.close();
      await t.cleanup();
    }
  });
}

function brief(s: OtlpSpan) {
  return { n: s.name, svc: s.service, id: s.spanId, p: s.parentSpanId, t: s.traceId };
}

Deno.test("a Python client's traceparent header is continued by celeriac", async () => {
  const t = setup("py");
  const otlp = otlpReceiver();
  const w = worker(t, ["--pool", "inline"], otelEnv(otlp.endpoint, "worker"));
  try {
    await waitReady(w);
    const traceId = crypto.randomUUID().replaceAll("-", "");
    const parentId = traceId.slice(0, 16);
    const taskId = crypto.randomUUID();
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [PY_SEND, REDIS, t.prefix, t.queue, taskId, `00-${traceId}-${parentId}-01`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    await using app = t.app();
    assert.equal(await app.asyncResult(taskId).get({ timeout: 20_000 }), 5);
    await w.stop();
    const run = await waitFor(
      "the run span",
      () =>
        otlp.spans.find((s) =>
          s.name === "run/obs.add" && attr(s, "messaging.message.id") === taskId
        ),
    );
    assert.equal(run.traceId, traceId);
    assert.equal(run.parentSpanId, parentId);
    assert.equal(attr(run, "messaging.system"), "redis");
  } finally {
    await w.stop();
    await otlp.close();
    await t.cleanup();
  }
});

Deno.test("celeriac's traceparent reaches a Python worker where its OTel instrumentation reads it", async () => {
  const t = setup("topy");
  const otlp = otlpReceiver();
  const py = spawn([
    "/usr/bin/python3",
    "-m",
    "celery",
    "-A",
    "otel_tasks",
    "--workdir",
    new URL("./python/", import.meta.url).pathname,
    "worker",
    "-Q",
    t.queue,
    "-P",
    "solo",
    "-c",
    "1",
    "--without-heartbeat",
    "--without-gossip",
    "--without-mingle",
    "-n",
    `py-${t.queue}@%h`,
    "--loglevel",
    "INFO",
  ], {
    CELERIAC_TEST_BROKER: REDIS,
    CELERIAC_TEST_BACKEND: REDIS_BACKEND,
    CELERIAC_TEST_PREFIX: t.prefix,
  });
  try {
    await waitFor("the Python worker", () => /ready/.test(py.log()) || undefined, 30_000);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", PY_PRODUCER],
      env: { ...t.env, ...otelEnv(otlp.endpoint, "producer"), CELERIAC_TEST_PY_QUEUE: t.queue },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, `producer failed: ${new TextDecoder().decode(out.stderr)}`);
    const sent = JSON.parse(new TextDecoder().decode(out.stdout).trim()) as {
      id: string;
      seen: { traceparent: string | null };
    };
    const pub = await waitFor(
      "the publish span",
      () =>
        otlp.spans.find((s) =>
          s.name === "apply_async/py.trace_context" && attr(s, "messaging.message.id") === sent.id
        ),
    );
    assert.equal(sent.seen.traceparent, `00-${pub.traceId}-${pub.spanId}-01`);
  } finally {
    await py.stop();
    await otlp.close();
    await t.cleanup();
  }
});

Deno.test("the Prometheus endpoint counts 100 tasks after they ran", async () => {
  const t = setup("prom");
  const w = worker(t, ["--pool", "inline", "--metrics-port", "0"]);
  try {
    await waitReady(w);
    const url = await waitFor(
      "the metrics url",
      () => /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(w.log())?.[1],
    );
    await using app = t.app();
    const ok = await Promise.all(
      Array.from({ length: 100 }, (_, i) => app.sendTask("obs.add", [i, 1])),
    );
    const bad = await Promise.all(Array.from({ length: 3 }, () => app.sendTask("obs.boom")));
    for (const r of ok) await r.get({ timeout: 20_000 });
    for (const r of bad) await r.get({ timeout: 20_000, propagate: false });
    // The result is stored before the request's last signal: wait for the counts to settle.
    const value = (
      samples: ReturnType<typeof parsePrometheus>,
      name: string,
      labels: Record<string, string>,
    ) =>
      samples.filter((s) =>
        s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      ).reduce((sum, s) => sum + s.value, 0);
    let samples: ReturnType<typeof parsePrometheus> = [];
    await waitFor("the counts", async () => {
      samples = parsePrometheus(await (await fetch(url)).text());
      return value(samples, "celeriac_tasks_total", { task: "obs.boom", state: "FAILURE" }) === 3
        ? true
        : undefined;
    }).catch(() => {});
    samples = parsePrometheus(await (await fetch(url)).text());
    assert.equal(
      value(samples, "celeriac_tasks_total", { task: "obs.add", state: "SUCCESS" }),
      100,
    );
    assert.equal(value(samples, "celeriac_tasks_total", { task: "obs.boom", state: "FAILURE" }), 3);
    assert.equal(
      value(samples, "flower_events_total", { type: "task-received", task: "obs.add" }),
      100,
    );
    assert.equal(
      value(samples, "flower_events_total", { type: "task-succeeded", task: "obs.add" }),
      100,
    );
    assert.equal(
      value(samples, "flower_events_total", { type: "task-failed", task: "obs.boom" }),
      3,
    );
    assert.equal(value(samples, "flower_task_runtime_seconds_count", { task: "obs.add" }), 100);
    assert.equal(
      value(samples, "flower_task_runtime_seconds_bucket", { task: "obs.add", le: "+Inf" }),
      100,
    );
    assert.equal(
      value(samples, "celeriac_task_queue_wait_seconds_count", { task: "obs.add" }),
      100,
    );
    assert.equal(value(samples, "flower_worker_online", {}), 1);
    assert.equal(value(samples, "flower_worker_number_of_currently_executing_tasks", {}), 0);
    assert.equal(value(samples, "celeriac_worker_tasks", { state: "prefetched" }), 0);
    // Queue depth: the queue is drained.
    assert.equal(
      value(samples, "celeriac_queue_messages", { queue: t.queue, state: "waiting" }),
      0,
    );
    assert(samples.some((s) => s.name === "celeriac_queue_messages" && s.labels.queue === t.queue));
  } finally {
    await w.stop();
    await t.cleanup();
  }
});

async function runTasks(t: ReturnType<typeof setup>) {
  await using app = t.app();
  const ok = await app.sendTask("obs.add", [2, 2]);
  const bad = await app.sendTask("obs.boom");
  assert.equal(await ok.get({ timeout: 20_000 }), 4);
  await bad.get({ timeout: 20_000, propagate: false });
  return { ok: ok.id, bad: bad.id };
}

Deno.test("the worker logs Celery's task lines, the traceback on lines of its own", async () => {
  const t = setup("log");
  const w = worker(t, ["--pool", "inline"]);
  try {
    await waitReady(w);
    const ids = await runTasks(t);
    await waitFor("the failure line", () => w.log().includes("raised TypeError") || undefined);
    await w.stop();
    const log = w.log();
    assert(log.includes(`INFO Task obs.add[${ids.ok}] received`), log);
    assert(
      new RegExp(`INFO Task obs\\.add\\[${ids.ok}\\] succeeded in \\d+(\\.\\d+)?(e-\\d+)?s: 4\\n`)
        .test(log),
      log,
    );
    const lines = log.split("\n");
    const i = lines.findIndex((l) =>
      l.includes(`ERROR Task obs.boom[${ids.bad}] raised TypeError: boom`)
    );
    assert(i >= 0, log);
    // The traceback follows, indented, on its own lines, in Python's layout (frames, then
    // `Type: message` last).
    assert.equal(lines[i + 1], "  Traceback (most recent call last):");
    const end = lines.findIndex((l, j) => j > i && l === "  TypeError: boom");
    assert(end > i + 2, log);
    assert(lines.slice(i + 2, end).every((l) => l.startsWith("    ")), log);
  } finally {
    await w.stop();
    await t.cleanup();
  }
});

Deno.test("--log-format json writes one object per line with level, time, message, task and node", async () => {
  const t = setup("json");
  const w = worker(t, ["--pool", "inline", "--log-format", "json", "-n", "obs-json@test"]);
  try {
    await waitReady(w);
    const ids = await runTasks(t);
    await waitFor("the failure line", () => w.log().includes("raised TypeError") || undefined);
    await w.stop();
    const records = w.log().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const received = records.find((r) => r.message === `Task obs.add[${ids.ok}] received`);
    assert(received, w.log());
    assert.equal(received.level, "INFO");
    assert.equal(received.task_id, ids.ok);
    assert.equal(received.task_name, "obs.add");
    assert.equal(received.node, "obs-json@test");
    assert(!Number.isNaN(Date.parse(received.time)));
    const failed = records.find((r) => r.task_id === ids.bad && r.level === "ERROR");
    assert(failed, w.log());
    assert.equal(failed.message, `Task obs.boom[${ids.bad}] raised TypeError: boom`);
    assert(String(failed.traceback).startsWith("Traceback (most recent call last):\n"));
    assert(String(failed.traceback).trimEnd().endsWith("TypeError: boom"));
  } finally {
    await w.stop();
    await t.cleanup();
  }
});

Deno.test("-l warning prints nothing when tasks succeed; --logfile writes to the file", async () => {
  const t = setup("quiet");
  const file = await Deno.makeTempFile({ suffix: ".log" });
  const w = worker(t, ["--pool", "inline", "-l", "warning"]);
  const f = worker(t, ["--pool", "inline", "--logfile", file, "-Q", `${t.queue}-file`]);
  try {
    await waitFor(
      "the file worker",
      async () => (await Deno.readTextFile(file)).includes("ready") || undefined,
    )
      .catch(() => {});
    await using app = t.app();
    // Both workers are up once each has run one task.
    const r1 = await app.sendTask("obs.add", [1, 1]);
    const r2 = await app.sendTask("obs.add", [3, 3], {}, { queue: `${t.queue}-file` });
    assert.equal(await r1.get({ timeout: 20_000 }), 2);
    assert.equal(await r2.get({ timeout: 20_000 }), 6);
    await w.stop();
    await f.stop();
    assert.equal(w.log(), "");
    const text = await Deno.readTextFile(file);
    assert(text.includes(`Task obs.add[${r2.id}] succeeded in`), text);
    assert.equal(f.log(), "");
  } finally {
    await w.stop();
    await f.stop();
    await Deno.remove(file).catch(() => {});
    await t.cleanup();
  }
});

Deno.test("beat logs each due task it sends", async () => {
  const t = setup("beat");
  const beat = spawn(
    [Deno.execPath(), "run", "-A", CLI, "beat", "--app", APP],
    { ...t.env, CELERIAC_TEST_BEAT: "1" },
  );
  try {
    await waitFor(
      "a beat line",
      () => /INFO Scheduler: Sending due task obs-tick \(obs\.add\)/.test(beat.log()) || undefined,
    );
  } finally {
    await beat.stop();
    await t.cleanup();
  }
});
