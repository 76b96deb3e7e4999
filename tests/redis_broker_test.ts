import { RedisBroker } from "../lib/brokers/redis.ts";
import { brokerSuite } from "./_broker_suite.ts";

const REDIS = Deno.env.get("CELERIAC_REDIS_URL") ?? "redis://127.0.0.1:6379/0";

brokerSuite("redis broker", () => {
  const id = crypto.randomUUID();
  return Promise.resolve({
    broker: new RedisBroker(REDIS, { keyPrefix: `celeriac-test-${id}:` }),
    queue: `q-${id}`,
  });
});
