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
export type { AppContext, RegisteredTask } from "./lib/app_context.ts";
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
  AsyncResult,
  EagerResult,
  type GetOptions,
  GroupResult,
  type JoinOptions,
  type ResultContext,
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
  EXCEPTION_STATES,
  PROPAGATE_STATES,
  READY_STATES,
  type State,
} from "./lib/protocol/states.ts";
export {
  type BeatEntries,
  type BeatEntry,
  Clocked,
  clocked,
  Crontab,
  crontab,
  type CrontabOptions,
  Every,
  every,
  type EveryOptions,
  registerCron,
  type RegisterCronOptions,
  type Schedule,
} from "./lib/beat/mod.ts";
export { startBeat, type StartBeatOptions } from "./lib/beat/beat.ts";
