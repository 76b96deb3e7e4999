// The dashboard's HTTP API and state without a browser: auth, CSRF guard, the loopback rule,
// event ordering, the bounded task store, metrics and the dead-letter endpoints (memory://).
import assert from "node:assert/strict";
import { App } from "@celeriac/celeriac";
import { Dashboard, DashboardState, serveDashboard } from "../lib/dashboard/mod.ts";
import { MemoryBroker } from "../lib/brokers/memory.ts";
import { encodeTask } from "../lib/protocol/message.ts";

const BASE = "http://127.0.0.1:16700";

function post(d: Dashboard, path: string, headers: Record<string, string> = {}, body = "{}") {
  return d.fetch(new Request(BASE + path, { method: "POST", headers, body }));
}

Deno.test("serveDashboard refuses a non-loopback address without auth or a token", async () => {
  const app = new App({ broker: "memory://dash-api-bind", backend: "memory://dash-api-bind" });
  await assert.rejects(
    () => serveDashboard(app, { hostname: "0.0.0.0", port: 0 }),
    (e: Error) => e instanceof TypeError && /needs auth or a token/.test(e.message),
  );
  await app.close();
});

Deno.test("basic auth and tokens guard every page; ?token= becomes a cookie", async () => {
  const app = new App({ broker: "memory://dash-api-auth", backend: "memory://dash-api-auth" });
  await using d = new Dashboard(app, { auth: "admin:s3cret", token: "tok" });
  await d.start();
  assert.equal((await d.fetch(new Request(BASE + "/api/workers"))).status, 401);
  const basic = { authorization: `Basic ${btoa("admin:s3cret")}` };
  assert.equal((await d.fetch(new Request(BASE + "/api/workers", { headers: basic }))).status, 200);
  const wrong = { authorization: `Basic ${btoa("admin:nope")}` };
  assert.equal((await d.fetch(new Request(BASE + "/", { headers: wrong }))).status, 401);
  const bearer = { authorization: "Bearer tok" };
  assert.equal((await d.fetch(new Request(BASE + "/", { headers: bearer }))).status, 200);
  const swap = await d.fetch(new Request(BASE + "/?token=tok#/tasks"));
  assert.equal(swap.status, 303);
  assert.match(swap.headers.get("set-cookie") ?? "", /celeriac_dashboard=tok; HttpOnly/);
  const cookie = { cookie: "celeriac_dashboard=tok" };
  assert.equal((await d.fetch(new Request(BASE + "/metrics", { headers: cookie }))).status, 200);
  await app.close();
});

Deno.test("actions need the page's CSRF token and a same-origin Origin", async () => {
  const app = new App({ broker: "memory://dash-api-csrf", backend: "memory://dash-api-csrf" });
  await using d = new Dashboard(app);
  await d.start();
  const page = await (await d.fetch(new Request(BASE + "/"))).text();
  assert.ok(page.includes(`content="${d.csrfToken}"`));
  assert.match(
    (await d.fetch(new Request(BASE + "/"))).headers.get("content-security-policy") ?? "",
    /script-src 'self'/,
  );
  const path = "/api/queues/celery/dead/purge";
  assert.equal((await post(d, path)).status, 403);
  assert.equal((await post(d, path, { "x-csrf-token": "guess" })).status, 403);
  const evil = { "x-csrf-token": d.csrfToken, origin: "http://evil.example" };
  assert.equal((await post(d, path, evil)).status, 403);
  const ok = await post(d, path, { "x-csrf-token": d.csrfToken, origin: BASE });
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { ok: true, purged: 0 });
  // GET never acts.
  assert.equal((await d.fetch(new Request(BASE + path))).status, 404);
  await app.close();
});

Deno.test("the dead-letter endpoints browse and replay a memory:// queue", async () => {
  const url = `memory://dash-api-dlq-${crypto.randomUUID()}`;
  const broker = new MemoryBroker(url);
  const app = new App({ broker: url, backend: url });
  await using d = new Dashboard(app, { queues: ["work"] });
  await d.start();
  await broker.publish("work", encodeTask({ id: "t-1", name: "x", args: ["<b>"], kwargs: {} }));
  const stop = new AbortController();
  for await (const delivery of broker.consume(["work"], { signal: stop.signal })) {
    await delivery.reject({ requeue: false });
    break;
  }
  const queues = await (await d.fetch(new Request(BASE + "/api/queues"))).json();
  assert.deepEqual(queues.queues.find((q: { queue: string }) => q.queue === "work"), {
    queue: "work",
    waiting: 0,
    reserved: null,
    scheduled: null,
    deadLettered: 1,
  });
  const dead = await (await d.fetch(new Request(BASE + "/api/queues/work/dead"))).json();
  assert.equal(dead.items.length, 1);
  assert.equal(dead.items[0].taskId, "t-1");
  const replay = await post(
    d,
    "/api/queues/work/dead/replay",
    { "x-csrf-token": d.csrfToken },
    JSON.stringify({ ids: ["t-1"] }),
  );
  assert.deepEqual(await replay.json(), { ok: true, replayed: 1 });
  assert.equal(broker.size("work"), 1);
  assert.equal(broker.deadLetters("work").length, 0);
  await broker.purge("work");
  await broker.close();
  await app.close();
});

Deno.test("DashboardState: the latest event wins, replays reopen a task, the store is bounded", () => {
  const s = new DashboardState({ maxTasks: 3 });
  const t0 = 1_000_000;
  s.apply({ type: "task-started", uuid: "a", hostname: "w", timestamp: t0 + 1 });
  s.apply({ type: "task-received", uuid: "a", name: "n", hostname: "w", timestamp: t0 });
  assert.equal(s.tasks.get("a")!.state, "STARTED");
  assert.equal(s.tasks.get("a")!.name, "n");
  s.apply({ type: "task-rejected", uuid: "a", hostname: "w", timestamp: t0 + 2 });
  s.apply({ type: "task-received", uuid: "a", hostname: "w", timestamp: t0 + 10 });
  assert.equal(s.tasks.get("a")!.state, "RECEIVED");
  s.apply({
    type: "task-succeeded",
    uuid: "a",
    hostname: "w",
    result: "4",
    runtime: 0.2,
    timestamp: t0 + 11,
  });
  assert.equal(s.tasks.get("a")!.state, "SUCCESS");
  assert.equal(s.workers.get("w")!.succeeded, 1);
  assert.deepEqual(s.histogram().slice(4, 7), [0, 1, 0]);
  for (const id of ["b", "c", "d"]) s.apply({ type: "task-received", uuid: id, hostname: "w" });
  assert.deepEqual([...s.tasks.keys()], ["b", "c", "d"]);
  s.apply({ type: "worker-heartbeat", hostname: "w", freq: 1, active: 2, timestamp: t0 });
  assert.equal(s.workers.get("w")!.online, true);
  assert.deepEqual(s.expire(Date.now() + 5_000).map((w) => w.hostname), ["w"]);
});
