// The fuzz suite of "one delivery, one fate": thousands of malformed messages of many kinds,
// interleaved with good tasks, go to a real `cli.ts worker` process on Redis and on Deno KV.
// At the end the worker is alive, every good task ran, every bad message settled (dead-letter
// queue with a logged reason, or a stored result), nothing is left unacked, and the worker's
// peak RSS is reported (and bounded).
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { encodeTask, type Message } from "../lib/protocol/message.ts";
import { toKombuEnvelope } from "../lib/protocol/kombu.ts";
import { rawClient, REDIS, sleep } from "./_redis_helpers.ts";

const GOOD = 1000;
const BAD = Number(Deno.env.get("CELERIAC_FUZZ_BAD") ?? 5000);

/** Where a message must end up. */
type Fate = "dlq" | "result" | "dlq+result" | "eta";

interface Case {
  kind: string;
  fate: Fate;
  /** The task id whose result must be stored (fates with a result). */
  id?: string;
  /** A well-formed message, possibly with bad fields. */
  message?: Message;
  /** Raw bytes for the broker's own storage (Redis: the list entry; KV: the entry value). */
  raw?: string;
  /** Only on this broker. */
  only?: "redis" | "kv";
}

// A small deterministic PRNG (mulberry32), so a failing run can be replayed.
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function task(
  name: string,
  args: unknown[],
  extra: Partial<Parameters<typeof encodeTask>[0]> = {},
) {
  const id = crypto.randomUUID();
  return { id, message: encodeTask({ id, name, args, kwargs: {}, ...extra }) };
}

function withHeaders(m: Message, headers: Record<string, unknown>): Message {
  return { ...m, headers: { ...m.headers, ...headers } };
}

function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

