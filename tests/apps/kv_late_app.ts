// The app module of the KV cli worker test: late ack, so a worker killed mid-task leaves its
// message leased (not acked) and the broker redelivers it; and two early-ack tasks.
import { App } from "@celeriac/celeriac";

export const app = new App({
  broker: Deno.env.get("CELERIAC_BROKER_URL") ?? "kv://",
  backend: Deno.env.get("CELERIAC_RESULT_BACKEND") ?? "kv://",
  acksLate: true,
});

export const add = app.task("tasks.add", (x: number, y: number) => x + y);

export const busy = app.task("tasks.busy", async function (ms: number) {
  await this.updateState("RUNNING", { ms, pid: Deno.pid });
  await new Promise((resolve) => setTimeout(resolve, ms));
  return `done after ${ms} ms`;
});

/** Early ack (acked before it runs): a worker killed mid-task does not get it back. */
export const earlyBusy = app.task("tasks.early_busy", async function (ms: number) {
  await this.updateState("RUNNING", { ms, pid: Deno.pid });
  await new Promise((resolve) => setTimeout(resolve, ms));
  return `done after ${ms} ms`;
}, { acksLate: false });

export const earlyAdd = app.task("tasks.early_add", (x: number, y: number) => x + y, {
  acksLate: false,
});

export default app;
