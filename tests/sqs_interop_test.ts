// End to end over SQS between celeriac and Python Celery 5.2 (Debian's python3-celery,
// python3-boto3, python3-pycurl): both sides on one local emulator. Debian's botocore 1.29 and
// kombu 5.2's pycurl client speak SQS's query protocol, which fauxqs does not, so these tests
// run on npm's local-aws-sqs (JSON and query protocols); see tests/_sqs_emulator_main.ts.
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import { decodeSqsBody } from "../lib/brokers/_sqs_format.ts";
import { SqsClient } from "../lib/brokers/_sqs_client.ts";
import { decodeTask } from "../lib/protocol/message.ts";
import { Consumer } from "../lib/worker/consumer.ts";
import { REDIS_BACKEND } from "./_redis_helpers.ts";
import { emulatorUrl, sqsEmulator, TEST_KEY, TEST_SECRET, uniqueQueue } from "./_sqs_emulator.ts";

const emu = await sqsEmulator("local-aws-sqs");
const BROKER = emulatorUrl(emu);
const SCRIPT = new URL("./python/sqs_app.py", import.meta.url).pathname;
// The emulator answers a long poll when the wait ends or 10 messages arrive: keep waits short.
const TRANSPORT = { wait_time_seconds: 1, visibility_timeout: 60 };

function pyEnv(prefix: string): Record<string, string> {
  return {
    CELERIAC_SQS_BROKER: BROKER,
    CELERIAC_TEST_BACKEND: REDIS_BACKEND,
    CELERIAC_SQS_PREFIX: prefix,
  };
}

function pySend(prefix: string, ...args: string[]): Promise<Record<string, unknown>> {
  return pyRun(prefix, "send", ...args);
}

async function pyRun(prefix: string, ...args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [SCRIPT, ...args],
    env: pyEnv(prefix),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`python ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

Deno.test("sqs interop: kombu's SQS message (sent by Python Celery) decodes in celeriac", async () => {
  const prefix = `py${crypto.randomUUID().slice(0, 8)}-`;
  const queue = uniqueQueue("raw");
  // Sent by Python and left on the queue (nobody consumes it; the send times out harmlessly).
  const sender = new Deno.Command("/usr/bin/python3", {
    args: [SCRIPT, "send", queue, "interop.add", "[2, 3]", '{"z": "é"}'],
    env: pyEnv(prefix),
    stdout: "null",
    stderr: "null",
  }).spawn();
  const raw = new SqsClient({
    endpoint: emu.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: TEST_KEY, secretAccessKey: TEST_SECRET },
  });
  try {
    let url = "";
    for (let i = 0; i < 100 && !url; i++) {
      url = await raw.getQueueUrl(`${prefix}${queue}`).catch(() => "");
      if (!url) await new Promise((r) => setTimeout(r, 100));
    }
    let body = "";
    for (let i = 0; i < 20 && !body; i++) {
      const [m] = await raw.receiveMessage(url, 1, 1);
      body = m?.Body ?? "";
    }
    const req = decodeTask(decodeSqsBody(body));
    assert.equal(req.name, "interop.add");
    assert.deepEqual(req.args, [2, 3]);
    assert.deepEqual(req.kwargs, { z: "é" });
    // kombu's routing key is the queue name without the prefix.
    assert.equal(JSON.parse(atob(body)).properties.delivery_info.routing_key, queue);
  } finally {
    sender.kill("SIGKILL");
    await sender.status;
  }
});

Deno.test("sqs interop: a Python client calls a celeriac task (kwargs, countdown) and reads its result", async () => {
  const prefix = `py${crypto.randomUUID().slice(0, 8)}-`;
  const queue = uniqueQueue("ts");
  const app = new App({
    broker: BROKER,
    backend: REDIS_BACKEND,
    transportOptions: { ...TRANSPORT, queue_name_prefix: prefix, max_delay_seconds: 1 },
  });
  const runs: string[] = [];
  app.task("interop.add", (x: number, y: number) => {
    runs.push(`${x}+${y}`);
    return { sum: x + y, lang: "ts" };
  });
  const stop = new AbortController();
  const worker = new Consumer(app, { pool: "inline", queues: [queue], signal: stop.signal });
  const running = worker.run();
  try {
    const add = await pySend(prefix, queue, "interop.add", "[2]", '{"y": 40}');
    assert.deepEqual(add.result, { sum: 42, lang: "ts" });
    assert.equal(add.state, "SUCCESS");
    // A countdown past the (scaled-down, 1 s) delay limit: held by the broker, run once.
    const started = Date.now();
    const later = await pySend(prefix, queue, "interop.add", "[1, 1]", "{}", "2.5");
    assert.deepEqual(later.result, { sum: 2, lang: "ts" });
    assert.ok(Date.now() - started >= 2400, "ran before its countdown");
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(runs, ["2+40", "1+1"]);
  } finally {
    stop.abort();
    await running;
    await app.close();
  }
});

Deno.test("sqs interop: celeriac calls a task run by a Python celery worker and reads its result", async () => {
  const prefix = `py${crypto.randomUUID().slice(0, 8)}-`;
  const queue = uniqueQueue("py");
  const child = new Deno.Command("/usr/bin/python3", {
    args: [SCRIPT, "worker", queue],
    env: pyEnv(prefix),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const app = new App({
    broker: BROKER,
    backend: REDIS_BACKEND,
    transportOptions: { ...TRANSPORT, queue_name_prefix: prefix },
  });
  try {
    const result = await app.sendTask("py.mul", [6], { y: 7, note: "from ts" }, { queue });
    const value = await result.get({ timeout: 60_000 });
    assert.deepEqual(value, { product: 42, extra: { note: "from ts" }, lang: "py" });
  } finally {
    await app.close();
    child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel().catch(() => {});
  }
});

Deno.test("sqs interop: a Python client's tasks on a FIFO queue run in celeriac in order", async () => {
  const prefix = `py${crypto.randomUUID().slice(0, 8)}-`;
  const queue = `${uniqueQueue("fifo")}.fifo`;
  const app = new App({
    broker: BROKER,
    backend: REDIS_BACKEND,
    transportOptions: { ...TRANSPORT, queue_name_prefix: prefix },
  });
  const seen: number[] = [];
  app.task("interop.order", (n: number) => {
    seen.push(n);
    return n;
  });
  const stop = new AbortController();
  const worker = new Consumer(app, {
    pool: "inline",
    queues: [queue],
    concurrency: 1,
    signal: stop.signal,
  });
  const running = worker.run();
  try {
    const out = await pyRun(prefix, "sendmany", queue, "interop.order", "[[1], [2], [3], [4]]");
    assert.deepEqual(out.results, [1, 2, 3, 4]);
    assert.deepEqual(seen, [1, 2, 3, 4]);
    const raw = new SqsClient({
      endpoint: emu.endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: TEST_KEY, secretAccessKey: TEST_SECRET },
    });
    const url = await raw.getQueueUrl(`${prefix}${queue}`);
    const attrs = await raw.getQueueAttributes(url, ["FifoQueue"]);
    assert.equal(attrs.FifoQueue, "true");
  } finally {
    stop.abort();
    await running;
    await app.close();
  }
});
