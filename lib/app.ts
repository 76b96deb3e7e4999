/**
 * The App: configuration, the task registry, the producer, and connection lifetimes.
 *
 * @module
 */

import type { Backend } from "./backends/backend.ts";
import type { BeatEntries, BeatEntry } from "./beat/entry.ts";
import type { Broker } from "./brokers/broker.ts";
import { registerBuiltins } from "./canvas/builtins.ts";
import { createBackend, createBroker } from "./transport/registry.ts";
import { connectionErrorLogger, Connector } from "./_connect_retry.ts";
import { redact } from "./_url.ts";
import { Control } from "./control.ts";
import { type CeleryEvent, receiveEvents, type ReceiveEventsOptions } from "./events.ts";
import {
  decodeTask,
  encodeTask,
  type Message,
  type SignatureDict,
  type TaskRequest,
} from "./protocol/message.ts";
import { AsyncResult, EagerResult, type GroupResult, type RevokeOptions } from "./result.ts";
import { AppEvent, type AppEventMap } from "./signals.ts";
import { GuardedListeners } from "./_guarded_listeners.ts";
import { withKvDefault } from "./_kv.ts";
import { callerDir } from "./_module_dir.ts";
import { startPublishSpan } from "./observe/tracing.ts";
import { type SendOptions, Task, type TaskFunction, type TaskOptions } from "./task.ts";
import { applyCanvasEager, EagerContext, runEager, sendSignatureAsChild } from "./worker/eager.ts";
import { currentTask, recordChild } from "./worker/execute.ts";

