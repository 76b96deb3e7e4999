import assert from "node:assert/strict";
import { RpcBackend, RpcNotSupportedError } from "../lib/backends/rpc.ts";
import { MemoryBackend } from "../lib/backends/memory.ts";
import { AmqpBroker } from "../lib/brokers/amqp.ts";
import { createBackend } from "../lib/transport/registry.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { backendSuite, meta } from "./_backend_suite.ts";
import { AMQP_URL, cleanup, taskQueueNames } from "./_amqp_helpers.ts";

// Groups and chords need state shared between processes, which rpc:// does not have (Celery
// raises NotImplementedError for them too); they are tested below as clear errors instead.
backendSuite("rpc backend", () => {
  const broker = new AmqpBroker(AMQP_URL);
  const backend = new RpcBackend("rpc://", { broker });
  const wrapped = Object.assign(backend, {
    async [Symbol.asyncDispose]() {
      await backend.close();
      await broker.close();
    },
  });
  return Promise.resolve({ backend: wrapped, prefix: crypto.randomUUID() });
}, { skip: /groups are saved|chordPartReturn/ });

Deno.test("rpc: a result stored by another process reaches the caller's reply queue", async () => {
  await using client = new RpcBackend("rpc://", { brokerUrl: AMQP_URL });
  await using worker = new RpcBackend("rpc://", { brokerUrl: AMQP_URL });
  await client.ready();
  const ids = ["a", "b"].map((x) => `${x}-${crypto.randomUUID()}`) as [string, string];
  const seen: string[] = [];
  const states: string[] = [];
  const watching = (async () => {
    for await (const m of client.watch(ids[0])) states.push(m.status);
  })();
  const waiting = (async () => {
    for await (const m of client.waitFor(ids)) seen.push(m.task_id);
  })();
  await new Promise((r) => setTimeout(r, 100));
  await worker.store(ids[0], meta(ids[0], "STARTED"), { replyTo: client.replyTo });
  await worker.store(ids[1], meta(ids[1], "FAILURE", { exc_type: "ValueError" }), {
    replyTo: client.replyTo,
  });
  await worker.store(ids[0], meta(ids[0], "SUCCESS", 42), { replyTo: client.replyTo });
  await Promise.all([watching, waiting]);
  assert.deepEqual(seen, [ids[1], ids[0]]);
  assert.deepEqual(states, ["STARTED", "SUCCESS"]);
  assert.equal((await client.get(ids[0]))?.result, 42);
  // The worker never saw these results: rpc cannot poll.
  assert.equal(await worker.get(ids[0]), null);
});

Deno.test("rpc: groups and chords are a clear RpcNotSupportedError", async () => {
  await using backend = new RpcBackend("rpc://", { brokerUrl: AMQP_URL });
  await assert.rejects(() => backend.saveGroup("g", ["a"]), RpcNotSupportedError);
  await assert.rejects(() => backend.restoreGroup("g"), RpcNotSupportedError);
  await assert.rejects(
    () => backend.chordPartReturn("g", 0, { taskId: "a", status: "SUCCESS", result: 1 }),
    (e: Error) => e instanceof RpcNotSupportedError && /redis:\/\/ or kv:\/\//.test(e.message),
  );
});

Deno.test("rpc: createBackend('rpc://') needs an amqp broker", async () => {
  await assert.rejects(() => createBackend("rpc://"), TypeError);
  await using broker = new AmqpBroker(AMQP_URL);
  await using backend = await createBackend("rpc://", { broker });
  assert.ok(backend instanceof RpcBackend);
});

Deno.test("rpc: a Python Celery worker replies to celeriac's reply queue", async () => {
  const queue = `celeriac-test-rpc-${crypto.randomUUID()}`;
  await using broker = new AmqpBroker(AMQP_URL);
  await using backend = new RpcBackend("rpc://", { broker });
  await backend.ready();
  const worker = new Deno.Command("/usr/bin/python3", {
    args: [
      "-m",
      "celery",
      "-A",
      "amqp_tasks",
      "worker",
      "-Q",
      queue,
      "-c",
      "1",
      "-P",
      "solo",
      "--without-heartbeat",
      "--without-gossip",
      "--without-mingle",
      "-l",
      "WARNING",
    ],
    cwd: new URL("./python/", import.meta.url).pathname,
    env: { CELERIAC_TEST_BROKER: AMQP_URL, CELERIAC_TEST_BACKEND: "rpc://" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const id = crypto.randomUUID();
    await broker.publish(
      queue,
      encodeTask({
        id,
        name: "py.amqp.add",
        args: [2],
        kwargs: { y: 40 },
        replyTo: backend.replyTo,
      }),
    );
    const signal = AbortSignal.timeout(30_000);
    const states: string[] = [];
    let result: unknown;
    for await (const m of backend.watch(id, { signal })) {
      states.push(m.status);
      result = m.result;
    }
    assert.equal(states.at(-1), "SUCCESS");
    assert.deepEqual(result, { sum: 42, lang: "py" });
  } finally {
    worker.kill("SIGKILL");
    await worker.status;
    await cleanup(taskQueueNames(queue));
  }
});

Deno.test("amqp broker + memory backend compose (a Redis/KV backend works the same way)", async () => {
  const queue = `celeriac-test-mem-${crypto.randomUUID()}`;
  await using broker = new AmqpBroker(AMQP_URL);
  await using backend = new MemoryBackend(`memory://${queue}`);
  const id = crypto.randomUUID();
  await broker.publish(queue, encodeTask({ id, name: "t", args: [1], kwargs: {} }));
  for await (const d of broker.consume([queue], { signal: AbortSignal.timeout(10_000) })) {
    await backend.store(id, meta(id, "SUCCESS", d.message.headers.id));
    await d.ack();
    break;
  }
  assert.equal((await backend.get(id))?.result, id);
  await cleanup(taskQueueNames(queue));
});
