// The app module of the day-one CLI tests: broker and backend from the environment (a private
// Deno KV file per test through CELERIAC_KV_PATH, or Redis).
import { App } from "@celeriac/celeriac";

export const app = new App();

export const add = app.task("tasks.add", (x: number, y: number) => x + y);

export const boom = app.task("tasks.boom", (message: string) => {
  throw new RangeError(message);
});

// Reports `current`/`total` (a bar) or a custom state without numbers (a status line), then
// waits for the step delay so each state is seen.
export const steps = app.task(
  "tasks.steps",
  async function (n: number, ms: number, key: "current" | "done" | "none" = "current") {
    for (let i = 1; i <= n; i++) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      if (key === "none") await this.updateState("CRUNCHING", { stage: `stage-${i}` });
      else await this.updateState("PROGRESS", { [key]: i, total: n });
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
    return n;
  },
);

export const sleep = app.task("tasks.sleep", async function (ms: number) {
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    this.signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(this.signal.reason);
    });
  });
  return ms;
});

export const size = app.task("tasks.size", (text: string) => text.length);

export default app;
