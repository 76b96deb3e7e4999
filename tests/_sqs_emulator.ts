// A local SQS emulator for the tests: npm's local-aws-sqs in its own Deno process, bound to
// 127.0.0.1 on a free port of 16500-16599 (this suite's range). It answers both the JSON
// protocol (celeriac) and the query protocol (Debian's boto3 1.26 / kombu 5.2 with pycurl).
//
// `sqsEmulator()` starts one process per test file at module load (before any test, so the
// sanitizers do not count it) and kills it when the file's tests are done.

const MAIN = new URL("./_sqs_emulator_main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** Which emulator: fauxqs (JSON protocol) or local-aws-sqs (JSON and query protocols). */
export type SqsEmulatorKind = "fauxqs" | "local-aws-sqs";

/** A running emulator. */
export interface SqsEmulator {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** The port. */
  port: number;
  /** The process. */
  process: Deno.ChildProcess;
  /** Kills the process; idempotent. */
  stop(): void;
}

/**
 * Starts an emulator process.
 *
 * @param range First and last port to try.
 * @returns The emulator, once it accepts connections.
 */
export async function startSqsEmulator(
  kind: SqsEmulatorKind = "fauxqs",
  range: [number, number] = [16500, 16599],
): Promise<SqsEmulator> {
  // Start at a random port of the range, so test files started together rarely collide.
  const [lo, hi] = range;
  const start = lo + Math.floor(Math.random() * (hi - lo + 1));
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "--config", CONFIG, MAIN, kind, String(start), String(hi)],
    stdout: "piped",
    stderr: "inherit",
    // The emulator exits when this pipe closes, so a crashed test leaves no server behind.
    stdin: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let port = 0;
  const timer = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch { /* gone */ }
  }, 30_000);
  try {
    while (!port) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const m = /listening (\d+)/.exec(text);
      if (m) port = Number(m[1]);
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  if (!port) {
    await process.status;
    if (start > lo) return startSqsEmulator(kind, [lo, start - 1]);
    throw new Error(`The SQS emulator did not start: ${text}`);
  }
  let stopped = false;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    process,
    stop() {
      if (stopped) return;
      stopped = true;
      try {
        process.kill("SIGKILL");
      } catch { /* gone */ }
    },
  };
}

const shared = new Map<SqsEmulatorKind, Promise<SqsEmulator>>();

/**
 * The test file's emulator of a kind, started once; killed when the file's tests end.
 *
 * @param kind Which emulator.
 * @returns The emulator.
 */
export function sqsEmulator(kind: SqsEmulatorKind = "fauxqs"): Promise<SqsEmulator> {
  let e = shared.get(kind);
  if (!e) {
    shared.set(
      kind,
      e = startSqsEmulator(kind).then((e) => {
        globalThis.addEventListener("unload", () => e.stop());
        return e;
      }),
    );
  }
  return e;
}

/** A queue name unique to this run (SQS names: letters, digits, - and _, at most 80). */
export function uniqueQueue(prefix = "t"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 13)}`;
}

/** Credentials the emulator accepts (it does not check signatures). */
export const TEST_KEY = "celeriac";
/** The secret of {@linkcode TEST_KEY}. */
export const TEST_SECRET = "celeriac-secret";

/** An `sqs://` URL that reaches the emulator. */
export function emulatorUrl(e: SqsEmulator): string {
  return `sqs://${TEST_KEY}:${TEST_SECRET}@127.0.0.1:${e.port}`;
}