// Each kind builds one malformed (or hostile but valid) message. Bodies with big ints are
// written as text, as a Python client would send them.
const KINDS: ((random: () => number) => Case)[] = [
  (random) => ({
    kind: "random bytes",
    fate: "dlq",
    raw: Array.from(
      { length: 1 + Math.floor(random() * 200) },
      () => String.fromCharCode(Math.floor(random() * 256)),
    ).join(""),
  }),
  () => {
    const { message } = task("fuzz.good", [1]);
    const text = JSON.stringify(toKombuEnvelope(message, { queue: "q" }));
    return { kind: "truncated envelope", fate: "dlq", raw: text.slice(0, text.length >> 1) };
  },
  () => {
    const { message } = task("fuzz.good", [1]);
    const env = toKombuEnvelope(message, { queue: "q" });
    return {
      kind: "bad base64",
      fate: "dlq",
      only: "redis",
      raw: JSON.stringify({ ...env, body: "%%%not base64!!" }),
    };
  },
  () => ({
    kind: "truncated JSON body",
    fate: "dlq",
    message: { ...task("fuzz.good", [1]).message, body: '[[1], {"a": ' },
  }),
  () => {
    const { message } = task("fuzz.good", [1]);
    return {
      kind: "headers not a mapping",
      fate: "dlq",
      message: { ...message, headers: [1, 2] as never },
    };
  },
  () => {
    const { message } = task("fuzz.good", [1]);
    const { task: _name, ...headers } = message.headers;
    return { kind: "missing task name", fate: "dlq", message: { ...message, headers } };
  },
  () => ({
    kind: "retries not a number",
    fate: "dlq",
    message: withHeaders(task("fuzz.good", [1]).message, { retries: "many" }),
  }),
  () => ({
    kind: "eta not a date",
    fate: "dlq",
    message: withHeaders(task("fuzz.good", [1]).message, { eta: { when: "soon" } }),
  }),
  () => ({
    kind: "expires not a date",
    fate: "dlq",
    message: withHeaders(task("fuzz.good", [1]).message, { expires: [1] }),
  }),
  () => ({
    kind: "negative timelimit",
    fate: "dlq",
    message: withHeaders(task("fuzz.good", [1]).message, { timelimit: [-5, "soft"] }),
  }),
  () => {
    const t = task("fuzz.good", [1]);
    return {
      kind: "eta in year 9999",
      fate: "eta",
      id: t.id,
      message: withHeaders(t.message, { eta: "9999-12-31T23:59:59+00:00" }),
    };
  },
  () => {
    const t = task("fuzz.good", [7]);
    return {
      kind: "negative countdown",
      fate: "result",
      id: t.id,
      message: withHeaders(t.message, { eta: "1970-01-02T00:00:00+00:00" }),
    };
  },
  () => {
    const t = task("fuzz.depth", [nested(3000)]);
    return { kind: "args nested 3,000 deep", fate: "result", ...t };
  },
  () => ({ kind: "cyclic return value", fate: "result", ...task("fuzz.cyclic", []) }),
  () => {
    const t = task("fuzz.echo", [0]);
    const body =
      `[[123456789012345678901234567890], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`;
    return {
      kind: "int above 2^53 in args",
      fate: "result",
      id: t.id,
      message: { ...t.message, body },
    };
  },
  () => {
    const t = task("fuzz.fail", [1]);
    const errback =
      `{"task": "fuzz.errback", "args": [100000000000000000000000], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}`;
    const body =
      `[[1], {}, {"callbacks": null, "errbacks": [${errback}], "chain": null, "chord": null}]`;
    return {
      kind: "int above 2^53 in errbacks",
      fate: "result",
      id: t.id,
      message: { ...t.message, body },
    };
  },
  () => {
    const t = task("fuzz.good", [1]);
    return {
      kind: "pickle content type",
      fate: "dlq",
      message: {
        ...t.message,
        contentType: "application/x-python-serialize",
        body: "\x80\x04K\x01.",
      },
    };
  },
  () => {
    const t = task("fuzz.good", [5]);
    const gz = gzipSync(new TextEncoder().encode(t.message.body));
    return {
      kind: "gzip body",
      fate: "result",
      id: t.id,
      message: withHeaders(
        { ...t.message, contentEncoding: "binary", body: String.fromCharCode(...gz) },
        { compression: "application/x-gzip" },
      ),
    };
  },
  () => {
    const t = task("fuzz.good", [5]);
    return {
      kind: "bzip2 body",
      // Headers are readable: the worker stores a FAILURE for the id, then dead-letters.
      fate: "dlq+result",
      id: t.id,
      message: withHeaders(t.message, { compression: "application/x-bz2" }),
    };
  },
  () => {
    const t = task("fuzz.\u001b[31mevil\nINFO forged line\r", [1]);
    return { kind: "control characters in name", fate: "dlq+result", ...t };
  },
  () => ({ kind: "unknown task", fate: "dlq+result", ...task("fuzz.nope", [1]) }),
];

interface Plan {
  /** In publish order. */
  items: Case[];
  good: string[];
}

function plan(broker: "redis" | "kv", seed: number): Plan {
  const random = rng(seed);
  const kinds = KINDS.map((make) => make).filter((make) => {
    const sample = make(rng(1));
    return !sample.only || sample.only === broker;
  });
  const bad: Case[] = [];
  for (let i = 0; i < BAD; i++) bad.push(kinds[i % kinds.length]!(random));
  // A duplicate task id: the same message twice; it runs at least once.
  const dup = task("fuzz.good", [42]);
  bad.push({ kind: "duplicate id", fate: "result", ...dup }, {
    kind: "duplicate id",
    fate: "result",
    ...dup,
  });
  if (broker === "redis") {
    const big = task("fuzz.len", ["x".repeat(20 * 1024 * 1024)]);
    bad.push({ kind: "20 MB body", fate: "result", ...big });
  }
  const good: string[] = [];
  const items: Case[] = [];
  let b = 0;
  for (let i = 0; i < GOOD; i++) {
    const t = task("fuzz.good", [i]);
    good.push(t.id);
    items.push({ kind: "good", fate: "result", ...t });
    const n = Math.ceil((bad.length - b) / (GOOD - i));
    for (let j = 0; j < n; j++) items.push(bad[b++]!);
  }
  return { items, good };
}

