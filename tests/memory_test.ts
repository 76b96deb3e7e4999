import { MemoryBackend } from "../lib/backends/memory.ts";
import { MemoryBroker } from "../lib/brokers/memory.ts";
import { backendSuite } from "./_backend_suite.ts";
import { brokerSuite } from "./_broker_suite.ts";

brokerSuite("memory broker", () => {
  const id = crypto.randomUUID();
  return Promise.resolve({ broker: new MemoryBroker(`memory://${id}`), queue: `q-${id}` });
});

backendSuite("memory backend", () => {
  const id = crypto.randomUUID();
  return Promise.resolve({ backend: new MemoryBackend(`memory://${id}`), prefix: id });
});
