// The SQS broker against a local emulator (npm's fauxqs, started by the test file on
// 127.0.0.1:16500-16599): the Broker conformance suite, then what is particular to SQS.
import assert from "node:assert/strict";
import { type Broker, DEAD_LETTER_REASON_HEADER, type Delivery } from "../lib/brokers/broker.ts";
import { SqsClient } from "../lib/brokers/_sqs_client.ts";
import { SqsBroker, type SqsBrokerOptions } from "../lib/brokers/sqs.ts";
import { createBroker } from "../lib/transport/registry.ts";
import { encodeTask, type Message, type TaskCall } from "../lib/protocol/message.ts";
import { brokerSuite } from "./_broker_suite.ts";
import { emulatorUrl, sqsEmulator, TEST_KEY, TEST_SECRET, uniqueQueue } from "./_sqs_emulator.ts";

const emu = await sqsEmulator();

function broker(options: SqsBrokerOptions = {}): SqsBroker {
  return new SqsBroker(emulatorUrl(emu), { visibilityTimeout: 30_000, ...options });
}

// A queue's dead letters, read (and removed) from its SQS dead-letter queue.
async function deadLetters(b: SqsBroker, queue: string): Promise<Message[]> {
  const claims = await b.transport.claim(`${queue}.dlq`, 10, { waitSeconds: 1 });
  await b.transport.ack(claims);
  return claims.map((c) => c.message!);
}

brokerSuite("sqs", async (options = {}) => {
  const b = await createBroker(emulatorUrl(emu), {
    transportOptions: { visibility_timeout: 30 },
    ...options,
  }) as SqsBroker;
  return {
    broker: b,
    queue: uniqueQueue("suite"),
    deadLetters: (q) => deadLetters(b, q),
    // SQS counts every receive, a given-back message's too (ApproximateReceiveCount).
    releaseMarksRedelivered: true,
  };
}, { fanout: false });

const message = (id: string, extra: Partial<TaskCall> = {}) =>
  encodeTask({ id, name: "tasks.add", args: [1, 2], kwargs: {}, ...extra });

// A client of the emulator for looking behind the broker (attributes, raw bodies).
const raw = new SqsClient({
  endpoint: emu.endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: TEST_KEY, secretAccessKey: TEST_SECRET },
});

