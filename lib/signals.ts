/**
 * Signals: Celery's `task_prerun`, `task_success`, `worker_ready`... as typed events on the
 * {@linkcode App} (an `EventTarget`). Each event is an {@linkcode AppEvent} whose `detail` has
 * the shape {@linkcode AppEventDetails} gives for its type, so listeners type-check:
 *
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * const app = new App({ broker: "memory://", backend: "memory://" });
 * app.addEventListener("taskSuccess", (e) => console.log(e.detail.name, e.detail.result));
 * await app.close();
 * ```
 *
 * Events are dispatched synchronously at the point Celery sends its signal; a listener that
 * throws is reported by the runtime, never by the task.
 *
 * @module
 */

import type { Message } from "./protocol/message.ts";
import type { ExceptionInfo } from "./protocol/exceptions.ts";
import type { State } from "./protocol/states.ts";

/** Fields every task event from a worker carries. */
export interface TaskEventBase {
  /** The task id. */
  id: string;
  /** The task name. */
  name: string;
  /** The worker's node name (the host name for eager runs). */
  hostname: string;
}

/** The `detail` of each event type, by name. */
export interface AppEventDetails {
  /** A worker took a task message (Celery `task_received`). */
  taskReceived: TaskEventBase & {
    args: readonly unknown[];
    /** The message's headers (`argsrepr`/`kwargsrepr` there mask the arguments in events). */
    headers?: Readonly<Record<string, unknown>>;
    kwargs: Record<string, unknown>;
    rootId: string;
    parentId: string | null;
    retries: number;
    eta: Date | null;
    expires: Date | null;
  };
  /** Before a task runs (Celery `task_prerun`). */
  taskPrerun: TaskEventBase & { args: readonly unknown[]; kwargs: Record<string, unknown> };
  /** After a task ran, whatever happened (Celery `task_postrun`). */
  taskPostrun: TaskEventBase & {
    /** The state the run ended in: SUCCESS, FAILURE, RETRY, REJECTED, IGNORED, REVOKED. */
    state: State;
  };
  /** A task returned (Celery `task_success`). */
  taskSuccess: TaskEventBase & { result: unknown; runtime: number };
  /** A task failed for good (Celery `task_failure`). */
  taskFailure: TaskEventBase & { exception: ExceptionInfo; traceback: string | null };
  /** A task asked to run again (Celery `task_retry`). */
  taskRetry: TaskEventBase & {
    /** When it runs again. */
    eta: Date;
    /** Its retries so far, before this one. */
    retries: number;
    /** Why, when known. */
    reason: ExceptionInfo | null;
    /** The stack of the error that caused it, when known. */
    traceback: string | null;
  };
  /** A task was revoked, expired or terminated (Celery `task_revoked`). */
  taskRevoked: TaskEventBase & { expired: boolean; terminated: boolean };
  /** A message named a task this worker does not know (Celery `task_unknown`). */
  taskUnknown: TaskEventBase & { queue: string };
  /**
   * A message was rejected: malformed (`id` and `name` are null), a task threw `Reject`, or it
   * was dead-lettered after too many deliveries (Celery `task_rejected`).
   */
  taskRejected: {
    id: string | null;
    name: string | null;
    hostname: string;
    queue: string;
    /** Whether it went back to the queue. */
    requeue: boolean;
    /** Why. */
    reason: string;
    /** The message, when it could not be decoded. */
    message?: Message;
  };
  /** The worker is consuming (Celery `worker_ready`). */
  workerReady: { hostname: string };
  /** The worker stops taking messages (Celery `worker_shutting_down`). */
  workerShuttingDown: { hostname: string };
  /** A task message is about to be published (Celery `before_task_publish`). */
  beforeTaskPublish: { id: string; name: string; queue: string; message: Message };
  /** A task message was published (Celery `after_task_publish`). */
  afterTaskPublish: { id: string; name: string; queue: string; message: Message };
}

/** The names of the App's events. */
export type AppEventType = keyof AppEventDetails;

/**
 * One App event: a `CustomEvent` whose `detail` is typed by its `type`.
 *
 * @example
 * ```ts
 * import { AppEvent } from "./signals.ts";
 * const e = new AppEvent("workerReady", { hostname: "celeriac@here" });
 * console.assert(e.type === "workerReady" && e.detail.hostname === "celeriac@here");
 * ```
 */
export class AppEvent<K extends AppEventType = AppEventType>
  extends CustomEvent<AppEventDetails[K]> {
  /** The event name. */
  declare readonly type: K;

  /**
   * Makes the event.
   *
   * @param type Its name.
   * @param detail Its data.
   */
  constructor(type: K, detail: AppEventDetails[K]) {
    super(type, { detail });
  }
}

/** Event type → event class, for typed `addEventListener`. */
export type AppEventMap = { [K in AppEventType]: AppEvent<K> };
