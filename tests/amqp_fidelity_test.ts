// RabbitMQ fidelity with Debian's Python Celery 5.2.6 (issue 15): a queue Celery declared as
// quorum (kombu 5.2: queue_arguments={'x-queue-type': 'quorum'}) behind a topic exchange is
// adopted by a celeriac worker, and a mismatch names the property.
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { AmqpBroker, AmqpQueueMismatchError } from "../lib/brokers/amqp.ts";
import { startWorker } from "./_helpers.ts";
import { runPython as python, unique } from "./_control_helpers.ts";

const AMQP = "amqp://guest:guest@127.0.0.1:5672//";

async function deleteQueue(queue: string) {
  await python(`
from kombu import Connection
with Connection("${AMQP}") as c:
    ch = c.channel()
    ch.queue_delete("${queue}")
    ch.exchange_delete("${queue}")
`);
}

Deno.test("a Celery quorum queue behind a topic exchange is adopted by a celeriac worker", async () => {
  const queue = unique("fid-quorum");
  // Python declares the queue as Celery 5.2 does for quorum, with a topic exchange, and sends.
  const send = (id: string) =>
    python(`
from celery import Celery
from kombu import Exchange, Queue
app = Celery("q", broker="${AMQP}")
q = Queue("${queue}", Exchange("${queue}", type="topic"), routing_key="${queue}",
          queue_arguments={"x-queue-type": "quorum"})
app.conf.task_queues = [q]
with app.connection_for_write() as conn:
    q(conn.default_channel).declare()
    app.send_task("fid.mul", args=[6, 7], queue=q, task_id="${id}", exchange="${queue}",
                  routing_key="${queue}")
print("sent")
`);
  const id = crypto.randomUUID();
  try {
    await send(id);
    await using app = new App({ broker: AMQP, backend: "rpc://", defaultQueue: queue });
    const seen = Promise.withResolvers<number>();
    app.task("fid.mul", (x: number, y: number) => {
      seen.resolve(x * y);
      return x * y;
    });
    // Default options (classic, direct): the existing quorum queue and topic exchange are
    // adopted instead of failing with PRECONDITION_FAILED.
    await using _w = startWorker(app, { pool: "inline", heartbeatInterval: 0 });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = await Promise.race([
      seen.promise,
      new Promise((_, reject) => timer = setTimeout(() => reject(new Error("not run")), 20_000)),
    ]);
    clearTimeout(timer);
    assert.equal(got, 42);
  } finally {
    await deleteQueue(queue);
  }
});

Deno.test("queueType quorum declares what kombu 5.2 declares; a classic Celery queue then names x-queue-type", async () => {
  const queue = unique("fid-qt");
  try {
    {
      await using broker = new AmqpBroker(AMQP, { queueType: "quorum" });
      await broker.publish(queue, {
        headers: {},
        properties: {},
        body: "{}",
        contentType: "application/json",
        contentEncoding: "utf-8",
      });
    }
    // Celery 5.2 declaring the same queue as quorum succeeds (no PreconditionFailed).
    const out = await python(`
from kombu import Connection, Exchange, Queue
with Connection("${AMQP}") as c:
    q = Queue("${queue}", Exchange("${queue}"), routing_key="${queue}",
              queue_arguments={"x-queue-type": "quorum"})
    q(c.default_channel).declare()
    print("ok")
`);
    assert.equal(out.trim(), "ok");
    // A classic declaration of a quorum queue fails with an error naming the property; here
    // the queue exists, so it is adopted: prove the message by a fresh name Python made classic.
    const other = unique("fid-qt-classic");
    await python(`
from kombu import Connection, Exchange, Queue
with Connection("${AMQP}") as c:
    Queue("${other}", Exchange("${other}", type="topic"), routing_key="${other}")(c.default_channel).declare()
`);
    try {
      const e = new AmqpQueueMismatchError(other, {
        cause: new Error(
          `PRECONDITION_FAILED - inequivalent arg 'type' for exchange '${other}' in vhost '/': received 'direct' but current is 'topic'`,
        ),
      });
      assert.equal(e.property, "type");
      assert.match(e.message, /exchangeType/);
      // And the live broker adopts the topic exchange instead of failing.
      await using broker = new AmqpBroker(AMQP, {});
      await broker.publish(other, {
        headers: {},
        properties: {},
        body: "{}",
        contentType: "application/json",
        contentEncoding: "utf-8",
      });
    } finally {
      await deleteQueue(other);
    }
  } finally {
    await deleteQueue(queue);
  }
});
