/**
 * The worker's parts, for embedding or extending a worker: the remote control node, the event
 * dispatcher, pools, the settle table, rate limiters, revoked ids and stamps, and observability
 * (metrics, the Prometheus endpoint, log formats). Most users only need `Consumer` from the
 * main module.
 *
 * ```ts
 * import { decideSettle } from "@celeriac/celeriac/worker";
 * const late = {
 *   acksLate: true, acksOnFailureOrTimeout: true, rejectOnWorkerLost: false,
 *   cold: false, exhausted: false,
 * };
 * console.assert(decideSettle("failure", false, late) === "ack");
 * ```
 *
 * @module
 */

export { Consumer, type ConsumerOptions } from "./consumer.ts";
export {
  CONTROL_COMMANDS,
  type ControlHandler,
  type ControlledWorker,
  ControlNode,
  type ControlNodeOptions,
  type HeldRequest,
  isForNode,
} from "./control.ts";
export { EventDispatcher, type EventDispatcherOptions } from "./events.ts";
export type { Pool, PoolRunOptions } from "./pool.ts";
export {
  type AckOptions,
  type AdmissionEnding,
  decideSettle,
  type Ending,
  type RunEnding,
  type Settle,
} from "./settle.ts";
export { RevokedSet, type RevokedSetOptions } from "./revoked.ts";
export {
  matchStamps,
  readRevokeHeaders,
  RevokedStamps,
  type RevokingStamp,
} from "./revoked_stamps.ts";
export {
  BaseRateLimiter,
  createRateLimiter,
  MemoryRateLimiter,
  parseRate,
  type RateLimiter,
  type Reservation,
} from "./rate_limit.ts";
export type { DeliveryInfo, ErrorShape, Outcome, RequestContext, RunRequest } from "./outcome.ts";
export { LamportClock } from "../_clock.ts";
export {
  createLogger,
  type LevelLogger,
  type LoggerOptions,
  type LogLevel,
  parseLogLevel,
} from "../observe/logger.ts";
export { logTaskLines, type TaskLogOptions } from "../observe/task_log.ts";
export {
  type MetricsWorker,
  otelMetricsEnabled,
  WorkerMetrics,
  type WorkerMetricsOptions,
} from "../observe/metrics.ts";
export {
  type MetricsServer,
  serveMetrics,
  type ServeMetricsOptions,
} from "../observe/metrics_server.ts";
export { tracingEnabled } from "../observe/tracing.ts";
