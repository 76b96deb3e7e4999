// The SQS emulator process the tests start, on 127.0.0.1, on the first free port of the range
// given as arguments; prints `listening <port>` once it accepts connections.
// - `fauxqs` (default): npm's fauxqs, JSON protocol only; long polls return as soon as a
//   message is there, as on AWS.
// - `local-aws-sqs`: npm's local-aws-sqs, which also speaks the query protocol that Debian's
//   botocore 1.29 (and kombu 5.2's pycurl client) use, for the Python interop tests. Its long
//   polls last the whole wait unless MaxNumberOfMessages arrive, so tests give it short waits.
//   AWS also takes a query request addressed by its path (POST /<account>/<queue>, no
//   QueueUrl parameter; GET with the parameters in the URL), which kombu 5.2's async client
//   sends and local-aws-sqs does not read: `queryByPath` moves those into the form body.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { Buffer } from "node:buffer";
import { createRequestHandler } from "local-aws-sqs";
import { buildApp } from "fauxqs";

const [kind = "fauxqs", from = "16500", to = "16599"] = Deno.args;

async function listenFauxqs(port: number): Promise<boolean> {
  const app = buildApp({ logger: false });
  try {
    await app.listen({ port, host: "127.0.0.1" });
    return true;
  } catch {
    await app.close().catch(() => {});
    return false;
  }
}

async function listenLocal(port: number): Promise<boolean> {
  const { requestHandler, service } = createRequestHandler({
    port,
    hostname: "127.0.0.1",
    emulateQueueCreationLifecycle: false,
    validateDlqDestination: false,
  });
  const server = createServer(queryByPath(requestHandler, port));
  const ok = await new Promise<boolean>((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => resolve(true));
  });
  if (ok) service.PORT = port;
  else server.close();
  return ok;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown;

function queryByPath(handler: Handler, port: number): Handler {
  return (req, res) => {
    if (String(req.headers["content-type"] ?? "").includes("x-amz-json")) {
      return handler(req, res);
    }
    const url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", () => {
      const form = new URLSearchParams(new TextDecoder().decode(Buffer.concat(chunks)));
      for (const [k, v] of url.searchParams) if (!form.has(k)) form.set(k, v);
      if (/^\/[^/]+\/[^/]+$/.test(url.pathname) && !form.has("QueueUrl")) {
        form.set("QueueUrl", `${url.origin}${url.pathname}`);
      }
      const body = Buffer.from(form.toString());
      const copy = Object.assign(Readable.from([body]), {
        headers: {
          ...req.headers,
          "content-type": "application/x-www-form-urlencoded",
          "content-length": String(body.length),
        },
        method: "POST",
        url: url.pathname,
      });
      handler(copy as unknown as IncomingMessage, res);
    });
  };
}

// The test process holds our stdin: when it ends (even by a crash), so do we.
(async () => {
  for await (const _ of Deno.stdin.readable) { /* nothing is sent */ }
  Deno.exit(0);
})();

for (let port = Number(from); port <= Number(to); port++) {
  if (await (kind === "fauxqs" ? listenFauxqs(port) : listenLocal(port))) {
    await Deno.stdout.write(new TextEncoder().encode(`listening ${port}\n`));
    break;
  }
}
