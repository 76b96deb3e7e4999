// An App and Consumer on the SQS broker (emulator: npm's fauxqs on 127.0.0.1:16500-16599):
// countdowns past SQS's delay limit, long late-acked tasks under a short visibility timeout,
// dead-lettering, results in Redis, and the clear error of remote control and events.
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import { Reject } from "../lib/errors.ts";
import { receiveEvents } from "../lib/events.ts";
import { SqsBroker } from "../lib/brokers/sqs.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { Consumer } from "../lib/worker/consumer.ts";
import { REDIS_BACKEND } from "./_redis_helpers.ts";
import { emulatorUrl, sqsEmulator, uniqueQueue } from "./_sqs_emulator.ts";

const emu = await sqsEmulator();

// What the workers warned of, for failure messages.
const logged: string[] = [];
const logger = {
  debug: () => {},
  info: () => {},
  warn: (m: string) => logged.push(`WARN ${m}`),
  error: (m: string) => logged.push(`ERROR ${m}`),
};

function makeApp(transportOptions: Record<string, unknown> = {}, maxDeliveries?: number) {
  return new App({
    logger,
    broker: emulatorUrl(emu),
    backend: REDIS_BACKEND,
    transportOptions: { visibility_timeout: 30, ...transportOptions },
    ...(maxDeliveries === undefined ? {} : { maxDeliveries }),
  });
}

async function withWorkers(
  apps: App[],
  queue: string,
  fn: () => Promise<void>,
): Promise<void> {
  const stop = new AbortController();
  const runs = apps.map((app) =>
    new Consumer(app, { pool: "inline", queues: [queue], signal: stop.signal }).run()
  );
  try {
    await fn();
  } finally {
    stop.abort();
    await Promise.all(runs);
    for (const app of apps) await app.close();
  }
}

Deno.test("sqs app: a 20-minute countdown (SQS's 900 s limit scaled to 2 s) runs once, not before", async () => {
  // 1200 s / 900 s, scaled: a 2.7 s countdown past a 2 s limit, so the message hops once.
  const options = { max_delay_seconds: 2, visibility_timeout: 1 };
  const queue = uniqueQueue("countdown");
  const runs: number[] = [];
  const workers = [makeApp(options), makeApp(options)];
  for (const app of workers) {
    app.task("cd.tick", (n: number) => {
      runs.push(n);
      return n;
    });
  }
  const client = makeApp(options);
  client.task("cd.tick", (n: number) => n);
  await withWorkers(workers, queue, async () => {
    const started = Date.now();
    const r = await client.sendTask("cd.tick", [7], {}, { queue, countdown: 2.7 });
    assert.equal(await r.get({ timeout: 15_000 }), 7);
    assert.ok(Date.now() - started >= 2650, `ran after ${Date.now() - started} ms`);
    // Several visibility timeouts later, still once.
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(runs, [7]);
  });
  await client.close();
});

Deno.test("sqs app: a late-acked task longer than the visibility timeout runs once among two workers", async () => {
  const options = { visibility_timeout: 1 };
  const queue = uniqueQueue("long");
  const runs: string[] = [];
  const workers = [makeApp(options), makeApp(options)];
  workers.forEach((app, i) =>
    app.task("long.sleep", async (ms: number) => {
      runs.push(`w${i}`);
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    }, { acksLate: true })
  );
  const client = makeApp(options);
  await withWorkers(workers, queue, async () => {
    const r = await client.sendTask("long.sleep", [3500], {}, { queue });
    assert.equal(await r.get({ timeout: 15_000 }), 3500);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(runs.length, 1, `ran ${runs}`);
  });
  await client.close();
});

Deno.test("sqs app: a message requeued past maxDeliveries is dead-lettered to <queue>.dlq", async () => {
  const queue = uniqueQueue("poison");
  const app = makeApp({}, 3);
  let runs = 0;
  app.task("poison.requeue", () => {
    runs++;
    throw new Reject("again", { requeue: true });
  }, { acksLate: true });
  const client = makeApp();
  await withWorkers([app], queue, async () => {
    await client.sendTask("poison.requeue", [], {}, { queue });
    const broker = new SqsBroker(emulatorUrl(emu));
    try {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 15_000);
      let dead: string | undefined;
      for await (const d of broker.consume([`${queue}.dlq`], { signal: controller.signal })) {
        dead = d.message.headers.task as string;
        await d.ack();
        break;
      }
      clearTimeout(timer);
      assert.equal(dead, "poison.requeue", `runs: ${runs}\n${logged.join("\n")}`);
      assert.equal(runs, 3);
    } finally {
      await broker.close();
    }
  });
  await client.close();
});

Deno.test("sqs app: inspect/control and events say SQS has no fan-out", async () => {
  await using app = makeApp();
  await assert.rejects(app.control.ping(), /no broadcast \(no fan-out, as on SQS/);
  const it = receiveEvents(await app.getBroker())[Symbol.asyncIterator]();
  await assert.rejects(it.next(), /no subscribe \(no fan-out, as on SQS/);
  // The broker is still fine for tasks.
  const broker = await app.getBroker();
  const q = uniqueQueue("ctl");
  await broker.publish(q, encodeTask({ id: "c", name: "x", args: [], kwargs: {} }));
  assert.equal(await broker.purge(q), 1);
});
