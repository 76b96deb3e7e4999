import { RedisBackend } from "../lib/backends/redis.ts";
import { backendSuite } from "./_backend_suite.ts";

const REDIS = Deno.env.get("CELERIAC_REDIS_BACKEND_URL") ?? "redis://127.0.0.1:6379/1";

backendSuite(
  "redis backend",
  () => Promise.resolve({ backend: new RedisBackend(REDIS), prefix: crypto.randomUUID() }),
);
