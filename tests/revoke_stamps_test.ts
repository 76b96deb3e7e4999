// Celery 5.3+'s `revoke_by_stamped_headers`: the worker discards tasks carrying a revoked stamp
// value at admission (stored REVOKED, task-revoked, acked), and with terminate stops the running
// ones; the client calls (Control, App, AsyncResult) broadcast it.
import assert from "node:assert/strict";
import { App, type TaskContext } from "@celeriac/celeriac";
import { eventually, startWorker } from "./_helpers.ts";
import { cli, REDIS, REDIS_BACKEND, unique } from "./_control_helpers.ts";
import { matchStamps, readRevokeHeaders, RevokedStamps } from "../lib/worker/revoked_stamps.ts";

const quiet = { pool: "inline" as const, heartbeatInterval: 0 };

function stampApp() {
  const url = `memory://${crypto.randomUUID()}`;
  const app = new App({ broker: url, backend: url });
  const ran: string[] = [];
  app.task("s.add", function (this: TaskContext, x: number, y: number) {
    ran.push(this.id);
    return x + y;
  });
  app.task("s.wait", async function (): Promise<string> {
    await new Promise((resolve) => this.signal.addEventListener("abort", resolve));
    return "stopped";
  });
  return { app, ran };
}

Deno.test("matchStamps matches any value of a list stamp and compares values as JSON", () => {
  assert.deepEqual(matchStamps({ mon: "x" }, { mon: ["w", "x"] }), { name: "mon", value: "x" });
  assert.deepEqual(matchStamps({ tags: ["a", 2] }, { tags: [2] }), { name: "tags", value: 2 });
  assert.equal(matchStamps({ mon: "2" }, { mon: [2] }), null);
  assert.equal(matchStamps({ mon: "x" }, { other: ["x"] }), null);
  assert.equal(matchStamps({}, { mon: ["x"] }), null);
  // Every stamp is looked at, not only the first revoked name.
  assert.deepEqual(matchStamps({ a: "no", b: "yes" }, { a: ["x"], b: ["yes"] }), {
    name: "b",
    value: "yes",
  });
});

Deno.test("readRevokeHeaders reads a mapping or Celery's list of name=value strings", () => {
  assert.deepEqual(readRevokeHeaders({ mon: "x", tags: ["a", "b"] }), {
    mon: ["x"],
    tags: ["a", "b"],
  });
  // As Celery's dict comprehension: the last value of a name wins.
  assert.deepEqual(readRevokeHeaders(["mon=x", "mon=y", "bad", "t=1"]), { mon: ["y"], t: ["1"] });
  assert.deepEqual(readRevokeHeaders(null), {});
  assert.deepEqual(readRevokeHeaders("mon"), {});
});

Deno.test("RevokedStamps adds values to those revoked before and reads message headers", () => {
  const revoked = new RevokedStamps();
  const headers = (stamps: Record<string, unknown>) => ({
    stamped_headers: Object.keys(stamps),
    stamps,
  });
  assert.equal(revoked.match(headers({ mon: "x" })), null);
  revoked.add({ mon: "x" });
  revoked.add({ mon: ["y", "x"], empty: [] });
  assert.deepEqual(revoked.toJSON(), { mon: ["x", "y"] });
  assert.deepEqual(revoked.match(headers({ mon: "y" })), { name: "mon", value: "y" });
  assert.equal(revoked.match(headers({ mon: "z" })), null);
  // A value in `stamps` that `stamped_headers` does not name is not a stamp.
  assert.equal(revoked.match({ stamped_headers: [], stamps: { mon: "x" } }), null);
});

