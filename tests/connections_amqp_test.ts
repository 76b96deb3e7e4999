// RabbitMQ connections: a declaration refused by the broker is one error line and a non-zero
// exit before `ready`; a private node stopped for 10 s in the middle of a run loses no task and
// the worker (the same process) reconnects by itself; amqps:// works with a host name and with
// an IP (no SNI server name for an IP), with the CA from `ssl_ca_certs`, and an unknown CA is a
// clear TLS error. A private node on this suite's ports, with a TLS listener and a certificate
// made with openssl in the test; the declaration test uses the shared node.
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import { encodeTask } from "../lib/protocol/message.ts";
import { REDIS_BACKEND, unique } from "./_control_helpers.ts";
import { exitWithin, sleep, worker } from "./_connections_helpers.ts";
import { freePort, type RabbitNode, startRabbitNode } from "./_rabbitmq_node.ts";

const RABBIT = Deno.env.get("CELERIAC_AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5672//";
const TLS_PORT = freePort();

async function makeCert(dir: string): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

let started: Promise<{ node: RabbitNode; certs: string }> | undefined;
const rabbit = () =>
  started ??= (async () => {
    const certs = await Deno.makeTempDir({ prefix: "celeriac-certs-" });
    await makeCert(certs);
    const node = await startRabbitNode({
      config: [
        `listeners.ssl.default = ${TLS_PORT}`,
        `ssl_options.cacertfile = ${certs}/cert.pem`,
        `ssl_options.certfile = ${certs}/cert.pem`,
        `ssl_options.keyfile = ${certs}/key.pem`,
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
      ],
    });
    return { node, certs };
  })();

Deno.test("connections amqp: a refused queue declaration is one error line and a non-zero exit, before ready", async () => {
  const queue = unique("conn-mismatch");
  const conn = await amqp.connect(RABBIT);
  const ch = await conn.createChannel();
  // Exclusive to this connection: the worker can neither declare nor adopt it (405 RESOURCE_LOCKED).
  await ch.assertQueue(queue, { exclusive: true });
  try {
    const w = worker({ CELERIAC_BROKER_URL: RABBIT, CELERIAC_RESULT_BACKEND: REDIS_BACKEND }, [
      "-Q",
      queue,
      "--without-mingle",
    ]);
    assert.equal(await exitWithin(w, 30_000), 1, w.log());
    const log = w.log();
    assert.doesNotMatch(log, / ready/, log);
    const errors = log.trim().split("\n").filter((l) => l.startsWith("celeriac: "));
    assert.equal(errors.length, 1, log);
    assert.match(errors[0]!, new RegExp(`${queue}.*RESOURCE_LOCKED|RESOURCE_LOCKED.*${queue}`));
  } finally {
    await ch.deleteQueue(queue).catch(() => {});
    await conn.close();
  }
});

Deno.test("connections amqp: a RabbitMQ node stopped for 10 s mid-run loses no task; the worker reconnects by itself", async () => {
  const { node } = await rabbit();
  const N = 1500;
  const queue = unique("conn-outage");
  const w = worker({ CELERIAC_BROKER_URL: node.url, CELERIAC_RESULT_BACKEND: REDIS_BACKEND }, [
    "-Q",
    queue,
    "-c",
    "50",
    "--without-mingle",
    "--without-heartbeat",
  ]);
  try {
    await w.waitFor(/ ready/, 30_000);
    await using app = new App({ broker: node.url, backend: REDIS_BACKEND, defaultQueue: queue });
    const backend = await app.getBackend();
    const ids = Array.from({ length: N }, (_, i) => `${queue}-${i}`);
    const publish = async (from: number, to: number) => {
      const broker = await app.getBroker();
      for (let i = from; i < to; i += 50) {
        await Promise.all(
          ids.slice(i, Math.min(i + 50, to)).map((id, k) =>
            broker.publish(
              queue,
              encodeTask({ id, name: "conn.sleep", args: [i + k, 100], kwargs: {} }),
            )
          ),
        );
        await sleep(50);
      }
    };
    await publish(0, N / 2);
    // Stopped while tasks are queued, prefetched and running.
    const done = async () =>
      (await Promise.all(ids.map((id) => backend.get(id)))).filter(Boolean).length;
    while ((await done()) < N / 8) await sleep(100);
    const before = await done();
    await node.stopApp();
    await sleep(10_000);
    await node.startApp();
    await publish(N / 2, N);
    const until = Date.now() + 90_000;
    let stored = 0;
    while ((stored = await done()) < N && Date.now() < until) await sleep(500);
    assert.ok(before < N / 2, `stopped mid-run (${before} done)`);
    assert.equal(stored, N, `lost ${N - stored} tasks:\n${w.log()}`);
    // Same process, still running: it reconnected by itself.
    assert.equal(
      await Promise.race([w.exited.then(() => "exited"), sleep(10).then(() => "running")]),
      "running",
    );
    // RabbitMQ's stop_app closes connections with CONNECTION_FORCED (or the socket resets
    // first): either way the worker says so at WARN.
    assert.match(w.log(), /WARN broker connection error: /);
    // deno-lint-ignore no-console
    console.log(`amqp outage: ${before}/${N} done at the stop, ${stored}/${N} after`);
    await (await app.getBroker()).purge(queue);
  } finally {
    await w.stop("SIGTERM");
  }
});

Deno.test("connections amqp: amqps:// with a host name and with an IP, CA from ssl_ca_certs; an unknown CA is a TLS error", async () => {
  const { certs } = await rabbit();
  for (const host of ["localhost", "127.0.0.1"]) {
    const url = `amqps://guest:guest@${host}:${TLS_PORT}//?ssl_ca_certs=${certs}/cert.pem`;
    await using app = new App({ broker: url, backend: "memory://", brokerConnectionMaxRetries: 1 });
    const queue = unique("conn-tls");
    const broker = await app.getBroker();
    await broker.publish(
      queue,
      encodeTask({ id: queue, name: "conn.add", args: [1, 2], kwargs: {} }),
    );
    const controller = new AbortController();
    for await (const d of broker.consume([queue], { signal: controller.signal })) {
      assert.equal(d.message.headers.id, queue);
      await d.ack();
      controller.abort();
    }
    await broker.purge(queue);
  }
  for (const host of ["localhost", "127.0.0.1"]) {
    await using app = new App({
      broker: `amqps://guest:guest@${host}:${TLS_PORT}//`,
      backend: "memory://",
    });
    const t0 = Date.now();
    await assert.rejects(() => app.getBroker(), /TLS failed/);
    assert.ok(Date.now() - t0 < 10_000);
  }
  // An IP with verification off connects too (no server name sent).
  await using app = new App({
    broker: `amqps://guest:guest@127.0.0.1:${TLS_PORT}//?ssl_cert_reqs=none`,
    backend: "memory://",
  });
  await app.getBroker();
});

Deno.test("connections amqp: stop the private RabbitMQ node", async () => {
  if (!started) return;
  const { node, certs } = await started;
  await node.stop();
  await Deno.remove(certs, { recursive: true }).catch(() => {});
});
