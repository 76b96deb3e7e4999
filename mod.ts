/**
 * celeriac: Celery, rebuilt async-native for Deno, speaking Celery's wire protocol (v2, JSON)
 * so Python Celery clients and workers interoperate with it.
 *
 * Define tasks on an {@linkcode App} in a module (`tasks.ts`), run a worker over it with
 * `deno run -A cli.ts worker --app ./tasks.ts`, and send tasks from anywhere:
 *
 * ```ts
 * import { App, Consumer } from "@celeriac/celeriac";
 *
 * const app = new App({ broker: "memory://mod-doc", backend: "memory://mod-doc" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 *
 * // A worker in this process (the CLI runs one in its own process, on Web Workers).
 * const stop = new AbortController();
 * const worker = new Consumer(app, { pool: "inline", signal: stop.signal }).run();
 *
 * const result = await add.delay(2, 2);
 * console.assert((await result.get({ timeout: 10_000 })) === 4);
 *
 * stop.abort(); // warm shutdown
 * await worker;
 * await app.close();
 * ```
 *
 * @module
 */

export { App, type AppOptions, type Logger, type Routes } from "./lib/app.ts";
export {
  type ErrorClass,
  type ErrorMatcher,
  matchesError,
  type PartialArgs,
  type RateLimit,
  type SendOptions,
  Task,
  TaskContext,
  type TaskFunction,
  type TaskOptions,
  type TaskRetryOptions,
} from "./lib/task.ts";
export {
  AppEvent,
  type AppEventDetails,
  type AppEventMap,
  type AppEventType,
  type TaskEventBase,
} from "./lib/signals.ts";
export { backoffCountdown, type BackoffOptions } from "./lib/backoff.ts";
export {
  BaseRateLimiter,
  createRateLimiter,
  MemoryRateLimiter,
  parseRate,
  type RateLimiter,
  type Reservation,
} from "./lib/worker/rate_limit.ts";
export {
  AsyncResult,
  EagerResult,
  type GetOptions,
  GroupResult,
  type JoinOptions,
  resultFromTuple,
  ResultSet,
  type RevokeOptions,
} from "./lib/result.ts";
export {
  applySignature,
  type ApplySignatureOptions,
  type CanvasApplyOptions,
  type CanvasSendOptions,
  Chain,
  chain,
  Chord,
  chord,
  Chunks,
  chunks,
  fromDict,
  Group,
  group,
  type HandleOf,
  isSignatureLike,
  type LastOf,
  leafTasks,
  pipe,
  registerBuiltins,
  type ResultNode,
  type ResultOf,
  type ResultsOf,
  Signature,
  signature,
  type SignatureLike,
  type TaskLike,
  toDict,
  XMap,
  xmap,
  XStarmap,
  xstarmap,
} from "./lib/canvas.ts";
export { Consumer, type ConsumerOptions } from "./lib/worker/consumer.ts";
export {
  CeleriacError,
  ChordError,
  EncodeError,
  type EncodeErrorOptions,
  Ignore,
  MaxRetriesExceededError,
  MessageDecodeError,
  NotRegistered,
  Reject,
  type RejectOptions,
  ResultTimeoutError,
  Retry,
  type RetryOptions,
  SoftTimeLimitExceeded,
  TaskError,
  TaskRevokedError,
  TimeLimitExceeded,
  WorkerLostError,
} from "./lib/errors.ts";
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
} from "./lib/brokers/broker.ts";
export {
  type BroadcastOptions,
  Control,
  type ControlOptions,
  type ControlRevokeOptions,
  Inspect,
  type InspectOptions,
  type NodeReply,
  ReplyStream,
} from "./lib/control.ts";
export { type CeleryEvent, receiveEvents, type ReceiveEventsOptions } from "./lib/events.ts";
export {
  CONTROL_COMMANDS,
  type ControlHandler,
  type ControlledWorker,
  ControlNode,
  type ControlNodeOptions,
  type HeldRequest,
  isForNode,
} from "./lib/worker/control.ts";
export { EventDispatcher, type EventDispatcherOptions } from "./lib/worker/events.ts";
export type { Pool, PoolRunOptions } from "./lib/worker/pool.ts";
export { RevokedSet, type RevokedSetOptions } from "./lib/worker/revoked.ts";
export { LamportClock } from "./lib/_clock.ts";
export {
  createLogger,
  type LevelLogger,
  type LoggerOptions,
  type LogLevel,
  parseLogLevel,
} from "./lib/observe/logger.ts";
export { logTaskLines, type TaskLogOptions } from "./lib/observe/task_log.ts";
export {
  type MetricsWorker,
  otelMetricsEnabled,
  WorkerMetrics,
  type WorkerMetricsOptions,
} from "./lib/observe/metrics.ts";
export {
  type MetricsServer,
  serveMetrics,
  type ServeMetricsOptions,
} from "./lib/observe/metrics_server.ts";
export { tracingEnabled } from "./lib/observe/tracing.ts";
export type {
  Backend,
  BackendOptions,
  ChordPart,
  ResultMeta,
  StoreOptions,
  WaitOptions,
} from "./lib/backends/backend.ts";
export {
  type BackendConnectOptions,
  type BrokerConnectOptions,
  createBackend,
  createBroker,
} from "./lib/transport/registry.ts";
export type { ExceptionInfo } from "./lib/protocol/exceptions.ts";
export type {
  DeliveryInfo,
  ErrorShape,
  Outcome,
  RequestContext,
  RunRequest,
} from "./lib/worker/outcome.ts";
export { MemoryBroker, type MemoryBrokerOptions } from "./lib/brokers/memory.ts";
export { MemoryBackend } from "./lib/backends/memory.ts";
export { KvBroker, type KvBrokerOptions } from "./lib/brokers/kv.ts";
export { KvBackend, type KvBackendOptions } from "./lib/backends/kv.ts";
export {
  decodeTask,
  type Embed,
  encodeTask,
  type Message,
  type MessageProperties,
  type SignatureDict,
  type TaskCall,
  type TaskRequest,
} from "./lib/protocol/message.ts";
export {
  EXCEPTION_STATES,
  PROPAGATE_STATES,
  READY_STATES,
  type State,
} from "./lib/protocol/states.ts";
export {
  type BeatEntries,
  type BeatEntry,
  type BeatSend,
  type BeatStore,
  type BeatTick,
  Clocked,
  clocked,
  type CronField,
  Crontab,
  crontab,
  type CrontabOptions,
  type EntryState,
  Every,
  every,
  type EveryOptions,
  KvBeatStore,
  type KvBeatStoreOptions,
  MemoryBeatStore,
  type MemoryBeatStoreOptions,
  parseDuration,
  RedisBeatStore,
  type RedisBeatStoreOptions,
  registerCron,
  type RegisterCronOptions,
  type RegisteredCron,
  type Schedule,
  Scheduler,
  type SchedulerOptions,
} from "./lib/beat/mod.ts";
export { beatStoreFor, startBeat, type StartBeatOptions } from "./lib/beat/beat.ts";
