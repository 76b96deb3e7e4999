// The app module tests/canvas_pool_test.ts runs in Web Workers: tasks that replace themselves
// and tasks that send children from their body, so both cross the isolate boundary.
import { App, chain, group } from "@celeriac/celeriac";

export const app = new App({ broker: "memory://canvas-app", backend: "memory://canvas-app" });

export const add = app.task("poolcanvas.add", (x: number, y: number) => x + y);
export const mul = app.task("poolcanvas.mul", (x: number, y: number) => x * y);

export const toChain = app.task("poolcanvas.to_chain", function (x: number) {
  return this.replace(chain(add.s(x, 1), mul.s(10)));
});

export const toGroup = app.task("poolcanvas.to_group", function (x: number) {
  return this.replace(group(add.s(x, 1), add.s(x, 2)));
});

export const spawner = app.task("poolcanvas.spawner", async (x: number) => {
  await add.delay(x, 1);
  await group(add.s(x, 2), add.s(x, 3)).applyAsync();
  return "spawned";
});

export default app;