async function collect(
  b: Broker,
  queues: string[],
  n: number,
  options: { prefetch?: number; timeout?: number; ack?: boolean } = {},
): Promise<Delivery[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeout ?? 10_000);
  const got: Delivery[] = [];
  try {
    for await (
      const d of b.consume(queues, { prefetch: options.prefetch ?? 0, signal: controller.signal })
    ) {
      got.push(d);
      if (options.ack !== false) await d.ack();
      if (got.length >= n) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return got;
}

Deno.test("sqs: messages are kombu's SQS format, base64 of the JSON envelope", async () => {
  await using b = broker();
  const q = uniqueQueue("fmt");
  await b.publish(q, message("fmt-1"));
  const url = await raw.getQueueUrl(q);
  const [m] = await raw.receiveMessage(url, 1, 1);
  const envelope = JSON.parse(atob(m!.Body));
  assert.equal(envelope.headers.id, "fmt-1");
  assert.equal(envelope["content-type"], "application/json");
  assert.equal(envelope.properties.body_encoding, "base64");
  assert.deepEqual(envelope.properties.delivery_info, { exchange: "", routing_key: q });
  assert.deepEqual(JSON.parse(atob(envelope.body))[0], [1, 2]);
});

Deno.test("sqs: receives come in batches of up to 10 and never exceed the prefetch", async () => {
  await using b = broker();
  const q = uniqueQueue("batch");
  for (let i = 0; i < 25; i++) await b.publish(q, message(`b-${i}`));
  const asked: number[] = [];
  const sizes: number[] = [];
  const claim = b.transport.claim.bind(b.transport);
  b.transport.claim = async (queue, max, options) => {
    asked.push(max);
    const got = await claim(queue, max, options);
    sizes.push(got.length);
    return got;
  };
  const got = await collect(b, [q], 25);
  assert.equal(got.length, 25);
  assert.ok(asked.every((m) => m === 10), `asked ${asked}`);
  assert.ok(sizes.some((s) => s > 1), `batches ${sizes}`);
  asked.length = 0;
  for (let i = 0; i < 6; i++) await b.publish(q, message(`p-${i}`));
  // Prefetch 3: the broker asks for at most what the prefetch leaves free.
  const controller = new AbortController();
  const held: Delivery[] = [];
  const it = b.consume([q], { prefetch: 3, signal: controller.signal })[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) held.push((await it.next()).value);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(asked.every((m) => m <= 3), `asked ${asked}`);
  const more = it.next();
  await Promise.all(held.map((d) => d.ack()));
  const r = await more;
  await r.value.ack();
  controller.abort();
  await it.return?.(undefined);
  assert.equal(await b.purge(q), 2);
});

Deno.test("sqs: acks made together are deleted in one DeleteMessageBatch", async () => {
  await using b = broker();
  const q = uniqueQueue("acks");
  for (let i = 0; i < 10; i++) await b.publish(q, message(`a-${i}`));
  const batches: number[] = [];
  const ack = b.transport.ack.bind(b.transport);
  b.transport.ack = (claims) => {
    batches.push(claims.length);
    return ack(claims);
  };
  const got = await collect(b, [q], 10, { ack: false });
  await Promise.all(got.map((d) => d.ack()));
  assert.deepEqual(batches, [10]);
  const url = await raw.getQueueUrl(q);
  const attrs = await raw.getQueueAttributes(url, ["All"]);
  assert.equal(attrs.ApproximateNumberOfMessages, "0");
  assert.equal(attrs.ApproximateNumberOfMessagesNotVisible, "0");
  // Settle once: a second ack or a reject after the ack does nothing.
  await got[0]!.ack();
  await got[0]!.reject({ requeue: true });
  assert.deepEqual(batches, [10]);
});

Deno.test("sqs: a held message's visibility is extended, so a long task is not redelivered", async () => {
  await using a = broker({ visibilityTimeout: 2000 });
  await using other = broker({ visibilityTimeout: 2000 });
  const q = uniqueQueue("lease");
  await a.publish(q, message("long"));
  const [held] = await collect(a, [q], 1, { ack: false });
  // Three visibility timeouts later another consumer still sees nothing.
  const stolen = await collect(other, [q], 1, { timeout: 6000 });
  assert.equal(stolen.length, 0);
  await held!.ack();
  assert.equal(await a.purge(q), 0);
});

Deno.test("sqs: a consumer that stops settling (dead) loses its messages after the visibility timeout", async () => {
  const a = broker({ visibilityTimeout: 1000 });
  const q = uniqueQueue("dead");
  await a.publish(q, message("orphan"));
  await collect(a, [q], 1, { ack: false });
  await a.close(); // no more lease renewals: as if the process died
  await using b = broker({ visibilityTimeout: 1000 });
  const [again] = await collect(b, [q], 1, { timeout: 8000 });
  assert.equal(again?.message.headers.id, "orphan");
  assert.equal(again?.deliveryCount, 2);
  assert.equal(again?.redelivered, true);
});

Deno.test("sqs: rejected messages go to <queue>.dlq (SQS <queue>-dlq) with their reason; requeues past maxDeliveries too", async () => {
  await using b = broker({ maxDeliveries: 2 });
  const q = uniqueQueue("dl");
  await b.publish(q, message("bad"));
  await b.publish(q, message("tired"));
  const got = await collect(b, [q], 2, { ack: false });
  const bad = got.find((d) => d.message.headers.id === "bad")!;
  const tired = got.find((d) => d.message.headers.id === "tired")!;
  await bad.reject({ requeue: false });
  await tired.reject({ requeue: true });
  const [second] = await collect(b, [q], 1, { ack: false });
  assert.equal(second!.message.headers.id, "tired");
  assert.equal(second!.deliveryCount, 2);
  await second!.reject({ requeue: true }); // the second delivery: no third
  const dead = await collect(b, [`${q}.dlq`], 2);
  assert.deepEqual(dead.map((d) => d.message.headers.id).sort(), ["bad", "tired"]);
  const reasons = Object.fromEntries(
    dead.map((d) => [d.message.headers.id, d.message.headers[DEAD_LETTER_REASON_HEADER]]),
  );
  assert.equal(reasons.bad, "rejected without requeue");
  assert.match(String(reasons.tired), /maxDeliveries 2/);
  // The SQS name follows kombu's renaming.
  assert.ok((await raw.getQueueUrl(`${q}-dlq`)).endsWith(`/${q}-dlq`));
  assert.equal(await b.purge(q), 0);
});

Deno.test("sqs: an ETA beyond the delay limit hops and is delivered once, not before it", async () => {
  await using b = broker({ maxDelaySeconds: 1 });
  const q = uniqueQueue("hop");
  const sends: number[] = [];
  const eta = new Date(Date.now() + 3500);
  await b.schedule(q, message("far"), eta);
  const url = await raw.getQueueUrl(q);
  const first = await raw.getQueueAttributes(url, ["ApproximateNumberOfMessagesDelayed"]);
  assert.equal(first.ApproximateNumberOfMessagesDelayed, "1");
  const claim = b.transport.claim.bind(b.transport);
  b.transport.claim = async (queue, max, options) => {
    const got = await claim(queue, max, options);
    sends.push(Date.now());
    return got;
  };
  const got = await collect(b, [q], 2, { timeout: 5500 });
  assert.equal(got.length, 1, "delivered more than once");
  assert.ok(Date.now() >= eta.getTime() - 50);
  assert.ok(sends.length >= 3, `expected hops, saw ${sends.length} receives`);
  assert.equal(got[0]!.deliveryCount, 1);
});

Deno.test("sqs: FIFO queues keep order, take MessageGroupId/dedup id, and hold ETAs", async () => {
  await using b = broker();
  const q = `${uniqueQueue("fifo")}.fifo`;
  for (let i = 0; i < 4; i++) await b.publish(q, message(`f-${i}`));
  const url = await raw.getQueueUrl(q);
  const attrs = await raw.getQueueAttributes(url, ["FifoQueue"]);
  assert.equal(attrs.FifoQueue, "true");
  const got = await collect(b, [q], 4);
  assert.deepEqual(got.map((d) => d.message.headers.id), ["f-0", "f-1", "f-2", "f-3"]);
  // kombu's properties: a group and a dedup id; a resend with the same dedup id is dropped.
  const grouped = message("g-1");
  grouped.properties.MessageGroupId = "tenant-7";
  grouped.properties.MessageDeduplicationId = "once";
  await b.publish(q, grouped);
  await b.publish(q, grouped);
  const [m] = await raw.receiveMessage(url, 10, 1);
  assert.equal(m!.Attributes?.MessageGroupId, "tenant-7");
  assert.equal(m!.Attributes?.MessageDeduplicationId, "once");
  await raw.deleteMessageBatch(url, [m!.ReceiptHandle]);
  assert.equal(await b.purge(q), 0);
  // No per-message delay on FIFO: the message is hidden until its ETA instead.
  const eta = new Date(Date.now() + 2500);
  await b.schedule(q, message("f-later"), eta);
  await b.publish(q, message("f-now"));
  const timed = await collect(b, [q], 2, { timeout: 8000 });
  assert.deepEqual(timed.map((d) => d.message.headers.id), ["f-now", "f-later"]);
  assert.ok(Date.now() >= eta.getTime() - 50);
  assert.equal(timed[1]!.deliveryCount, 1);
});

Deno.test("sqs: aborting the signal ends a 20 s long poll at once", async () => {
  await using b = broker({ waitTimeSeconds: 20 });
  const q = uniqueQueue("abort");
  await b.purge(q); // creates it
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(), 300);
  for await (const _ of b.consume([q], { signal: controller.signal })) assert.fail("no message");
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
});

