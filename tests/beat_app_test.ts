// Beat wired to an App: periodic tasks from `beatSchedule` and `addPeriodicTask` are sent
// through the app and run by a worker.
import assert from "node:assert/strict";
import { App, Consumer, every, startBeat } from "@celeriac/celeriac";

Deno.test("startBeat() sends the app's periodic tasks, which a worker runs", async () => {
  const ns = crypto.randomUUID();
  await using app = new App({
    broker: `memory://${ns}`,
    backend: `memory://${ns}`,
    beatSchedule: { tick: { task: "tick", schedule: every(1), args: ["a"] } },
  });
  const seen: string[] = [];
  app.task("tick", (label: string) => seen.push(label));
  app.addPeriodicTask("tock", { task: "tick", schedule: every("1s"), args: ["b"] });
  const stop = new AbortController();
  const worker = new Consumer(app, { pool: "inline", signal: stop.signal }).run();
  const beat = await startBeat(app, { signal: stop.signal });
  await new Promise((r) => setTimeout(r, 2300));
  stop.abort();
  await beat.close();
  await worker;
  assert.ok(seen.filter((s) => s === "a").length >= 2, `ran ${seen}`);
  assert.ok(seen.filter((s) => s === "b").length >= 2, `ran ${seen}`);
  assert.ok(seen.length <= 6, `ran too often: ${seen}`);
});
