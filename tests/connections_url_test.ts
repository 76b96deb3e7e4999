// Credentials read with `URL` whatever characters the password holds, redaction that hides
// them all, the retry loop's sorting of failures, and App.close() after a failed creation.
import assert from "node:assert/strict";
import { parseUrl, redact } from "../lib/_url.ts";
import { redact as redactFromConnect } from "../lib/connect.ts";
import { parseRedisUrl, tlsSocketOptions } from "../lib/_redis.ts";
import { parseAmqpUrl } from "../lib/brokers/_amqp_connection.ts";
import {
  classifyConnectError,
  ConnectionFailedError,
  connectWithRetry,
} from "../lib/_connect_retry.ts";
import { App } from "../lib/app.ts";

const PASSWORDS = [
  "plain",
  "p@ss",
  "p@ss@word",
  "pa:ss",
  "p%ss",
  "100%",
  "a%40b",
  "p/ss",
  "p?ss#x",
  "@:%/?#",
  "é@ü:%",
];

Deno.test("redact() hides passwords with @, :, %, / and more, raw or percent-encoded", () => {
  for (const password of PASSWORDS) {
    for (const pw of [password, encodeURIComponent(password)]) {
      for (const scheme of ["redis", "rediss", "amqp", "amqps"]) {
        const url = `${scheme}://user:${pw}@host.example:1234/0`;
        const hidden = redact(url);
        assert.equal(hidden, `${scheme}://user:***@host.example:1234/0`, url);
        assert.ok(!hidden.includes(pw), url);
      }
      assert.equal(redact(`redis://:${pw}@h/1`), "redis://:***@h/1");
    }
  }
  assert.equal(redact("redis://h:6379/0"), "redis://h:6379/0");
  assert.equal(redact("redis://user@h/0"), "redis://user@h/0");
  assert.equal(redact("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
  assert.equal(redact("memory://"), "memory://");
  assert.equal(redact("not a url"), "not a url");
  assert.equal(redactFromConnect("redis://:x@y@h/0"), "redis://:***@h/0");
});

Deno.test("parseUrl() and the Redis and AMQP parsers read raw and encoded credentials", () => {
  for (const password of PASSWORDS) {
    for (const pw of [password, encodeURIComponent(password)]) {
      const { url, username, password: got } = parseUrl(`redis://us%40er:${pw}@cache:6380/2`);
      assert.equal(username, "us@er");
      assert.equal(url.hostname, "cache");
      assert.equal(url.port, "6380");
      // A raw `%XX` run is read as an escape (as Celery/kombu do), a stray `%` as itself.
      const expected = pw === password && /%[0-9a-f]{2}/i.test(password)
        ? decodeURIComponent(password)
        : password;
      assert.equal(got, expected, pw);
      const r = parseRedisUrl(`rediss://:${pw}@cache:6380/2`);
      assert.deepEqual([r.host, r.port, r.db, r.tls, r.password], [
        "cache",
        6380,
        2,
        true,
        expected,
      ]);
      const a = parseAmqpUrl(`amqps://u:${pw}@10.0.0.1/vh`);
      assert.deepEqual([a.hostname, a.port, a.password, a.vhost], [
        "10.0.0.1",
        5671,
        expected,
        "vh",
      ]);
    }
  }
  assert.equal(parseAmqpUrl("amqp://h//").vhost, "/");
  assert.equal(parseAmqpUrl("amqp://h").username, "guest");
});

Deno.test("parseRedisUrl() reads kombu's ssl_* and socket_connect_timeout query parameters", () => {
  const u = parseRedisUrl(
    "rediss://h:1/0?ssl_cert_reqs=CERT_NONE&ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&socket_connect_timeout=2.5",
  );
  assert.deepEqual(u.tlsOptions, {
    verify: false,
    caFile: "/ca.pem",
    certFile: "/c.pem",
    keyFile: "/k.pem",
  });
  assert.equal(u.connectTimeout, 2500);
  assert.equal(parseRedisUrl("rediss://h/0?ssl_cert_reqs=required").tlsOptions?.verify, true);
  assert.throws(() => parseRedisUrl("rediss://h/0?ssl_cert_reqs=maybe"), TypeError);
  // The server name goes only with a host name, never an IP.
  assert.equal(tlsSocketOptions("127.0.0.1", {}).servername, undefined);
  assert.equal(tlsSocketOptions("::1", {}).servername, undefined);
  assert.equal(tlsSocketOptions("cache.example", {}).servername, "cache.example");
});

Deno.test("classifyConnectError() tells auth, TLS and configuration failures from transient ones", () => {
  const coded = (message: string, code: string) => Object.assign(new Error(message), { code });
  assert.equal(classifyConnectError(new Error("WRONGPASS invalid username-password pair")), "auth");
  assert.equal(classifyConnectError(new Error("NOAUTH Authentication required.")), "auth");
  assert.equal(
    classifyConnectError(new Error("Handshake terminated by server: 403 (ACCESS-REFUSED)")),
    "auth",
  );
  assert.equal(
    classifyConnectError(coded("self-signed certificate", "DEPTH_ZERO_SELF_SIGNED_CERT")),
    "tls",
  );
  assert.equal(
    classifyConnectError(coded("connect ECONNREFUSED 127.0.0.1:1", "ECONNREFUSED")),
    "transient",
  );
  assert.equal(classifyConnectError(new TypeError("bad URL")), "config");
  assert.equal(classifyConnectError(new AggregateError([coded("x", "ECONNREFUSED")])), "transient");
});

Deno.test("connectWithRetry() logs each failure with the next delay, backs off with jitter and stops at the limit", async () => {
  const lines: string[] = [];
  let attempts = 0;
  const error = await connectWithRetry(() => {
    attempts++;
    return Promise.reject(
      Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
    );
  }, {
    what: "broker",
    url: "redis://:***@h/0",
    maxRetries: 3,
    interval: 20,
    logger: { warn: (m) => lines.push(m) },
  }).catch((e) => e);
  assert.ok(error instanceof ConnectionFailedError);
  assert.equal(attempts, 4);
  assert.equal(lines.length, 3);
  assert.match(
    error.message,
    /^Cannot connect to broker redis:\/\/:\*\*\*@h\/0: connect ECONNREFUSED \(gave up after 4 attempts\)$/,
  );
  const delays = lines.map((l) => Number(/Trying again in (\d+\.\d+) s/.exec(l)![1]) * 1000);
  // Doubling bases 20, 40, 80 ms with jitter in [base/2, base].
  delays.forEach((d, i) => {
    const base = 20 * 2 ** i;
    assert.ok(d >= base / 2 - 5 && d <= base + 5, `${d} for base ${base}`);
  });
  assert.match(lines[0]!, /\(attempt 1 of 4\)$/);
});

Deno.test("connectWithRetry() gives an auth failure one retry and a configuration error none", async () => {
  let attempts = 0;
  const auth = await connectWithRetry(() => {
    attempts++;
    return Promise.reject(new Error("WRONGPASS invalid password"));
  }, { what: "broker", url: "u", interval: 1 }).catch((e) => e);
  assert.equal(attempts, 2);
  assert.match(auth.message, /authentication failed/);
  attempts = 0;
  await connectWithRetry(() => {
    attempts++;
    return Promise.reject(new TypeError("bad"));
  }, { what: "broker", url: "u", interval: 1 }).catch(() => {});
  assert.equal(attempts, 1);
});

Deno.test("connectWithRetry() stops at once when its signal aborts, and bounds each attempt", async () => {
  const controller = new AbortController();
  const t0 = Date.now();
  setTimeout(() => controller.abort(new Error("stop")), 50);
  const stopped = await connectWithRetry(
    (signal) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    { what: "broker", url: "u", timeout: 10_000, signal: controller.signal },
  ).catch((e) => e);
  assert.equal(stopped.message, "stop");
  assert.ok(Date.now() - t0 < 1000);
  const slow = await connectWithRetry(
    (signal) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    { what: "broker", url: "u", timeout: 30, retry: false },
  ).catch((e) => e);
  assert.match(slow.message, /no connection within 30 ms/);
});

Deno.test("App.close() does not throw again after the broker could not be made", async () => {
  const app = new App({ broker: "reddis://u:p@ss@h/0", backend: "memory://" });
  await assert.rejects(() => app.getBroker(), /Cannot use broker URL "reddis:\/\/u:\*\*\*@h\/0"/);
  await app.close();
});
