/**
 * What running a task produced, in a shape that crosses Web Worker boundaries
 * (structured-clone safe: no classes, no functions).
 *
 * @module
 */

import { excModuleOf } from "../protocol/exceptions.ts";

/** An error, flattened to cross an isolate boundary. */
export interface ErrorShape {
  /** The error's name (`exc_type` on the wire). */
  name: string;
  /** The message. */
  message: string;
  /** The stack, as the traceback. */
  stack: string | null;
  /** The Python module (`exc_module`) when the error came from a Celery peer. */
  module?: string;
  /** The arguments (`exc_message`) when the error came from a Celery peer. */
  args?: unknown[];
  /** The task lists it in `throws`: log it without a traceback. */
  expected?: boolean;
}

/** The result of running one task. */
export type Outcome =
  | {
    kind: "success";
    value: unknown;
    runtime: number;
    /** Result tuples of the tasks the body sent (stored as the meta's `children`). */
    children?: unknown[];
  }
  | {
    kind: "failure";
    error: ErrorShape;
    runtime: number;
    /** Result tuples of the tasks the body sent before it failed. */
    children?: unknown[];
  }
  | { kind: "retry"; countdown: number | null; eta: string | null; error: ErrorShape | null }
  | { kind: "reject"; requeue: boolean; error: ErrorShape }
  | { kind: "ignore" }
  /** The pool gave the run back before it started (warm shutdown): the message is requeued. */
  | { kind: "unstarted" }
  | { kind: "lost"; error: ErrorShape }
  | { kind: "timeout"; seconds: number };

/** Everything a pool needs to run a task, structured-clone safe. */
export interface RunRequest {
  /** Task id. */
  id: string;
  /** Task name. */
  name: string;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments. */
  kwargs: Record<string, unknown>;
  /** The request context handed to the task as `this`. */
  context: RequestContext;
}

/** Where a task's message came from. */
export interface DeliveryInfo {
  /** The queue. */
  queue: string;
  /** Whether the broker delivered it before. */
  redelivered: boolean;
  /** How many times it was delivered, this time included. */
  deliveryCount: number;
  /** The message priority. */
  priority: number | null;
}

/** The plain-data part of a task's context. */
export interface RequestContext {
  /** Task id. */
  id: string;
  /** Task name. */
  name: string;
  /** Retries so far. */
  retries: number;
  /** First task of the workflow. */
  rootId: string;
  /** The task that sent this one. */
  parentId: string | null;
  /** Group id. */
  group: string | null;
  /** Position in a chord header. */
  groupIndex: number | null;
  /** ETA as ISO text. */
  eta: string | null;
  /** Expiry as ISO text. */
  expires: string | null;
  /** All message headers. */
  headers: Record<string, unknown>;
  /** Where the message came from. */
  deliveryInfo: {
    queue: string;
    redelivered: boolean;
    deliveryCount: number;
    priority: number | null;
  };
  /** The worker's node name. */
  hostname: string;
  /** Whether the task runs eagerly (`apply()`). */
  isEager: boolean;
  /** Where `rpc://` results go. */
  replyTo: string | null;
  /** The message's callbacks, errbacks, chain and chord (what `replace()` moves over). */
  embed?: {
    callbacks: unknown[] | null;
    errbacks: unknown[] | null;
    chain: unknown[] | null;
    chord: unknown;
  };
}

/**
 * Flattens a thrown value.
 *
 * @param error Anything thrown.
 * @returns The flat shape.
 * @example
 * ```ts
 * import { toErrorShape } from "./outcome.ts";
 * console.assert(toErrorShape(new TypeError("x")).name === "TypeError");
 * ```
 */
export function toErrorShape(error: unknown): ErrorShape {
  if (error instanceof Error) {
    const shape: ErrorShape = {
      name: error.name,
      message: error.message,
      stack: error.stack ?? null,
    };
    const remote = error as { excModule?: unknown; excArgs?: unknown };
    const module = excModuleOf(error);
    if (module !== undefined) shape.module = module;
    if (Array.isArray(remote.excArgs)) shape.args = [...remote.excArgs];
    return shape;
  }
  return { name: "Error", message: String(error), stack: null };
}
