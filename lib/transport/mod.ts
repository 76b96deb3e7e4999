/**
 * The transport seams: the `Broker` and `Backend` interfaces, the scheme registry that makes
 * them from URLs, and the in-process and Deno KV implementations. A new broker implements the
 * hooks of the shared consume loop (`consume.ts`).
 *
 * ```ts
 * import { createBroker } from "@celeriac/celeriac/transport";
 * await using broker = await createBroker("memory://transport-doc");
 * console.assert(broker.url === "memory://transport-doc");
 * ```
 *
 * @module
 */

export type {
  BroadcastMessage,
  Broker,
  BrowseOptions,
  ConsumeDirectOptions,
  ConsumeOptions,
  DeadLetter,
  DeadLetterEvent,
  Delivery,
  DeliveryRejectOptions,
  PublishOptions,
  QueueCounts,
  ScheduledMessage,
  SubscribeOptions,
} from "../brokers/broker.ts";
export type {
  Backend,
  BackendOptions,
  ChordPart,
  ResultMeta,
  StoreOptions,
  WaitOptions,
} from "../backends/backend.ts";
export {
  type BackendConnectOptions,
  type BrokerConnectOptions,
  createBackend,
  createBroker,
} from "./registry.ts";
export { MemoryBroker, type MemoryBrokerOptions } from "../brokers/memory.ts";
export { MemoryBackend } from "../backends/memory.ts";
export { KvBroker, type KvBrokerOptions } from "../brokers/kv.ts";
export { KvBackend, type KvBackendOptions } from "../backends/kv.ts";
