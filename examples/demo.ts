// deno task demo: starts a worker process (`cli.ts worker`), sends tasks from this process,
// shows results streaming in as they complete, then stops the worker with SIGTERM (warm
// shutdown). Both processes share the embedded default broker and backend: Deno KV in
// .celeriac/, no server needed.
// deno-lint-ignore-file no-console
import { GroupResult } from "@celeriac/celeriac";
import app, { add, fib, slow } from "./tasks.ts";

const cli = new URL("../cli.ts", import.meta.url).pathname;
const tasks = new URL("./tasks.ts", import.meta.url).pathname;
const worker = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", cli, "worker", "--app", tasks, "-c", "2", "--child-concurrency", "4"],
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

try {
  console.log(`producer: broker ${app.conf.brokerUrl}, backend ${app.conf.backendUrl}`);
  const sent = [
    ...await Promise.all([30, 25, 20].map((n) => fib.delay(n))),
    ...await Promise.all([1500, 300, 800].map((ms) => slow.delay(ms))),
    ...await Promise.all([[2, 2], [40, 2]].map(([x, y]) => add.delay(x!, y!))),
  ];
  console.log(`producer: sent ${sent.length} tasks; results as they complete:`);
  const group = new GroupResult<unknown>(crypto.randomUUID(), sent, app);
  const started = performance.now();
  for await (const meta of group.completed({ timeout: 60_000 })) {
    const ms = (performance.now() - started).toFixed(0).padStart(5);
    console.log(
      `producer: ${ms} ms  ${meta.task_id.slice(0, 8)}  ${meta.status}  ${
        JSON.stringify(meta.result)
      }`,
    );
  }
} finally {
  console.log("producer: SIGTERM to the worker (warm shutdown)");
  worker.kill("SIGTERM");
  const status = await worker.status;
  console.log(`producer: worker exited with code ${status.code}`);
  await app.close();
}