/** A structured logger. The library never writes to the console itself. */
export interface Logger {
  /** Detail for debugging. */
  debug(message: string, fields?: Record<string, unknown>): void;
  /** Normal operation. */
  info(message: string, fields?: Record<string, unknown>): void;
  /** Something went wrong and was handled. */
  warn(message: string, fields?: Record<string, unknown>): void;
  /** Something went wrong. */
  error(message: string, fields?: Record<string, unknown>): void;
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Where a task goes: a queue name, or a function of the task name. */
export type Routes =
  | Record<string, string | { queue: string }>
  | ((taskName: string) => string | undefined);

/** Options of {@linkcode App}. */
export interface AppOptions {
  /**
   * Broker URL (`memory://`, `kv://`, `redis://`, `amqp://`) or a broker instance.
   * @default {Deno.env CELERIAC_BROKER_URL, else "kv://" (Deno KV in .celeriac/)}
   */
  broker?: string | Broker;
  /**
   * Result backend URL (`memory://`, `kv://`, `redis://`, `rpc://`) or an instance.
   * @default {Deno.env CELERIAC_RESULT_BACKEND, else "kv://" (Deno KV in .celeriac/)}
   */
  backend?: string | Backend;
  /**
   * The queue tasks go to when nothing else says.
   * @default {"celery"}
   */
  defaultQueue?: string;
  /** Queue by task name; keys may end in `*` to match a prefix (`"reports.*"`). */
  routes?: Routes;
  /**
   * How long results are kept, in milliseconds; `0` keeps them forever.
   * @default {86_400_000}
   */
  resultExpires?: number;
  /**
   * Run every task in-process when sent (for tests), storing results in the backend.
   * @default {false}
   */
  taskAlwaysEager?: boolean;
  /**
   * Ack after tasks finish instead of before they start, for every task.
   * @default {false}
   */
  acksLate?: boolean;
  /**
   * Deliveries after which a message is dead-lettered instead of requeued.
   * @default {10}
   */
  maxDeliveries?: number;
  /** Transport options passed to the broker and backend. */
  transportOptions?: Record<string, unknown>;
  /**
   * Retry connecting to the broker and backend at start-up, logging each failed attempt
   * (Celery's `broker_connection_retry_on_startup`); `false` makes one attempt.
   * @default {true}
   */
  brokerConnectionRetryOnStartup?: boolean;
  /**
   * Connection retries before giving up; `0` retries forever (Celery's
   * `broker_connection_max_retries`). Authentication and TLS failures get one retry only.
   * @default {100}
   */
  brokerConnectionMaxRetries?: number;
  /**
   * Longest one connection attempt may take, in ms (Celery's `broker_connection_timeout`).
   * @default {4_000}
   */
  brokerConnectionTimeout?: number;
  /** Where the library logs. @default {no logging} */
  logger?: Logger;
  /** Periodic tasks by name, as Celery's `beat_schedule`; run by `cli.ts beat`. */
  beatSchedule?: BeatEntries;
}

function env(name: string): string | undefined {
  try {
    // Without --allow-env the variables are not read (and Deno does not prompt for them).
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

let hostName: string | undefined;
export { makeMeta } from "./protocol/result_meta.ts";
export { shapeToInfo } from "./protocol/exceptions.ts";

/**
 * This machine's host name (or `localhost` when it cannot be read).
 *
 * @returns The name.
 */
export function machineName(): string {
  if (hostName === undefined) {
    try {
      hostName = Deno.hostname();
    } catch {
      hostName = "localhost";
    }
  }
  return hostName;
}

/**
 * A celeriac application: tasks are registered on it and sent through it.
 *
 * Constructing an App opens nothing; the broker and backend connect on first use.
 *
 * @example
 * ```ts
 * import { App } from "@celeriac/celeriac";
 * await using app = new App({ broker: "memory://", backend: "memory://" });
 * const add = app.task("tasks.add", (x: number, y: number) => x + y);
 * const r = await add.delay(2, 2); // a worker would run it; nothing runs it here
 * console.assert((await r.state()) === "PENDING");
 * ```
 */
export class App extends EventTarget {
  /** Registered tasks by name. */
  readonly tasks: Map<string, Task<never[], unknown>> = new Map();
  /** The resolved options. */
  readonly conf: Readonly<
    Required<
      Omit<
        AppOptions,
        "broker" | "backend" | "routes" | "transportOptions" | "logger" | "beatSchedule"
      >
    > & {
      brokerUrl: string;
      backendUrl: string;
      routes: Routes | undefined;
      transportOptions: Record<string, unknown>;
    }
  >;
  /** The logger; the CLI replaces it with one that writes to stderr. */
  logger: Logger;
  /** This process's reply queue id, sent as `reply_to` (used by `rpc://`). */
  readonly oid: string = crypto.randomUUID();
  // Listener errors are logged, never thrown into the dispatcher (or the process).
  #guard = new GuardedListeners((error, type) =>
    this.logger.error(`A listener of ${type} failed: ${error}`, { error })
  );
  #broker: Promise<Broker> | undefined;
  #backend: Promise<Backend> | undefined;
  #periodic = new Map<string, BeatEntry>();
  #closing: Promise<void> | undefined;
  #control: Control | undefined;

  /**
   * Creates the app.
   *
   * @param options Broker, backend and defaults.
   */
  constructor(options: AppOptions = {}) {
    super();
    // A bare kv:// is the file next to the app module (or $CELERIAC_KV_PATH), made absolute
    // here so every process importing the module opens the same file, whatever its cwd.
    let dir: string | undefined | null = null;
    const kvDefault = (url: string) => withKvDefault(url, dir === null ? (dir = callerDir()) : dir);
    const brokerUrl = typeof options.broker === "string"
      ? kvDefault(options.broker)
      : options.broker?.url ?? kvDefault(env("CELERIAC_BROKER_URL") ?? "kv://");
    const backendUrl = typeof options.backend === "string"
      ? kvDefault(options.backend)
      : options.backend?.url ?? kvDefault(env("CELERIAC_RESULT_BACKEND") ?? "kv://");
    if (typeof options.broker === "object") this.#broker = Promise.resolve(options.broker);
    if (typeof options.backend === "object") this.#backend = Promise.resolve(options.backend);
    this.logger = options.logger ?? silent;
    const schedule = options.beatSchedule ?? {};
    for (
      const [name, entry] of schedule instanceof Map
        ? schedule as ReadonlyMap<string, BeatEntry>
        : Object.entries(schedule as Record<string, BeatEntry>)
    ) this.#periodic.set(name, entry);
    this.conf = {
      brokerUrl,
      backendUrl,
      defaultQueue: options.defaultQueue ?? "celery",
      routes: options.routes,
      resultExpires: options.resultExpires ?? 86_400_000,
      taskAlwaysEager: options.taskAlwaysEager ?? false,
      acksLate: options.acksLate ?? false,
      maxDeliveries: options.maxDeliveries ?? 10,
      brokerConnectionRetryOnStartup: options.brokerConnectionRetryOnStartup ?? true,
      brokerConnectionMaxRetries: options.brokerConnectionMaxRetries ?? 100,
      brokerConnectionTimeout: options.brokerConnectionTimeout ?? 4_000,
      transportOptions: options.transportOptions ?? {},
    };
    registerBuiltins(this);
  }

  /**
   * Listens to a signal; `event.detail` is typed by the event name (see `AppEventDetails`).
   *
   * @param type The event name, e.g. `"taskSuccess"`.
   * @param listener Called with the event.
   * @param options As `EventTarget.addEventListener`.
   */
  override addEventListener<K extends keyof AppEventMap>(
    type: K,
    listener: (this: App, event: AppEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Listens to any event by name.
   *
   * @param type The event name.
   * @param listener Called with the event.
   * @param options As `EventTarget.addEventListener`.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener && this.#guard.wrap(type, listener, options), options);
  }

  /**
   * Stops listening to a signal.
   *
   * @param type The event name.
   * @param listener The listener given to `addEventListener`.
   * @param options As `EventTarget.removeEventListener`.
   */
  override removeEventListener<K extends keyof AppEventMap>(
    type: K,
    listener: (this: App, event: AppEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Stops listening to any event by name.
   *
   * @param type The event name.
   * @param listener The listener given to `addEventListener`.
   * @param options As `EventTarget.removeEventListener`.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener && this.#guard.find(type, listener, options), options);
  }

  /**
   * Registers a task.
   *
   * @param name The name on the wire (what Python calls it by).
   * @param fn The function; sync or async; `this` is its context.
   * @param options Task options.
   * @returns The task.
   * @throws {TypeError} When the name is empty.
   */
  task<A extends unknown[], R>(
    name: string,
    fn: TaskFunction<A, R>,
    options: TaskOptions = {},
  ): Task<A, Awaited<R>> {
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`Cannot register a task: its name must be a non-empty string`);
    }
    const task = new Task<A, Awaited<R>>(
      this,
      name,
      fn as TaskFunction<A, Awaited<R> | Promise<Awaited<R>>>,
      options,
    );
    this.tasks.set(name, task as unknown as Task<never[], unknown>);
    return task;
  }

  /**
   * Adds (or replaces) a periodic task, as Celery's `add_periodic_task`.
   *
   * @param name The entry's name.
   * @param entry Task, schedule, arguments and send options.
   */
  addPeriodicTask(name: string, entry: BeatEntry): void {
    this.#periodic.set(name, entry);
  }

  /** The periodic tasks by name. */
  get periodicTasks(): ReadonlyMap<string, BeatEntry> {
    return this.#periodic;
  }

  /**
   * The broker, connected on first use: failed attempts are retried and logged as the
   * `brokerConnection*` options say.
   *
   * @param options `signal` gives up waiting (a worker stopped while connecting).
   * @returns The broker.
   * @throws {ConnectionFailedError} When it cannot connect.
   */
  async getBroker(options: { signal?: AbortSignal } = {}): Promise<Broker> {
    this.#broker ??= createBroker(this.conf.brokerUrl, {
      maxDeliveries: this.conf.maxDeliveries,
      transportOptions: this.conf.transportOptions,
      onError: this.#onConnectionError("broker"),
    });
    return await this.#connector.ready(await this.#broker, "broker", options.signal);
  }

