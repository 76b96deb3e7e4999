// Messages larger than one Deno KV value (64 KiB) on the kv:// default: the body is split
// across keys, claimed with its entry, and its chunks go with the ack or the purge.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { KvBroker } from "../lib/brokers/kv.ts";
import type { Message } from "../lib/protocol/message.ts";
import { DAYONE_APP, kvEnv, spawnCli } from "./_cli_helpers.ts";

function message(body: string): Message {
  return {
    headers: { id: crypto.randomUUID(), task: "tasks.size" },
    properties: {},
    body,
    contentType: "application/json",
    contentEncoding: "utf-8",
  };
}

async function chunkKeys(path: string, queue: string): Promise<number> {
  const kv = await Deno.openKv(path);
  try {
    return (await Array.fromAsync(kv.list({ prefix: ["celeriac", "q", queue, "chunk"] }))).length;
  } finally {
    kv.close();
  }
}

Deno.test("kv broker: a 5 MB body (multi-byte text) is published, claimed whole, requeued, dead-lettered, and its chunks deleted by ack and by the dead-letter purge", async () => {
  await using kv = await kvEnv();
  const path = `${kv.dir}/large.kv`;
  const queue = "large";
  await using broker = new KvBroker(`kv://${path}`);
  // 'é' is 2 bytes, '€' 3 and '😀' 4 in UTF-8: chunk edges fall inside characters.
  const body = JSON.stringify(["é€😀x".repeat(500_000)]);
  assert.ok(new TextEncoder().encode(body).byteLength > 5_000_000);
  await broker.publish(queue, message(body));
  assert.ok((await chunkKeys(path, queue)) > 80);

  const controller = new AbortController();
  const stream = broker.consume([queue], { prefetch: 1, signal: controller.signal });
  const it = stream[Symbol.asyncIterator]();
  let d = (await it.next()).value!;
  assert.equal(d.message.body, body);
  await d.reject({ requeue: true });
  d = (await it.next()).value!;
  assert.equal(d.message.body, body);
  assert.equal(d.deliveryCount, 2);
  await d.ack();
  assert.equal(await chunkKeys(path, queue), 0);

  // Dead-lettered: the letter keeps its body until purged with it.
  await broker.publish(queue, message(body));
  d = (await it.next()).value!;
  await d.reject({ requeue: false });
  controller.abort();
  await it.return?.(undefined);
  const [letter] = await broker.browseDeadLetters(queue);
  assert.equal(letter?.message.body, body);
  assert.ok((await chunkKeys(path, queue)) > 80);
  assert.equal(await broker.purgeDeadLetters(queue), 1);
  assert.equal(await chunkKeys(path, queue), 0);

  // Purging waiting messages takes their chunks too.
  await broker.publish(queue, message(body));
  assert.equal(await broker.purge(queue), 1);
  assert.equal(await chunkKeys(path, queue), 0);
});

Deno.test("kv://: a 5 MB argument reaches a worker in another process and its result comes back", async () => {
  await using kv = await kvEnv();
  const url = `kv://${kv.env.CELERIAC_KV_PATH}`;
  const queue = `large-${crypto.randomUUID().slice(0, 8)}`;
  await using worker = spawnCli(["worker", "-a", DAYONE_APP, "-Q", queue, "-c", "1"], {
    env: kv.env,
  });
  await worker.ready();
  await using app = new App({ broker: url, backend: url });
  const text = "0123456789".repeat(500_000);
  const sent = await app.sendTask("tasks.size", [text], {}, { queue });
  const delayed = await app.sendTask("tasks.size", [`${text}!`], {}, { queue, countdown: 1 });
  assert.equal(await sent.get({ timeout: 60_000 }), 5_000_000, worker.log());
  assert.equal(await delayed.get({ timeout: 60_000 }), 5_000_001, worker.log());
  assert.equal(await chunkKeys(kv.env.CELERIAC_KV_PATH!, queue), 0);
});
