// Remote control and events over RabbitMQ with Python Celery 5.2.6: Celery's exchanges and
// queues (celery.pidbox, reply.celery.pidbox, celeryev), Python's `celery inspect`,
// `celery control terminate` and `celery events --dump` against a celeriac worker, and
// celeriac's client against a Python worker.
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { App } from "@celeriac/celeriac";
import { eventually, startWorker } from "./_helpers.ts";
import { background, celeryOn, pythonWorker, REDIS_BACKEND, unique } from "./_control_helpers.ts";
import { AMQP_URL, cleanup, taskQueueNames } from "./_amqp_helpers.ts";

const celery = (...args: string[]) => celeryOn(AMQP_URL, ...args);

function amqpApp(queue: string) {
  const app = new App({ broker: AMQP_URL, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("ctl.add", (x: number, y: number) => x + y);
  app.task("ctl.wait", async function (): Promise<string> {
    await new Promise((resolve) => this.signal.addEventListener("abort", resolve));
    return "stopped";
  });
  return app;
}

interface QueueInfo {
  name: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive: boolean;
  arguments: [string, string, unknown][];
}

/** Queues of the shared RabbitMQ as `rabbitmqctl` reports them, by name. */
async function listQueues(): Promise<Map<string, QueueInfo>> {
  const out = await new Deno.Command("rabbitmqctl", {
    args: [
      "list_queues",
      "-q",
      "--formatter",
      "json",
      "name",
      "durable",
      "auto_delete",
      "exclusive",
      "arguments",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const rows = JSON.parse(new TextDecoder().decode(out.stdout)) as QueueInfo[];
  return new Map(rows.map((r) => [r.name, r]));
}

async function listExchanges(): Promise<Map<string, { type: string; durable: boolean }>> {
  const out = await new Deno.Command("rabbitmqctl", {
    args: ["list_exchanges", "-q", "--formatter", "json", "name", "type", "durable"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const rows = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    name: string;
    type: string;
    durable: boolean;
  }[];
  return new Map(rows.map((r) => [r.name, { type: r.type, durable: r.durable }]));
}

const args = (q: QueueInfo) => Object.fromEntries(q.arguments.map(([k, , v]) => [k, v]));

Deno.test("amqp control: node, reply and event queues are declared as Celery declares them", async () => {
  const queue = unique("ctl-amqp-q");
  const host = `${unique("celeriac")}@test`;
  await using app = amqpApp(queue);
  try {
    await using _w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
    await eventually(async () =>
      Object.keys(await app.control.inspect({ destination: [host] }).ping().collect()).length === 1
    );
    // An event receiver and a reply stream still waiting (for a node that does not exist).
    const stop = new AbortController();
    const ready = Promise.withResolvers<void>();
    const receiving = (async () => {
      for await (const _ of app.events({ signal: stop.signal, onReady: ready.resolve })) {
        // Draining.
      }
    })();
    await ready.promise;
    const waiting = app.control.inspect({ destination: ["nobody@nowhere"], timeout: 5000 })
      .ping().collect();
    try {
      let queues = await listQueues();
      await eventually(
        async () =>
          [...(queues = await listQueues()).keys()].some((n) => n.endsWith(".reply.celery.pidbox")),
        5000,
      );
      const node = queues.get(`${host}.celery.pidbox`);
      assert.ok(node, "the worker's node queue exists");
      assert.equal(node.durable, false);
      assert.equal(node.auto_delete, true);
      assert.equal(node.exclusive, false);
      assert.deepEqual(args(node), { "x-message-ttl": 300000, "x-expires": 10000 });
      const replies = [...queues.values()].filter((q) =>
        /^[0-9a-f-]{36}\.reply\.celery\.pidbox$/.test(q.name)
      );
      assert.ok(replies.length >= 1);
      const reply = replies.find((q) => q.arguments.length === 2)!;
      assert.equal(reply.durable, false);
      assert.equal(reply.auto_delete, true);
      assert.deepEqual(args(reply), { "x-message-ttl": 300000, "x-expires": 10000 });
      const events = [...queues.values()].filter((q) => /^celeryev\.[0-9a-f-]{36}$/.test(q.name));
      assert.ok(events.length >= 1);
      for (const q of events) {
        assert.equal(q.durable, false);
        assert.equal(q.auto_delete, true);
      }
      assert.ok(
        events.some((q) =>
          JSON.stringify(args(q)) === JSON.stringify({ "x-message-ttl": 5000, "x-expires": 60000 })
        ),
        JSON.stringify(events),
      );
      const exchanges = await listExchanges();
      assert.deepEqual(exchanges.get("celery.pidbox"), { type: "fanout", durable: false });
      assert.deepEqual(exchanges.get("reply.celery.pidbox"), { type: "direct", durable: false });
      assert.deepEqual(exchanges.get("celeryev"), { type: "topic", durable: true });
    } finally {
      stop.abort();
      await receiving;
      assert.deepEqual(await waiting, {});
    }
  } finally {
    await cleanup(taskQueueNames(queue));
  }
  // Once the worker stops, its node queue goes (auto-delete).
  await eventually(async () => !(await listQueues()).has(`${host}.celery.pidbox`), 10_000);
});

Deno.test("amqp control: commands, replies and events carry kombu's properties and headers", async () => {
  const queue = unique("ctl-amqp-q");
  const host = `${unique("celeriac")}@test`;
  await using app = amqpApp(queue);
  const conn = await amqp.connect(AMQP_URL.replace(/\/\/$/, "/%2F"));
  const ch = await conn.createChannel();
  const got: Record<string, amqp.ConsumeMessage[]> = { ev: [], cmd: [], reply: [] };
  const oid = crypto.randomUUID();
  const bind = async (key: string, exchange: string, routingKey: string) => {
    const { queue: q } = await ch.assertQueue("", { exclusive: true, autoDelete: true });
    await ch.bindQueue(q, exchange, routingKey);
    await ch.consume(q, (m) => m && got[key]!.push(m), { noAck: true });
  };
  try {
    await ch.assertExchange("celeryev", "topic", { durable: true });
    await ch.assertExchange("celery.pidbox", "fanout", { durable: false });
    await ch.assertExchange("reply.celery.pidbox", "direct", { durable: false });
    await bind("ev", "celeryev", "worker.#");
    await bind("cmd", "celery.pidbox", "");
    await bind("reply", "reply.celery.pidbox", oid);
    await using _w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
    await eventually(() => got.ev!.some((m) => m.properties.headers?.hostname === host));
    const online = got.ev!.find((m) => m.properties.headers?.hostname === host)!;
    assert.equal(online.fields.routingKey, "worker.online");
    assert.equal(online.properties.deliveryMode, 1);
    assert.equal(online.properties.contentType, "application/json");
    assert.equal(JSON.parse(online.content.toString()).type, "worker-online");
    // celeriac's client sends a command as kombu's Mailbox does.
    await app.control.inspect({ destination: [host], timeout: 2000 }).ping().collect();
    const cmd = got.cmd!.find((m) => JSON.parse(m.content.toString()).destination?.[0] === host)!;
    assert.equal(cmd.properties.deliveryMode, 1);
    assert.equal(cmd.properties.contentType, "application/json");
    assert.equal(typeof cmd.properties.headers?.clock, "number");
    assert.ok(cmd.properties.headers?.expires > Date.now() / 1000);
    const body = JSON.parse(cmd.content.toString());
    assert.deepEqual(Object.keys(body).sort(), [
      "arguments",
      "destination",
      "matcher",
      "method",
      "pattern",
      "reply_to",
      "ticket",
    ]);
    assert.equal(body.reply_to.exchange, "reply.celery.pidbox");
    // The worker replies as kombu's Node does: `ticket` and `clock` headers, transient.
    const ticket = crypto.randomUUID();
    ch.publish(
      "celery.pidbox",
      "",
      Buffer.from(JSON.stringify({
        method: "ping",
        arguments: {},
        destination: [host],
        pattern: null,
        matcher: null,
        ticket,
        reply_to: { exchange: "reply.celery.pidbox", routing_key: oid },
      })),
      {
        contentType: "application/json",
        contentEncoding: "utf-8",
        deliveryMode: 1,
        headers: { clock: 1, expires: Date.now() / 1000 + 5 },
      },
    );
    await eventually(() => got.reply!.length === 1);
    const reply = got.reply![0]!;
    assert.equal(reply.properties.headers?.ticket, ticket);
    assert.equal(typeof reply.properties.headers?.clock, "number");
    assert.equal(reply.properties.deliveryMode, 1);
    assert.deepEqual(JSON.parse(reply.content.toString()), { [host]: { ok: "pong" } });
  } finally {
    await conn.close();
    await cleanup(taskQueueNames(queue));
  }
});

Deno.test("amqp control: Python `celery inspect ping` and `inspect registered` list a celeriac worker", async () => {
  const queue = unique("ctl-amqp-q");
  const host = `${unique("celeriac")}@test`;
  await using app = amqpApp(queue);
  try {
    await using _w = startWorker(app, { pool: "inline", hostname: host, heartbeatInterval: 0 });
    await eventually(async () =>
      Object.keys(await app.control.inspect({ destination: [host] }).ping().collect()).length === 1
    );
    const ping = await celery("inspect", "ping", "--timeout", "5", "-d", host, "--json");
    assert.equal(ping.code, 0, ping.stderr);
    assert.deepEqual(JSON.parse(ping.stdout), { [host]: { ok: "pong" } });
    const registered = await celery(
      "inspect",
      "registered",
      "--timeout",
      "5",
      "-d",
      host,
      "--json",
    );
    assert.equal(registered.code, 0, registered.stderr);
    assert.deepEqual(JSON.parse(registered.stdout), { [host]: ["ctl.add", "ctl.wait"] });
    const text = await celery("inspect", "ping", "--timeout", "5", "-d", host);
    assert.match(text.stdout, new RegExp(`->  ${host}: OK\\s+pong`));
  } finally {
    await cleanup(taskQueueNames(queue));
  }
});

Deno.test("amqp control: Python `celery control terminate SIGTERM` stops a running celeriac task", async () => {
  const queue = unique("ctl-amqp-q");
  const host = `${unique("celeriac")}@test`;
  await using app = amqpApp(queue);
  try {
    // ctl.wait runs until it is stopped: if an assertion fails first, the warm shutdown stops
    // it after 5 s instead of waiting for ever.
    await using w = startWorker(app, {
      pool: "inline",
      hostname: host,
      heartbeatInterval: 0,
      shutdownTimeout: 5,
    });
    const r = await app.sendTask("ctl.wait");
    await eventually(() =>
      w.consumer.requests().some((q) => q.id === r.id && q.state === "active")
    );
    const active = await celery("inspect", "active", "--timeout", "5", "-d", host, "--json");
    assert.equal(active.code, 0, active.stderr);
    assert.equal(JSON.parse(active.stdout)[host][0].id, r.id);
    const out = await celery("control", "terminate", "SIGTERM", r.id, "--timeout", "5", "-d", host);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, new RegExp(`terminate: ${r.id}`));
    await eventually(async () => (await r.state()) === "REVOKED");
    // The worker carries on: another task completes.
    const next = await app.sendTask("ctl.add", [1, 2]);
    assert.equal(await next.get({ timeout: 5000 }), 3);
  } finally {
    await cleanup(taskQueueNames(queue));
  }
});

Deno.test("amqp control: celeriac's client pings and inspects a Python worker and sees its events", async () => {
  const queue = unique("ctl-amqp-py");
  const pyName = `${unique("py")}@${Deno.hostname()}`;
  await using app = amqpApp(queue);
  const stop = new AbortController();
  const seen: string[] = [];
  const ready = Promise.withResolvers<void>();
  const watching = (async () => {
    for await (const e of app.events({ signal: stop.signal, onReady: ready.resolve })) {
      if (e.hostname === pyName) seen.push(e.type);
    }
  })();
  await ready.promise;
  await using py = pythonWorker(pyName, queue, AMQP_URL);
  try {
    await py.waitFor("ready.", 30_000);
    const replies = await app.control.inspect({ destination: [pyName], timeout: 5000 }).ping()
      .collect();
    assert.deepEqual(replies, { [pyName]: { ok: "pong" } });
    // Without a destination: every node answers, ours among them, within the timeout.
    const all = await app.control.inspect({ timeout: 2000 }).ping().collect();
    assert.deepEqual(all[pyName], { ok: "pong" });
    const registered = await app.control.inspect({ destination: [pyName], timeout: 5000 })
      .registered().collect();
    assert.ok((registered[pyName] as string[]).includes("py.add"), JSON.stringify(registered));
    await eventually(() => seen.includes("worker-online") || seen.includes("worker-heartbeat"));
  } finally {
    stop.abort();
    await watching;
    await py.stop();
    await cleanup(taskQueueNames(queue));
  }
});

Deno.test("amqp events: Python `celery events --dump` prints a celeriac worker's task-succeeded event", async () => {
  const queue = unique("ev-amqp-q");
  const host = `${unique("celeriac")}@test`;
  await using app = amqpApp(queue);
  await using dump = background("/usr/bin/python3", [
    "-m",
    "celery",
    "-A",
    "control_app",
    "-b",
    AMQP_URL,
    "events",
    "--dump",
  ], { PYTHONUNBUFFERED: "1", CELERIAC_TEST_BROKER: AMQP_URL });
  await dump.waitFor("starting capture");
  const w = startWorker(app, { pool: "inline", hostname: host, taskEvents: true });
  try {
    // The dumper's queue is bound some time after that line: heartbeats show when it listens.
    await dump.waitFor(`${host} [`, 20_000);
    const r = await app.sendTask("ctl.add", [20, 22]);
    assert.equal(await r.get({ timeout: 5000 }), 42);
    await dump.waitFor(new RegExp(`task succeeded: ctl\\.add\\(${r.id}\\).*result=42`), 10_000);
    assert.match(dump.output(), new RegExp(`task received: ctl\\.add\\(${r.id}\\)`));
    assert.match(dump.output(), /sw_ident=celeriac/);
  } finally {
    await w.stop();
    await dump.stop();
    await cleanup(taskQueueNames(queue));
  }
});
