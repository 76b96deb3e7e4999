// The app module the core tests run in Web Workers. Broker and backend come from the
// environment so that each test process can pick its own memory namespace or server.
import { App } from "@celeriac/celeriac";

export const app = new App({
  broker: Deno.env.get("CELERIAC_BROKER_URL") ?? "memory://core",
  backend: Deno.env.get("CELERIAC_RESULT_BACKEND") ?? "memory://core",
});

export const add = app.task("tasks.add", (x: number, y: number) => x + y);

export const boom = app.task("tasks.boom", (message: string) => {
  throw new TypeError(message);
});

export const spin = app.task("tasks.spin", () => {
  while (true) {
    // Never yields: only terminating the Web Worker stops it.
  }
});

export const soft = app.task("tasks.soft", function (): Promise<string> {
  return new Promise((resolve) => {
    this.signal.addEventListener("abort", () => resolve(`aborted: ${this.signal.reason.name}`));
  });
});

export const crash = app.task("tasks.crash", () => {
  setTimeout(() => {
    throw new Error("uncaught inside the Web Worker");
  });
  return new Promise(() => {});
});

export const sleep = app.task("tasks.sleep", (ms: number) => {
  return new Promise<number>((resolve) => setTimeout(() => resolve(ms), ms));
});

export const window = app.task("tasks.window", async (ms: number) => {
  const start = Date.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return [start, Date.now()];
});

export const addTwice = app.task("tasks.add_twice", async (x: number) => {
  const first = await add.delay(x, x);
  return await first.get({ timeout: 10_000 }) * 2;
});

export const context = app.task("tasks.context", function (label: string) {
  return {
    label,
    id: this.id,
    retries: this.retries,
    rootId: this.rootId,
    parentId: this.parentId,
    queue: this.deliveryInfo.queue,
    custom: this.headers["x-custom"] ?? null,
  };
});

export const kw = app.task("tasks.kw", (x: number, y = 10, options?: Record<string, unknown>) => {
  return { x, y, options: options ?? null };
});

export const flaky = app.task("tasks.flaky", function (failures: number) {
  if (this.retries < failures) this.retry({ countdown: 0, exc: new Error(`try ${this.retries}`) });
  return this.retries;
}, { maxRetries: 5 });

export const busy = app.task("tasks.busy", async function (ms: number) {
  await this.updateState("RUNNING", { ms });
  await new Promise((resolve) => setTimeout(resolve, ms));
  return `done after ${ms} ms`;
});

export default app;
