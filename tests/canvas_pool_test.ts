// replace() and children sent from a task body on the Web Worker pool: the request's
// callbacks/chain/chord cross into the isolate, the children's tuples come back with the
// outcome.
import assert from "node:assert/strict";
import { chain, GroupResult } from "@celeriac/celeriac";
import { startWorker } from "./_helpers.ts";
import { add, app, spawner, toChain, toGroup } from "./apps/canvas_app.ts";

const T = { timeout: 30_000 };

Deno.test("workers pool: replace() keeps the id and the chain tail; body-sent children are stored", async () => {
  await using _worker = startWorker(app, {
    concurrency: 2,
    appModule: new URL("./apps/canvas_app.ts", import.meta.url),
  });
  // The first result waits for the Web Workers to start (type checking on a cold cache).
  const r = await toChain.delay(2);
  assert.equal(await r.get({ timeout: 90_000 }), 30);
  assert.deepEqual(await (await toGroup.delay(3)).get(T), [4, 5]);
  const tail = await chain(toChain.s(1), add.s(100)).delay();
  assert.equal(await tail.get(T), 120);
  const s = await spawner.delay(5);
  assert.equal(await s.get(T), "spawned");
  const [task, grp] = await s.children();
  assert.equal(await task!.get(T), 6);
  assert.ok(grp instanceof GroupResult);
  assert.deepEqual(await grp.get(T), [7, 8]);
});