  /**
   * The result backend, connected on first use (retried like the broker).
   *
   * @param options `signal` gives up waiting.
   * @returns The backend.
   * @throws {ConnectionFailedError} When it cannot connect.
   */
  async getBackend(options: { signal?: AbortSignal } = {}): Promise<Backend> {
    this.#backend ??= (async () => {
      const backendOptions: Parameters<typeof createBackend>[1] = {
        resultExpires: this.conf.resultExpires,
        transportOptions: this.conf.transportOptions,
        onError: this.#onConnectionError("result backend"),
      };
      if (this.conf.backendUrl.startsWith("rpc:")) backendOptions.broker = await this.getBroker();
      return await createBackend(this.conf.backendUrl, backendOptions);
    })();
    return await this.#connector.ready(await this.#backend, "result backend", options.signal);
  }

  #connector = new Connector(() => ({
    retry: this.conf.brokerConnectionRetryOnStartup,
    maxRetries: this.conf.brokerConnectionMaxRetries,
    timeout: this.conf.brokerConnectionTimeout,
    logger: this.logger,
  }));

  #onConnectionError(what: string): (error: Error) => void {
    const url = what === "broker" ? this.conf.brokerUrl : this.conf.backendUrl;
    return connectionErrorLogger(() => this.logger, what, redact(url));
  }

  /**
   * Replaces the broker and backend before first use. The Web Worker entry uses this to send
   * a task's own calls through the parent's connections.
   *
   * @param connections The broker and backend to use.
   */
  useConnections(connections: { broker: Broker; backend: Backend }): void {
    this.#broker = Promise.resolve(connections.broker);
    this.#backend = Promise.resolve(connections.backend);
  }

  /**
   * The queue a task goes to: the call's, a route's, the task's, or the default.
   *
   * @param name The task name.
   * @param queue The call's queue.
   * @returns The queue.
   */
  route(name: string, queue?: string): string {
    if (queue) return queue;
    const routes = this.conf.routes;
    if (typeof routes === "function") {
      const q = routes(name);
      if (q) return q;
    } else if (routes) {
      const hit = routes[name] ??
        Object.entries(routes).find(([k]) => k.endsWith("*") && name.startsWith(k.slice(0, -1)))
          ?.[1];
      if (hit) return typeof hit === "string" ? hit : hit.queue;
    }
    return this.tasks.get(name)?.options.queue ?? this.conf.defaultQueue;
  }

  /**
   * A handle on a task's result.
   *
   * @param id The task id.
   * @returns The handle.
   */
  asyncResult<R = unknown>(id: string): AsyncResult<R> {
    return new AsyncResult<R>(id, this);
  }

  /**
   * Sends a task by name: it need not be registered here (a Python worker may run it).
   *
   * @param name Task name.
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param options Call options.
   * @returns The result handle.
   * @throws {TypeError} When args is not an array or kwargs not an object.
   */
  async sendTask<R = unknown>(
    name: string,
    args: readonly unknown[] = [],
    kwargs: Record<string, unknown> = {},
    options: SendOptions = {},
  ): Promise<AsyncResult<R>> {
    if (!Array.isArray(args)) {
      throw new TypeError(`Cannot send ${name}: args must be an array, got ${typeof args}`);
    }
    if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs)) {
      throw new TypeError(`Cannot send ${name}: kwargs must be an object`);
    }
    if (this.conf.taskAlwaysEager) {
      const { id, message } = this.#compose(name, args, kwargs, options, this.oid);
      const result = new AsyncResult<R>(id, this);
      recordChild(result);
      await runEager(this, await this.getBackend(), decodeTask(message));
      return result;
    }
    let replyTo = this.oid;
    if (this.conf.backendUrl.startsWith("rpc:")) {
      // rpc:// results come back to this process's reply queue: declare it before sending.
      const backend = await this.getBackend();
      await backend.ready?.();
      replyTo = backend.replyTo ?? replyTo;
    }
    const { id, message, eta } = this.#compose(name, args, kwargs, options, replyTo);
    const queue = this.route(name, options.queue);
    // The PRODUCER span (null when tracing is off) writes traceparent into the headers.
    const span = startPublishSpan(
      { name, id, queue, brokerUrl: this.conf.brokerUrl, retries: options.retries ?? 0 },
      message,
    );
    try {
      const detail = { name, id, queue, message };
      this.dispatchEvent(new AppEvent("beforeTaskPublish", detail));
      const broker = await this.getBroker();
      const publishOptions = options.priority === undefined ? {} : { priority: options.priority };
      // Brokers whose Celery peers read ETAs from the queue (Redis) get the message now, with
      // its eta header; celeriac workers hand far ETAs back to the broker's schedule().
      if (eta && eta.getTime() > Date.now() && broker.producerEta !== "queue") {
        await broker.schedule(queue, message, eta, publishOptions);
      } else {
        await broker.publish(queue, message, publishOptions);
      }
      this.dispatchEvent(new AppEvent("afterTaskPublish", detail));
    } catch (error) {
      span?.fail(error);
      throw error;
    } finally {
      span?.end();
    }
    const result = new AsyncResult<R>(id, this);
    recordChild(result);
    return result;
  }

  // The message sendTask publishes: ids, lineage (from the running task), times, embed.
  #compose(
    name: string,
    args: readonly unknown[],
    kwargs: Record<string, unknown>,
    options: SendOptions,
    replyTo: string,
  ): { id: string; message: Message; eta: Date | null } {
    const id = options.taskId ?? crypto.randomUUID();
    const parent = currentTask.getStore();
    const now = Date.now();
    const eta = options.eta !== undefined
      ? new Date(options.eta)
      : options.countdown !== undefined
      ? new Date(now + options.countdown * 1000)
      : null;
    const expires = options.expires === undefined
      ? null
      : typeof options.expires === "number"
      ? new Date(now + options.expires * 1000)
      : new Date(options.expires);
    const list = (v: SignatureDict | SignatureDict[] | undefined) =>
      v === undefined ? null : Array.isArray(v) ? v : [v];
    const message = encodeTask({
      id,
      name,
      args: [...args],
      kwargs,
      rootId: options.rootId ?? parent?.rootId ?? id,
      parentId: options.parentId ?? parent?.id ?? null,
      group: options.group ?? null,
      groupIndex: options.groupIndex ?? null,
      shadow: options.shadow ?? null,
      eta,
      expires,
      retries: options.retries ?? 0,
      timeLimit: options.timeLimit ?? null,
      softTimeLimit: options.softTimeLimit ?? null,
      origin: `${Deno.pid}@${machineName()}`,
      ignoreResult: options.ignoreResult ?? false,
      replyTo,
      priority: options.priority ?? null,
      headers: options.headers ?? {},
      stamps: options.stamps ?? null,
      replacedTaskNesting: options.replacedTaskNesting ?? 0,
      callbacks: list(options.link),
      errbacks: list(options.linkError),
      chain: options.chain ?? null,
      chord: options.chord ?? null,
    });
    return { id, message, eta };
  }

  /**
   * Runs a registered task in this process, retrying as a worker would (without waiting for
   * countdowns), and returns its result. Nothing is stored.
   *
   * @param name Task name.
   * @param args Positional arguments.
   * @param kwargs Keyword arguments.
   * @param options `taskId`.
   * @returns The eager result.
   */
  applyEager<R = unknown>(
    name: string,
    args: unknown[],
    kwargs: Record<string, unknown>,
    options: { taskId?: string } = {},
  ): EagerResult<R> {
    const id = options.taskId ?? crypto.randomUUID();
    const parent = currentTask.getStore();
    const req: TaskRequest = {
      id,
      name,
      args,
      kwargs,
      embed: { callbacks: null, errbacks: null, chain: null, chord: null },
      rootId: parent?.rootId ?? id,
      parentId: parent?.id ?? null,
      group: null,
      groupIndex: null,
      shadow: null,
      eta: null,
      expires: null,
      retries: 0,
      timeLimit: [null, null],
      origin: null,
      ignoreResult: false,
      replyTo: null,
      priority: null,
      headers: {},
      protocol: 2,
    };
    return new EagerResult<R>(id, runEager(this, null, req));
  }

  /**
   * Runs a signature or a whole canvas in this process now, as `Signature.apply()` does:
   * chains, groups, chords, chunks, map and nested canvases run to the end here, with the
   * callbacks, errbacks and signals a worker would give. Results go to a private in-memory
   * backend (or to the app's backend with `taskAlwaysEager`), never to a broker.
   *
   * @param sig The canvas in dict form.
   * @param prepend Arguments put first (unless immutable).
   * @param kwargs Keyword arguments merged.
   * @param options `taskId`.
   * @returns The eager result: a task's, a chain's last step's, a chord body's value, or a
   * group's list of values.
   */
  applyCanvasEager<R = unknown>(
    sig: SignatureDict,
    prepend: unknown[],
    kwargs: Record<string, unknown>,
    options: { taskId?: string } = {},
  ): EagerResult<R> {
    const ctx = this.conf.taskAlwaysEager
      ? this
      : new EagerContext(this, (name, args, kwargs, send) =>
        this.#compose(name, args, kwargs, send, this.oid));
    return applyCanvasEager<R>(ctx, sig, prepend, kwargs, options);
  }

  /**
   * Sends a signature or canvas in Celery's dict form (what `Signature.applyAsync` calls).
   *
   * @param sig The signature dict.
   * @param prepend Arguments put before the signature's own (a parent's result).
   * @param kwargs Keyword arguments merged over the signature's.
   * @param options Call options.
   * @returns The result handle: a task's, a chain's last, a chord body's, or a group's.
   */
  sendSignature(
    sig: SignatureDict,
    prepend: unknown[],
    kwargs: Record<string, unknown>,
    options: SendOptions,
  ): Promise<AsyncResult | GroupResult> {
    return sendSignatureAsChild(this, sig, prepend, kwargs, options);
  }

  /**
   * Asks every worker not to run a task (remote control `revoke`), and to stop it when
   * `terminate` is set.
   *
   * @param taskId The task.
   * @param options Terminate or not.
   * @returns When the command is sent.
   */
  async revoke(taskId: string | string[], options: RevokeOptions = {}): Promise<void> {
    const broker = await this.getBroker();
    if (!broker.broadcast) {
      throw new TypeError(`Cannot revoke: broker ${broker.url} has no broadcast support`);
    }
    await broker.broadcast({
      exchange: "celery.pidbox",
      routingKey: "",
      message: {
        headers: { clock: 0, expires: 0 },
        properties: {},
        contentType: "application/json",
        contentEncoding: "utf-8",
        body: JSON.stringify({
          method: "revoke",
          arguments: {
            task_id: taskId,
            terminate: options.terminate ?? false,
            signal: options.signal ?? "SIGTERM",
          },
          destination: null,
          pattern: null,
          matcher: null,
        }),
      },
    });
  }

  /**
   * Asks every worker not to run tasks carrying these stamps (remote control
   * `revoke_by_stamped_headers`, Celery 5.3+), and to stop the running ones when `terminate`
   * is set.
   *
   * @param headers Stamp name → value or list of values.
   * @param options Terminate or not.
   * @returns When the command is sent.
   */
  async revokeByStampedHeaders(
    headers: Record<string, unknown>,
    options: RevokeOptions = {},
  ): Promise<void> {
    const broker = await this.getBroker();
    if (!broker.broadcast) {
      throw new TypeError(`Cannot revoke: broker ${broker.url} has no broadcast support`);
    }
    await this.control.revokeByStampedHeaders(headers, {
      terminate: options.terminate ?? false,
      signal: options.signal ?? "SIGTERM",
    });
  }

  /**
   * Remote control of workers: `inspect()`, `revoke()`, `rateLimit()`, `broadcast()`...
   *
   * @returns The control client.
   */
  get control(): Control {
    return this.#control ??= new Control(this);
  }

  /**
   * Every event on the `celeryev` exchange (from celeriac and Python workers), until
   * `signal` aborts. Batched `task.multi` messages come out one event at a time.
   *
   * @param options Signal and a type filter.
   * @returns The events.
   */
  async *events(options: ReceiveEventsOptions = {}): AsyncGenerator<CeleryEvent> {
    yield* receiveEvents(await this.getBroker(), options);
  }

  /**
   * Closes the broker and backend; idempotent.
   *
   * @returns When closed.
   * @throws {AggregateError} When closing failed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#connector.close();
      const errors: unknown[] = [];
      for (const resource of [this.#backend, this.#broker]) {
        // One that could not be made (a bad URL) has nothing to close: its error went to the
        // caller that asked for it, and must not come back from close() to hide it.
        const made = await resource?.catch(() => undefined);
        if (!made) continue;
        try {
          await made.close();
        } catch (error) {
          errors.push(error);
        }
      }
      if (errors.length) {
        throw new AggregateError(
          errors,
          `Closing the app failed: ${errors.map((e) => (e as Error)?.message ?? e).join("; ")}`,
        );
      }
    })();
  }

  /** Same as {@linkcode App.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
