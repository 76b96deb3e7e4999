// Stamps and compressed bodies with Debian's Python Celery 5.2.6 over Redis. Celery 5.2 has
// no stamping API, but a 5.2 client sends any header through `apply_async(headers=...)` and
// any signature option through `.set()`, which is all a 5.6 stamped chain is on the wire
// (the first message's `stamped_headers`/`stamps` headers, the stamps in each embedded
// step's options); and a 5.2 worker's `self.request` holds every header it received.
import assert from "node:assert/strict";
import { App, chain, signature, type TaskContext } from "@celeriac/celeriac";
import { startWorker } from "./_helpers.ts";
import { pythonWorker, REDIS, REDIS_BACKEND, runPython, unique } from "./_control_helpers.ts";

// The last line a Python snippet printed.
async function python(code: string, queue: string): Promise<string> {
  const out = await runPython(`import sys\nsys.path.insert(0, ".")\n${code}`, { queue });
  return out.trim().split("\n").at(-1)!;
}

function stampApp(queue: string) {
  const app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("st.seen", function (this: TaskContext, x: number) {
    return { x, stamps: this.stamps };
  });
  return app;
}

// A celeriac worker on its queue and a ready Python worker on another, stopped at the end.
async function stampPeers() {
  const tsq = unique("stamps-ts");
  const pyq = unique("stamps-py");
  const app = stampApp(tsq);
  const worker = startWorker(app, { pool: "inline", queues: [tsq], heartbeatInterval: 0 });
  const py = pythonWorker(`${unique("py")}@${Deno.hostname()}`, pyq);
  await py.waitFor("ready.", 30_000);
  return {
    tsq,
    pyq,
    app,
    py,
    async [Symbol.asyncDispose]() {
      await py.stop();
      await worker.stop();
      await app.close();
    },
  };
}

Deno.test("a Python-sent stamped chain run by a celeriac worker sends its next step with the stamps", async () => {
  await using peers = await stampPeers();
  const { tsq, pyq, py } = peers;
  // What Celery 5.6's `chain(...).stamp(mon="py")` puts on the wire, sent by a 5.2 client.
  const out = await python(
    `
import json
from celery import chain, signature
from control_app import app
first = signature("st.seen", args=(1,), queue="${tsq}")
second = signature("py.request_stamps", queue="${pyq}").set(stamped_headers=["mon"], mon="py")
r = chain(first, second).apply_async(headers={"stamped_headers": ["mon"], "stamps": {"mon": "py"}})
print(json.dumps(r.get(timeout=30)))
`,
    pyq,
  );
  const got = JSON.parse(out);
  // The celeriac run saw the stamps; the step it sent reached Python with both headers.
  assert.deepEqual(got.prev, { x: 1, stamps: { mon: "py" } });
  assert.deepEqual(got.stamped_headers, ["mon"]);
  assert.deepEqual(got.stamps, { mon: "py" });
  await py.stop();
});

Deno.test("a celeriac client's stamped chain reaches a Python worker with the stamp headers", async () => {
  await using peers = await stampPeers();
  const { tsq, pyq, app, py } = peers;
  const c = chain(
    signature("st.seen", [2], {}, { queue: tsq }),
    signature("py.request_stamps", [], {}, { queue: pyq }),
  ).stamp({ mon: "ts", tags: ["a", "b"] });
  const r = await c.applyAsync([], {}, { app });
  const got = await r.get({ timeout: 30_000 }) as Record<string, unknown>;
  assert.deepEqual(got.prev, { x: 2, stamps: { mon: "ts", tags: ["a", "b"] } });
  assert.deepEqual(got.stamped_headers, ["mon", "tags"]);
  assert.deepEqual(got.stamps, { mon: "ts", tags: ["a", "b"] });
  await py.stop();
});

Deno.test("a Python client's compression='bzip2' task on a celeriac worker fails at once with a clear error", async () => {
  const tsq = unique("bz2-ts");
  await using app = stampApp(tsq);
  await using _w = startWorker(app, { pool: "inline", queues: [tsq], heartbeatInterval: 0 });
  const out = await python(
    `
import json
from control_app import app
r = app.send_task("st.seen", args=(3,), queue="${tsq}", compression="bzip2")
try:
    r.get(timeout=20)
    print(json.dumps({"ok": True}))
except Exception as e:
    print(json.dumps({"type": type(e).__name__, "module": type(e).__module__, "text": str(e)}))
`,
    tsq,
  );
  const got = JSON.parse(out);
  assert.equal(got.type, "DecodeError", out);
  assert.equal(got.module, "kombu.exceptions", out);
  assert.match(got.text, /compressed with bzip2, which celeriac workers cannot decompress/);
  assert.match(got.text, /supported: gzip, zlib, brotli/);
});