function spawnWorker(env: Record<string, string>, queue: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli.ts", import.meta.url).pathname,
      "worker",
      "--app",
      new URL("./apps/fuzz_app.ts", import.meta.url).pathname,
      "-Q",
      queue,
      "--pool",
      "inline",
      "-c",
      "20",
      "-E",
      "--without-mingle",
      "-l",
      "info",
    ],
    env: { ...env, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  const reading = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (log += chunk) }),
  );
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    pid: child.pid,
    log: () => log,
    alive: () => !exited,
    async stop() {
      if (!exited) child.kill("SIGTERM");
      const s = await status;
      await reading.catch(() => {});
      return s;
    },
  };
}

function peakRssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

const TERMINAL = new Set(["SUCCESS", "FAILURE", "REVOKED"]);

async function until(
  what: string,
  check: () => Promise<boolean>,
  worker: { log(): string; alive(): boolean },
) {
  const end = Date.now() + 120_000;
  while (!(await check())) {
    if (!worker.alive()) throw new Error(`The worker died:\n${worker.log().slice(-3000)}`);
    if (Date.now() > end) {
      throw new Error(`Timed out waiting for ${what}:\n${worker.log().slice(-3000)}`);
    }
    await sleep(250);
  }
}

function expectations(p: Plan) {
  const results = new Set<string>();
  let dlq = 0;
  let eta = 0;
  for (const c of p.items) {
    if ((c.fate === "result" || c.fate === "dlq+result") && c.id) results.add(c.id);
    if (c.fate === "dlq" || c.fate === "dlq+result") dlq++;
    if (c.fate === "eta") eta++;
  }
  return { results: [...results], dlq, eta };
}

function report(broker: string, p: Plan, rss: number, ms: number) {
  const kinds = new Set(p.items.map((c) => c.kind)).size;
  // deno-lint-ignore no-console
  console.log(
    `fuzz ${broker}: ${p.items.length - GOOD} bad messages of ${kinds - 1} kinds + ${GOOD} good ` +
      `settled in ${ms} ms; worker peak RSS ${(rss / 1024).toFixed(0)} MiB`,
  );
}

Deno.test("fuzz (redis): malformed messages of every kind settle, good tasks run, the worker lives", async () => {
  const prefix = `fuzz-${crypto.randomUUID().slice(0, 8)}:`;
  const queue = "fuzz";
  const backendUrl = "redis://127.0.0.1:6379/1";
  const p = plan("redis", 1);
  const want = expectations(p);
  const client = await rawClient(REDIS);
  const results = await rawClient(backendUrl);
  const worker = spawnWorker({
    CELERIAC_BROKER_URL: REDIS,
    CELERIAC_RESULT_BACKEND: backendUrl,
    CELERIAC_TEST_PREFIX: prefix,
  }, queue);
  const started = Date.now();
  try {
    for (let i = 0; i < p.items.length; i += 200) {
      const batch = p.items.slice(i, i + 200).map((c) =>
        c.raw ?? JSON.stringify(toKombuEnvelope(c.message!, { queue }))
      );
      await client.lPush(`${prefix}${queue}`, batch);
    }
    const meta = async (id: string) => {
      const text = await results.get(`celery-task-meta-${id}`);
      return text ? JSON.parse(text) as { status: string; result: unknown } : null;
    };
    await until("every result", async () => {
      const texts = await results.mGet(
        want.results.map((id) => `celery-task-meta-${id}`),
      );
      return texts.every((t) => t !== null && TERMINAL.has(JSON.parse(t).status));
    }, worker);
    await until(
      "every dead letter",
      async () => (await client.lLen(`${prefix}${queue}.dlq`)) >= want.dlq,
      worker,
    );
    await until(
      "nothing unacked",
      async () => (await client.hLen(`${prefix}unacked`)) === 0,
      worker,
    );
    const ms = Date.now() - started;
    assert(worker.alive(), `the worker died:\n${worker.log().slice(-3000)}`);
    for (const id of p.good) assert.equal((await meta(id))?.status, "SUCCESS");
    assert.equal(await client.lLen(`${prefix}${queue}.dlq`), want.dlq);
    assert.equal(await client.zCard(`${prefix}celeriac.eta`), want.eta);
    // Each dead letter logged one line with its reason; no control character reached the log.
    const lines = worker.log().split("\n");
    const logged = lines.filter((l) => / dead-lettered(?: by the broker)?: /.test(l)).length;
    assert(
      logged >= want.dlq,
      `${logged} dead-letter lines for ${want.dlq}:\n${worker.log().slice(-2000)}`,
    );
    assert(!lines.some((l) => l.startsWith("INFO forged line")), "a task name forged a log line");
    assert(!worker.log().includes("\u001b[31m"), "a raw escape sequence reached the log");
    // Hostile values come back as what they were.
    const bigint = p.items.find((c) => c.kind === "int above 2^53 in args")!;
    assert(
      (await results.get(`celery-task-meta-${bigint.id}`))!.includes(
        "123456789012345678901234567890",
      ),
    );
    assert.equal(
      (await meta(p.items.find((c) => c.kind === "args nested 3,000 deep")!.id!))?.result,
      3000,
    );
    const cyclic = await meta(p.items.find((c) => c.kind === "cyclic return value")!.id!);
    assert.equal(cyclic?.status, "FAILURE");
    assert.equal(
      (await meta(p.items.find((c) => c.kind === "20 MB body")!.id!))?.result,
      20 * 1024 * 1024,
    );
    const rss = peakRssKiB(worker.pid);
    report("redis", p, rss, ms);
    assert(rss < 2 * 1024 * 1024, `worker peak RSS ${rss} KiB`);
    assert.equal((await worker.stop()).code, 0);
  } finally {
    await worker.stop();
    for await (const key of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
      await client.del(key);
    }
    await client.disconnect();
    await results.disconnect();
  }
});

