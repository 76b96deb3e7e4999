// The SQS emulator process the tests start, on 127.0.0.1, on the first free port of the range
// given as arguments; prints `listening <port>` once it accepts connections.
// - `fauxqs` (default): npm's fauxqs, JSON protocol only; long polls return as soon as a
//   message is there, as on AWS.
// - `local-aws-sqs`: npm's local-aws-sqs, which also speaks the query protocol that Debian's
//   botocore 1.29 (and kombu 5.2's pycurl client) use, for the Python interop tests. Its long
//   polls last the whole wait unless MaxNumberOfMessages arrive, so tests give it short waits.
import { createServer } from "node:http";
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
  const server = createServer(requestHandler);
  const ok = await new Promise<boolean>((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => resolve(true));
  });
  if (ok) service.PORT = port;
  else server.close();
  return ok;
}

for (let port = Number(from); port <= Number(to); port++) {
  if (await (kind === "fauxqs" ? listenFauxqs(port) : listenLocal(port))) {
    await Deno.stdout.write(new TextEncoder().encode(`listening ${port}\n`));
    break;
  }
}
