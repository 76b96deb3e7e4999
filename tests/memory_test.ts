import { MemoryBackend } from "../lib/backends/memory.ts";
import { MemoryBroker } from "../lib/brokers/memory.ts";
import { backendSuite } from "./_backend_suite.ts";
import { brokerSuite } from "./_broker_suite.ts";

brokerSuite("memory broker", (options = {}) => {
  const id = crypto.randomUUID();
  const broker = new MemoryBroker(`memory://${id}`, options);
  return Promise.resolve({
    broker,
    queue: `q-${id}`,
    deadLetters: (q) => Promise.resolve([...broker.deadLetters(q)]),
  });
});

backendSuite("memory backend", () => {
  const id = crypto.randomUUID();
  return Promise.resolve({ backend: new MemoryBackend(`memory://${id}`), prefix: id });
});
