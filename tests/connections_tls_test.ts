// rediss:// against a private redis-server with TLS (a self-signed certificate made with openssl
// in the test, SANs DNS:localhost and IP:127.0.0.1): a worker and a producer run tasks through a
// host name and through an IP with the CA from `ssl_ca_certs`; `ssl_cert_reqs=none` skips the
// check; an unknown CA is a clear TLS error and a non-zero exit; a server that requires client
// certificates accepts `ssl_certfile`/`ssl_keyfile`.
import assert from "node:assert/strict";
import { App } from "../lib/app.ts";
import { exitWithin, startRedis, worker } from "./_connections_helpers.ts";

const PORT = 16650;
const MTLS_PORT = 16651;

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

function tlsArgs(dir: string, clients: "no" | "yes"): string[] {
  return [
    "--tls-cert-file",
    `${dir}/cert.pem`,
    "--tls-key-file",
    `${dir}/key.pem`,
    "--tls-ca-cert-file",
    `${dir}/cert.pem`,
    "--tls-auth-clients",
    clients,
  ];
}

Deno.test("connections tls: rediss:// with a host name and an IP, CA from ssl_ca_certs, runs tasks end to end", async () => {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-tls-" });
  try {
    await makeCert(dir);
    await using _redis = await startRedis(PORT, tlsArgs(dir, "no"), { tls: true });
    for (const host of ["localhost", "127.0.0.1"]) {
      const q = `?ssl_ca_certs=${dir}/cert.pem`;
      const broker = `rediss://${host}:${PORT}/0${q}`;
      const backend = `rediss://${host}:${PORT}/1${q}`;
      const w = worker({ CELERIAC_BROKER_URL: broker, CELERIAC_RESULT_BACKEND: backend }, [
        "--without-mingle",
      ]);
      try {
        await w.waitFor(/ ready/, 30_000);
        await using app = new App({ broker, backend });
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => app.sendTask("conn.add", [i, 1])),
        );
        const values = await Promise.all(results.map((r) => r.get({ timeout: 20_000 })));
        assert.deepEqual(values, Array.from({ length: 20 }, (_, i) => i + 1), host);
      } finally {
        await w.stop("SIGTERM");
      }
    }
    // Verification off: the self-signed certificate is accepted without its CA.
    await using app = new App({
      broker: `rediss://127.0.0.1:${PORT}/0?ssl_cert_reqs=none`,
      backend: "memory://",
    });
    await app.getBroker();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connections tls: an unknown CA is a clear TLS error and a non-zero exit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-tls-" });
  try {
    await makeCert(dir);
    await using _redis = await startRedis(PORT + 2, tlsArgs(dir, "no"), { tls: true });
    const w = worker({ CELERIAC_BROKER_URL: `rediss://localhost:${PORT + 2}/0` });
    await w.waitFor(
      /WARN Cannot connect to broker rediss:\/\/localhost:16652\/0: .*certificate/,
      10_000,
    );
    assert.equal(await exitWithin(w, 20_000), 1, w.log());
    assert.match(w.log(), /celeriac: Cannot connect to broker .*TLS failed/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connections tls: a server that requires client certificates accepts ssl_certfile and ssl_keyfile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "celeriac-tls-" });
  try {
    await makeCert(dir);
    await using _redis = await startRedis(MTLS_PORT, tlsArgs(dir, "yes"), { tls: true });
    const base = `rediss://127.0.0.1:${MTLS_PORT}/0?ssl_ca_certs=${dir}/cert.pem`;
    {
      await using app = new App({
        broker: `${base}&ssl_certfile=${dir}/cert.pem&ssl_keyfile=${dir}/key.pem`,
        backend: "memory://",
      });
      await app.getBroker();
    }
    await using app = new App({
      broker: base,
      backend: "memory://",
      brokerConnectionMaxRetries: 1,
    });
    await assert.rejects(() => app.getBroker(), /Cannot connect to broker/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
