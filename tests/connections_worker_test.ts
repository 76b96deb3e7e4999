// A worker or a client command pointed at a broker that is unreachable, refuses its password or
// does not speak TLS: one WARN per failed attempt (redacted URL, cause, next delay) within 10 s,
// a stop on SIGTERM within 10 s even while connecting, and a non-zero exit with one clear line
// after the retry limit (at once for authentication and TLS failures). Real processes
// (`deno run -A cli.ts ...`), a private redis-server with requirepass on this suite's ports, and
// the shared RabbitMQ node with a wrong guest password.
import assert from "node:assert/strict";
import { cli, exitWithin, startRedis, worker } from "./_connections_helpers.ts";

const UNREACHABLE_REDIS = "redis://127.0.0.1:16601/0";
const UNREACHABLE_AMQP = "amqp://guest:guest@127.0.0.1:16603//";
const RABBIT = Deno.env.get("CELERIAC_AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5672//";
const PASSWORD = "p@ss:w%rd/1";

// One clear line: the last line of stderr is `celeriac: <message>`, and it is the only one.
function finalLine(log: string): string {
  const lines = log.trim().split("\n").filter((l) => l.startsWith("celeriac: "));
  assert.equal(lines.length, 1, `one final line expected:\n${log}`);
  return lines[0]!;
}

Deno.test("connections: a worker with an unreachable Redis logs each attempt within 10 s and stops on SIGTERM within 10 s", async () => {
  const w = worker({ CELERIAC_BROKER_URL: UNREACHABLE_REDIS });
  await w.waitFor(
    /WARN Cannot connect to broker redis:\/\/127\.0\.0\.1:16601\/0: .*ECONNREFUSED.*Trying again in \d+\.\d\d s \(attempt 1 of 101\)/,
    10_000,
  );
  const t0 = Date.now();
  w.process.kill("SIGTERM");
  const code = await exitWithin(w, 10_000);
  assert.equal(code, 0, w.log());
  assert.ok(Date.now() - t0 < 10_000);
  assert.match(w.log(), /stopped while connecting/);
});

Deno.test("connections: a worker with an unreachable Redis exits non-zero with one clear line after the retry limit", async () => {
  const w = worker({ CELERIAC_BROKER_URL: UNREACHABLE_REDIS, CELERIAC_TEST_MAX_RETRIES: "2" });
  const code = await exitWithin(w, 30_000);
  assert.equal(code, 1, w.log());
  assert.equal((w.log().match(/WARN Cannot connect to broker/g) ?? []).length, 2, w.log());
  assert.match(
    finalLine(w.log()),
    /^celeriac: Cannot connect to broker redis:\/\/127\.0\.0\.1:16601\/0: .*ECONNREFUSED.*\(gave up after 3 attempts\)$/,
  );
  assert.doesNotMatch(w.log(), /ready/);
});

Deno.test("connections: a wrong Redis password fails fast (two tries) with WRONGPASS and the password hidden", async () => {
  await using redis = await startRedis(16602, ["--requirepass", "right-one"]);
  const url = `redis://:${PASSWORD}@127.0.0.1:${redis.port}/0`;
  const t0 = Date.now();
  const w = worker({ CELERIAC_BROKER_URL: url });
  const code = await exitWithin(w, 20_000);
  assert.equal(code, 1, w.log());
  assert.ok(Date.now() - t0 < 20_000);
  const log = w.log();
  assert.match(
    log,
    /WARN Cannot connect to broker redis:\/\/:\*\*\*@127\.0\.0\.1:16602\/0: WRONGPASS/,
  );
  assert.match(finalLine(log), /WRONGPASS.*authentication failed/);
  assert.equal((log.match(/WARN Cannot connect/g) ?? []).length, 1, log);
  for (const part of ["p@ss", "w%rd", PASSWORD]) assert.ok(!log.includes(part), log);
});

Deno.test("connections: no Redis password where one is required fails fast with NOAUTH", async () => {
  await using redis = await startRedis(16604, ["--requirepass", "right-one"]);
  const w = worker({ CELERIAC_BROKER_URL: redis.url() });
  const code = await exitWithin(w, 20_000);
  assert.equal(code, 1, w.log());
  assert.match(finalLine(w.log()), /NOAUTH/);
});

Deno.test("connections: rediss:// to a plain Redis port gives a clear TLS error and a non-zero exit", async () => {
  await using redis = await startRedis(16605);
  const w = worker({ CELERIAC_BROKER_URL: `rediss://127.0.0.1:${redis.port}/0` });
  await w.waitFor(
    /WARN Cannot connect to broker rediss:.*TLS handshake .* plain \(non-TLS\) port/,
    10_000,
  );
  const code = await exitWithin(w, 20_000);
  assert.equal(code, 1, w.log());
  assert.match(finalLine(w.log()), /TLS failed/);
});

Deno.test("connections: a worker with a wrong RabbitMQ password fails fast with ACCESS_REFUSED", async () => {
  const url = RABBIT.replace("guest:guest@", `guest:${encodeURIComponent(PASSWORD)}@`);
  const w = worker({ CELERIAC_BROKER_URL: url });
  const code = await exitWithin(w, 30_000);
  assert.equal(code, 1, w.log());
  const log = w.log();
  assert.match(
    log,
    /WARN Cannot connect to broker amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/\/: .*ACCESS.REFUSED/,
  );
  assert.match(finalLine(log), /ACCESS.REFUSED.*authentication failed/);
  for (const part of ["p@ss", "w%rd"]) assert.ok(!log.includes(part), log);
});

Deno.test("connections: a worker with an unreachable RabbitMQ logs ECONNREFUSED and stops on SIGTERM", async () => {
  const w = worker({ CELERIAC_BROKER_URL: UNREACHABLE_AMQP });
  await w.waitFor(
    /WARN Cannot connect to broker amqp:\/\/guest:\*\*\*@127\.0\.0\.1:16603\/\/: .*ECONNREFUSED/,
    10_000,
  );
  w.process.kill("SIGINT");
  assert.equal(await exitWithin(w, 10_000), 0, w.log());
});

Deno.test("connections: call, result, inspect and control against a bad broker print one line and exit non-zero within --timeout", async () => {
  const cases: [string, string[], RegExp][] = [
    [
      "call",
      ["call", "conn.add", "--broker", UNREACHABLE_REDIS, "--timeout", "8000"],
      /ECONNREFUSED.*timed out/,
    ],
    ["call --wait", [
      "call",
      "conn.add",
      "--args",
      "[1,2]",
      "--broker",
      UNREACHABLE_REDIS,
      "--backend",
      UNREACHABLE_REDIS,
      "--wait",
      "--timeout",
      "8000",
    ], /ECONNREFUSED/],
    [
      "result",
      ["result", "some-id", "--backend", UNREACHABLE_REDIS, "--timeout", "8000"],
      /Cannot connect to result backend.*ECONNREFUSED/,
    ],
    [
      "inspect",
      ["inspect", "ping", "--broker", UNREACHABLE_REDIS, "--timeout", "8"],
      /Cannot connect to broker.*ECONNREFUSED/,
    ],
    [
      "control",
      ["control", "shutdown", "--broker", UNREACHABLE_AMQP, "--timeout", "8"],
      /Cannot connect to broker.*ECONNREFUSED/,
    ],
    [
      "call reddis://",
      ["call", "conn.add", "--broker", "reddis://u:p@ss@127.0.0.1/0"],
      /Cannot use broker URL "reddis:\/\/u:\*\*\*@127\.0\.0\.1\/0": unknown scheme "reddis:" \(supported schemes: /,
    ],
  ];
  // One at a time: six Deno processes loading node-redis at once on a small machine take
  // longer than the timeouts under test.
  for (const [name, args, pattern] of cases) {
    const t0 = Date.now();
    const p = cli(args);
    const code = await exitWithin(p, 15_000);
    assert.notEqual(code, 0, `${name}: ${p.log()}`);
    assert.ok(Date.now() - t0 < 15_000, name);
    assert.match(finalLine(p.log()), pattern, `${name}: ${p.log()}`);
    assert.doesNotMatch(p.log(), /Closing the app failed|AggregateError/, name);
  }
});

Deno.test("connections: a worker with a mistyped scheme prints the real error, not a close error", async () => {
  const w = worker({ CELERIAC_BROKER_URL: "reddis://127.0.0.1:6379/0" });
  assert.equal(await exitWithin(w, 15_000), 1, w.log());
  assert.match(finalLine(w.log()), /Cannot use broker URL "reddis:\/\/127\.0\.0\.1:6379\/0"/);
  assert.doesNotMatch(w.log(), /closing|AggregateError/);
});

Deno.test("connections: a ready worker whose Redis went away stops on SIGTERM within 10 s", async () => {
  const redis = await startRedis(16606);
  const w = worker({ CELERIAC_BROKER_URL: redis.url(0), CELERIAC_RESULT_BACKEND: redis.url(1) }, [
    "--without-mingle",
  ]);
  try {
    await w.waitFor(/ ready/, 30_000);
    await redis.stop("SIGKILL");
    await w.waitFor(/WARN broker connection error/, 10_000);
    const t0 = Date.now();
    w.process.kill("SIGTERM");
    assert.equal(await exitWithin(w, 10_000), 0, w.log());
    assert.ok(Date.now() - t0 < 10_000);
  } finally {
    await w.stop("SIGKILL");
    await redis.stop();
  }
});