Deno.test("sqs: unstarted deliveries are given back when consume() ends", async () => {
  await using b = broker();
  const q = uniqueQueue("back");
  for (let i = 0; i < 5; i++) await b.publish(q, message(`k-${i}`));
  // Prefetch 0 claims all five in one batch; the loop stops after the first.
  const [first] = await collect(b, [q], 1);
  assert.ok(first);
  const rest = await collect(b, [q], 4, { timeout: 3000 });
  assert.equal(rest.length, 4);
});

Deno.test("sqs: queue names take the prefix and kombu's renaming; URLs and env pick credentials and endpoint", async () => {
  await using b = broker({ queueNamePrefix: "pfx-" });
  const q = `${uniqueQueue("name")}.with:colon`;
  await b.publish(q, message("named"));
  const sqsName = `pfx-${q.replace(":", "_").replaceAll(".", "-")}`;
  const url = await raw.getQueueUrl(sqsName);
  assert.ok(url.endsWith(`/${sqsName}`));
  assert.equal(b.url, `sqs://${TEST_KEY}:***@127.0.0.1:${emu.port}`);
  // sqs:// alone: credentials and endpoint from the environment, as the AWS SDKs do.
  const saved = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_SQS"].map(
    (k) => [k, Deno.env.get(k)] as const,
  );
  try {
    Deno.env.set("AWS_ACCESS_KEY_ID", "env-key");
    Deno.env.set("AWS_SECRET_ACCESS_KEY", "env-secret");
    Deno.env.set("AWS_ENDPOINT_URL_SQS", emu.endpoint);
    await using fromEnv = await createBroker("sqs://");
    assert.ok(fromEnv instanceof SqsBroker);
    assert.equal(fromEnv.transport.settings.credentials?.accessKeyId, "env-key");
    const eq = uniqueQueue("env");
    await fromEnv.publish(eq, message("env"));
    assert.equal(await fromEnv.purge(eq), 1);
    Deno.env.delete("AWS_ACCESS_KEY_ID");
    await using none = new SqsBroker("sqs://");
    await assert.rejects(none.publish(eq, message("x")), /no credentials/);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
  const inline = new SqsBroker("sqs://AKIA%2Fx:se%2Bcret@");
  assert.deepEqual(inline.transport.settings.credentials, {
    accessKeyId: "AKIA/x",
    secretAccessKey: "se+cret",
  });
  await inline.close();
});