Deno.test("revoke_by_stamped_headers discards queued tasks with a revoked stamp; others run", async () => {
  const { app, ran } = stampApp();
  await using _app = app;
  await using w = startWorker(app, { ...quiet, hostname: "st@test", concurrency: 1 });
  const destination = ["st@test"];
  await eventually(async () => (await app.control.ping({ destination })).length > 0);
  const blocker = await app.sendTask("s.wait", [], {});
  await eventually(() => w.consumer.requests().some((r) => r.state === "active"));
  // Queued behind the running task (-c 1), sent before the revoke.
  const byValue = await app.sendTask("s.add", [1, 1], {}, { stamps: { mon: "x" } });
  const byList = await app.sendTask("s.add", [1, 2], {}, { stamps: { mon: ["q", "y"] } });
  const other = await app.sendTask("s.add", [1, 3], {}, { stamps: { mon: "z" } });
  const unstamped = await app.sendTask("s.add", [1, 4], {});
  const revokedEvents: string[] = [];
  app.addEventListener("taskRevoked", (e) => {
    revokedEvents.push((e as CustomEvent<{ id: string }>).detail.id);
  });
  const reply = await app.control.revokeByStampedHeaders({ mon: ["x", "y"] }, {
    reply: true,
    destination,
    timeout: 2000,
  });
  assert.deepEqual(reply, [{
    "st@test": { ok: "headers {'mon': ['x', 'y']} flagged as revoked, but not terminated" },
  }]);
  // Sent after the revoke: discarded when it arrives.
  const after = await app.sendTask("s.add", [1, 5], {}, { stamps: { mon: "x", other: 1 } });
  await app.control.revoke(blocker.id, { terminate: true });
  assert.equal(await other.get({ timeout: 5000 }), 4);
  assert.equal(await unstamped.get({ timeout: 5000 }), 5);
  for (const r of [byValue, byList, after]) {
    await eventually(async () => (await r.state()) === "REVOKED");
    const meta = await r.meta();
    assert.equal((meta?.result as { exc_type?: string }).exc_type, "TaskRevokedError");
  }
  assert.deepEqual(ran.sort(), [other.id, unstamped.id].sort());
  assert.deepEqual(revokedEvents.sort(), [blocker.id, byValue.id, byList.id, after.id].sort());
  // Discarded messages are acked: nothing is held or left in the queue.
  await eventually(() => w.consumer.requests().length === 0);
  const [counts] = await (await app.getBroker()).queueCounts!(["celery"]);
  assert.equal(counts!.waiting, 0);
  assert.equal(counts!.reserved ?? 0, 0);
});

Deno.test("revoke_by_stamped_headers with terminate stops the running stamped tasks only", async () => {
  const { app } = stampApp();
  await using _app = app;
  await using w = startWorker(app, { ...quiet, hostname: "sk@test", concurrency: 2 });
  const destination = ["sk@test"];
  await eventually(async () => (await app.control.ping({ destination })).length > 0);
  const stamped = await app.sendTask("s.wait", [], {}, { stamps: { mon: ["t", "u"] } });
  const plain = await app.sendTask("s.wait", [], {}, { stamps: { mon: "keep" } });
  await eventually(() => w.consumer.requests().filter((r) => r.state === "active").length === 2);
  const terminate = { terminate: true, reply: true, destination, timeout: 2000 };
  const none = await app.control.revokeByStampedHeaders({ mon: "nothing" }, terminate);
  assert.deepEqual(none, [{ "sk@test": { ok: "headers {'mon': 'nothing'} were not terminated" } }]);
  const reply = await app.control.revokeByStampedHeaders({ mon: "u" }, terminate);
  assert.deepEqual(reply, [{ "sk@test": { ok: "headers {'mon': ['u']} revoked" } }]);
  await eventually(async () => (await stamped.state()) === "REVOKED");
  assert.deepEqual(w.consumer.requests().map((r) => r.id), [plain.id]);
  // The AsyncResult call (Celery's `AsyncResult.revoke_by_stamped_headers`) broadcasts it too.
  await plain.revokeByStampedHeaders({ mon: ["keep"] }, { terminate: true });
  await eventually(async () => (await plain.state()) === "REVOKED");
  assert.deepEqual(w.consumer.revokedStamps.toJSON(), { mon: ["nothing", "u", "keep"] });
});

Deno.test("CLI control revoke_by_stamped_headers NAME=VALUE revokes a queued task over Redis", async () => {
  const queue = unique("stamps-q");
  const host = `${unique("celeriac")}@test`;
  await using app = new App({ broker: REDIS, backend: REDIS_BACKEND, defaultQueue: queue });
  app.task("s.add", (x: number, y: number) => x + y);
  app.task("s.wait", async function (this: TaskContext): Promise<string> {
    await new Promise((resolve) => this.signal.addEventListener("abort", resolve));
    return "stopped";
  });
  await using w = startWorker(app, { ...quiet, hostname: host, concurrency: 1 });
  await eventually(async () => (await app.control.ping({ destination: [host] })).length === 1);
  const blocker = await app.sendTask("s.wait", [], {});
  await eventually(() => w.consumer.requests().some((r) => r.state === "active"));
  const stamped = await app.sendTask("s.add", [2, 2], {}, { stamps: { mon: "cli" } });
  const other = await app.sendTask("s.add", [2, 3], {}, { stamps: { mon: "kept" } });
  const out = await cli("control", "revoke_by_stamped_headers", "mon=cli", "-b", REDIS, "-d", host);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /headers \{'mon': 'cli'\} flagged as revoked, but not terminated/);
  const usage = await cli("control", "revoke_by_stamped_headers", "-b", REDIS);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /takes arguments: NAME=VALUE/);
  await blocker.revoke({ terminate: true });
  assert.equal(await other.get({ timeout: 10_000 }), 5);
  await eventually(async () => (await stamped.state()) === "REVOKED");
  assert.equal(await blocker.state(), "REVOKED");
});
