// deno-lint-ignore-file no-console
// A producer process for the KV multi-process tests and benchmark: publishes
// `count` task messages with ids `${prefix}-${start + i}`, then prints a JSON line.
// Usage: deno run -A producer.ts '{"url","queue","prefix","start","count","inflight"?,"eta"?}'
import { KvBroker } from "../../lib/brokers/kv.ts";
import { encodeTask } from "../../lib/protocol/message.ts";

interface Config {
  url: string;
  queue: string;
  prefix: string;
  start: number;
  count: number;
  /** Publishes in flight at once. */
  inflight?: number;
  /** Schedule every task at this time (ms since epoch) instead of publishing it now. */
  eta?: number;
}

const config: Config = JSON.parse(Deno.args[0]!);
await using broker = new KvBroker(config.url);
const started = performance.now();
let next = 0;
const publishOne = async () => {
  while (next < config.count) {
    const i = config.start + next++;
    const message = encodeTask({
      id: `${config.prefix}-${i}`,
      name: "tasks.noop",
      args: [i],
      kwargs: {},
    });
    if (config.eta === undefined) await broker.publish(config.queue, message);
    else await broker.schedule(config.queue, message, new Date(config.eta));
  }
};
await Promise.all(Array.from({ length: config.inflight ?? 8 }, publishOne));
const ms = performance.now() - started;
console.log(JSON.stringify({ published: config.count, ms }));
