// deno task demo: runs a worker and a producer, and shows results streaming in as they
// complete. Everything runs on the embedded default broker and backend.
// deno-lint-ignore-file no-console
import { Consumer, GroupResult } from "@celeriac/celeriac";
import app, { add, fib, slow } from "./tasks.ts";

const stop = new AbortController();
const worker = new Consumer(app, {
  appModule: new URL("./tasks.ts", import.meta.url),
  concurrency: 2,
  childConcurrency: 4,
  signal: stop.signal,
});
const running = worker.run();

console.log(`worker ${worker.hostname}: 2 Web Workers; broker ${app.conf.brokerUrl}`);
const sent = [
  ...await Promise.all([30, 25, 20].map((n) => fib.delay(n))),
  ...await Promise.all([400, 100, 250].map((ms) => slow.delay(ms))),
  ...await Promise.all([[2, 2], [40, 2]].map(([x, y]) => add.delay(x!, y!))),
];
console.log(`sent ${sent.length} tasks; results as they complete:`);
const group = new GroupResult(crypto.randomUUID(), sent, app);
const started = performance.now();
for await (const meta of group.completed({ timeout: 60_000 })) {
  const ms = (performance.now() - started).toFixed(0).padStart(5);
  console.log(
    `${ms} ms  ${meta.task_id.slice(0, 8)}  ${meta.status}  ${JSON.stringify(meta.result)}`,
  );
}
console.log("warm shutdown...");
stop.abort();
await running;
await app.close();
console.log(`done: ${worker.processed} tasks processed`);