Deno.test("fuzz (kv): malformed messages of every kind settle, good tasks run, the worker lives", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/fuzz.kv`;
  const url = `kv://${path}`;
  const queue = "fuzz";
  const p = plan("kv", 2);
  const want = expectations(p);
  const { KvBroker } = await import("../lib/brokers/kv.ts");
  const broker = new KvBroker(url);
  const worker = spawnWorker({ CELERIAC_BROKER_URL: url, CELERIAC_RESULT_BACKEND: url }, queue);
  const kv = await Deno.openKv(path);
  const started = Date.now();
  try {
    for (const c of p.items) {
      if (c.message) await broker.publish(queue, c.message);
      else {
        // Raw garbage where an entry should be, as a foreign writer could leave it.
        const key = ["celeriac", "q", queue, "ready", 9, Date.now() * 1000, crypto.randomUUID()];
        await kv.set(key, c.raw ?? "");
      }
    }
    const count = async (kind: string) => {
      let n = 0;
      for await (const _ of kv.list({ prefix: ["celeriac", "q", queue, kind] })) n++;
      return n;
    };
    const { App } = await import("../mod.ts");
    const reader = new App({ broker: url, backend: url });
    try {
      const backend = await reader.getBackend();
      await until("every result", async () => {
        for (const id of want.results) {
          const m = await backend.get(id);
          if (!m || !TERMINAL.has(m.status)) return false;
        }
        return true;
      }, worker);
      await until("every dead letter", async () => (await count("dead")) >= want.dlq, worker);
      await until("nothing leased", async () => (await count("lease")) === 0, worker);
      const ms = Date.now() - started;
      assert(worker.alive(), `the worker died:\n${worker.log().slice(-3000)}`);
      for (const id of p.good) assert.equal((await backend.get(id))?.status, "SUCCESS");
      assert.equal(await count("dead"), want.dlq);
      assert.equal(await count("delayed"), want.eta);
      assert.equal(
        (await backend.get(p.items.find((c) => c.kind === "cyclic return value")!.id!))?.status,
        "FAILURE",
      );
      const rss = peakRssKiB(worker.pid);
      report("kv", p, rss, ms);
      assert(rss < 2 * 1024 * 1024, `worker peak RSS ${rss} KiB`);
      assert.equal((await worker.stop()).code, 0);
    } finally {
      await reader.close();
    }
  } finally {
    await worker.stop();
    kv.close();
    await broker.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