Deno.test("sqs: workers with different visibility timeouts creating one new queue at once all use it", async () => {
  // Each finds no queue, then creates it with its own VisibilityTimeout: all but the first
  // CreateQueue calls fail (QueueAlreadyExists) and must fall back to the queue made.
  const q = uniqueQueue("race");
  const brokers = Array.from(
    { length: 8 },
    (_, i) => broker({ visibilityTimeout: (10 + i) * 1000 }),
  );
  try {
    await Promise.all(brokers.map((b, i) => b.publish(q, message(`race-${i}`))));
    const got = await collect(brokers[0]!, [q], 8);
    assert.deepEqual(
      got.map((d) => d.message.headers.id).sort(),
      brokers.map((_, i) => `race-${i}`),
    );
  } finally {
    for (const b of brokers) await b.close();
  }
});

Deno.test("sqs: predefined queues are used as given and nothing else is created", async () => {
  const q = uniqueQueue("pre");
  const url = await raw.createQueue(q, {});
  await using b = await createBroker(emulatorUrl(emu), {
    transportOptions: {
      predefined_queues: {
        celery: { url, access_key_id: "other", secret_access_key: "s" },
      },
    },
  });
  await b.publish("celery", message("pre"));
  const [m] = await raw.receiveMessage(url, 1, 1);
  assert.equal(JSON.parse(atob(m!.Body)).headers.id, "pre");
  await assert.rejects(b.publish("elsewhere", message("x")), /predefined_queues/);
  assert.throws(
    () => new SqsBroker("sqs://", { predefinedQueues: { "a.fifo": { url } } }),
    /FIFO/,
  );
});

Deno.test("sqs: prefetch 1 over two queues takes from both, one at a time, without waiting out a long poll", async () => {
  await using b = broker({ waitTimeSeconds: 20 });
  const q = uniqueQueue("two");
  await b.purge(`${q}.a`); // both exist, a stays empty
  await b.purge(`${q}.b`);
  for (let i = 0; i < 3; i++) await b.publish(`${q}.b`, message(`b-${i}`));
  let outstanding = 0;
  let most = 0;
  const started = Date.now();
  const controller = new AbortController();
  const got: string[] = [];
  for await (
    const d of b.consume([`${q}.a`, `${q}.b`], { prefetch: 1, signal: controller.signal })
  ) {
    most = Math.max(most, ++outstanding);
    got.push(d.message.headers.id as string);
    await d.ack();
    outstanding--;
    if (got.length === 3) break;
  }
  assert.deepEqual(got.sort(), ["b-0", "b-1", "b-2"]);
  assert.equal(most, 1);
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
});

Deno.test("sqs: consume() fails clearly without credentials, and retries an unreachable endpoint", async () => {
  const saved = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].map(
    (k) => [k, Deno.env.get(k)] as const,
  );
  try {
    for (const [k] of saved) Deno.env.delete(k);
    await using none = new SqsBroker(`sqs://@127.0.0.1:${emu.port}`);
    await assert.rejects(async () => {
      for await (const _ of none.consume([uniqueQueue("nocred")])) break;
    }, /no credentials/);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
  // Nothing listens on port 1: the loop keeps retrying until the signal aborts.
  await using gone = new SqsBroker("sqs://k:s@127.0.0.1:1");
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 1500);
  let n = 0;
  for await (const _ of gone.consume(["q"], { signal: controller.signal })) n++;
  assert.equal(n, 0);
});

Deno.test("sqs: breaking out of consume() over several queues does not wait for a long poll", async () => {
  await using b = broker({ waitTimeSeconds: 20 });
  const q = uniqueQueue("brk");
  await b.purge(`${q}.empty`);
  await b.publish(`${q}.full`, message("one"));
  const started = Date.now();
  for await (const d of b.consume([`${q}.empty`, `${q}.full`], { prefetch: 0 })) {
    await d.ack();
    break; // the poll on the empty queue is still running
  }
  assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
});
