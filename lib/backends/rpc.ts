/**
 * `rpc://`: results travel back as AMQP messages to the caller's own reply queue, as Celery's
 * `celery/backends/rpc.py`: a task message carries `reply_to` = this process's reply queue
 * (the "oid"); the worker publishes the meta dict to the default exchange with routing key =
 * `reply_to`, `correlation_id` = task id, JSON, transient. Nothing is stored in the broker:
 *
 * - only the process that sent a task can read its result, and only while it is alive;
 * - `get()` returns what this process has received so far, or `null` (rpc cannot poll);
 *   `waitFor()`/`watch()` stream results as they arrive;
 * - groups and chords need shared state, which rpc does not have: `saveGroup`,
 *   `restoreGroup`, `deleteGroup`, `setChordSize` and `chordPartReturn` throw
 *   {@linkcode RpcNotSupportedError} (Celery raises `NotImplementedError` likewise). Use a
 *   Redis or KV backend with the AMQP broker for chords.
 *
 * The backend shares the AMQP connection of the `amqp://` broker it is given
 * (`BackendConnectOptions.broker`), or opens its own from `brokerUrl`: one socket per process,
 * as Celery uses the app's broker connection.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";
import { Buffer } from "node:buffer";
import { delay, Notifier } from "../_signal.ts";
import { CeleriacError } from "../errors.ts";
import { PushChannel } from "../transport/channel.ts";
import { parseJson, stringifyJson } from "../protocol/json.ts";
import { AmqpBroker } from "../brokers/amqp.ts";
import { AmqpConnection } from "../brokers/_amqp_connection.ts";
import type {
  Backend,
  BackendConnectOptions,
  ChordPart,
  ResultMeta,
  WaitOptions,
} from "./backend.ts";
import { readyEach, untilReady } from "./_wait.ts";

/** A feature the `rpc://` backend cannot offer (groups, chords). */
export class RpcNotSupportedError extends CeleriacError {
  /**
   * Creates the error.
   *
   * @param what The operation.
   */
  constructor(what: string) {
    super(
      `The rpc:// result backend does not support ${what}: results live only in the reply ` +
        `queue of the process that sent the task, so there is no shared state for groups or ` +
        `chord counters. Use a redis:// or kv:// result backend (with the amqp:// broker) instead`,
    );
    this.name = "RpcNotSupportedError";
  }
}

/** Options of {@linkcode RpcBackend.store}. */
export interface RpcStoreOptions {
  /** The reply queue of the caller (the task's `reply_to`). Default: this process's queue. */
  replyTo?: string | null;
  /** The correlation id (the task's `correlation_id`). Default: the task id. */
  correlationId?: string | null;
}

/** Options of {@linkcode RpcBackend}. */
export interface RpcBackendOptions extends BackendConnectOptions {
  /** The broker URL to connect with when no `amqp://` broker is given. */
  brokerUrl?: string;
  /**
   * The reply queue name (Celery's `app.thread_oid`).
   * @default {crypto.randomUUID()}
   */
  oid?: string;
  /**
   * `x-expires` of the reply queue: it is deleted this long after its consumer is gone, ms.
   * @default {60_000}
   */
  replyQueueExpires?: number;
}

/**
 * The rpc result backend.
 *
 * @example
 * ```ts ignore
 * import { AmqpBroker } from "../brokers/amqp.ts";
 * import { RpcBackend } from "./rpc.ts";
 * await using broker = new AmqpBroker("amqp://localhost//");
 * await using backend = new RpcBackend("rpc://", { broker });
 * await backend.ready(); // declare the reply queue before sending tasks
 * console.log(backend.replyTo); // put this in the task's reply_to
 * ```
 */
export class RpcBackend implements Backend {
  readonly url: string;
  readonly #conn: AmqpConnection;
  readonly #ownsConnection: boolean;
  readonly #oid: string;
  readonly #queueExpires: number;
  #cache = new Map<string, ResultMeta>();
  #forgotten = new Set<string>();
  #listeners = new Set<(meta: ResultMeta) => void>();
  #ready: Promise<void> | null = null;
  #channel: amqp.Channel | null = null;
  #publisher: Promise<amqp.Channel> | null = null;
  #closed = new AbortController();
  #closing: Promise<void> | null = null;
  #loop: Promise<void> | null = null;

  /**
   * Creates the backend.
   *
   * @param url `rpc://`.
   * @param options The broker to share, or a broker URL.
   * @throws {TypeError} Without an `amqp://` broker or `brokerUrl`.
   */
  constructor(url = "rpc://", options: RpcBackendOptions = {}) {
    this.url = url;
    const transport = (options.transportOptions ?? {}) as Partial<RpcBackendOptions>;
    const brokerUrl = options.brokerUrl ?? transport.brokerUrl;
    if (options.broker instanceof AmqpBroker) {
      this.#conn = options.broker.connection;
      this.#ownsConnection = false;
    } else if (typeof brokerUrl === "string") {
      this.#conn = new AmqpConnection(brokerUrl);
      this.#ownsConnection = true;
    } else {
      throw new TypeError(
        "Cannot use the rpc:// result backend: it needs an amqp:// broker (options.broker) " +
          "or options.brokerUrl",
      );
    }
    this.#oid = options.oid ?? transport.oid ?? crypto.randomUUID();
    this.#queueExpires = options.replyQueueExpires ?? transport.replyQueueExpires ?? 60_000;
  }

  /** The reply queue: set it as `reply_to` of every task this process sends. */
  get replyTo(): string {
    return this.#oid;
  }

  /**
   * Declares the reply queue and starts consuming it. Call it before sending a task whose
   * result you want (Celery's `on_task_call`); every read calls it too.
   *
   * @returns Nothing.
   */
  ready(): Promise<void> {
    if (this.#closed.signal.aborted) {
      return Promise.reject(new CeleriacError("The rpc:// backend is closed"));
    }
    if (!this.#ready) {
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      this.#ready = promise;
      promise.catch(() => {});
      this.#loop = this.#run(resolve, reject);
    }
    return this.#ready;
  }

  /**
   * Alias of {@linkcode RpcBackend.ready}, named as Celery's hook.
   *
   * @param _taskId The task about to be sent.
   * @returns Nothing.
   */
  onTaskCall(_taskId?: string): Promise<void> {
    return this.ready();
  }

  // Keeps one consumer on the reply queue, across reconnections.
  async #run(resolve: () => void, reject: (e: unknown) => void): Promise<void> {
    const signal = AbortSignal.any([this.#closed.signal, this.#conn.closedSignal]);
    let first = true;
    let wait = 100;
    while (!signal.aborted) {
      const lost = new Notifier();
      try {
        const model = await this.#conn.connection();
        const channel = await model.createChannel();
        channel.on("error", () => {});
        channel.on("close", () => lost.notify());
        await channel.assertQueue(this.#oid, {
          durable: false,
          autoDelete: false,
          arguments: { "x-expires": this.#queueExpires },
        });
        await channel.consume(this.#oid, (msg) => msg && this.#receive(msg), { noAck: true });
        this.#channel = channel;
        if (first) resolve();
        first = false;
        wait = 100;
        await lost.wait(signal);
        this.#channel = null;
      } catch (error) {
        this.#channel = null;
        if (first || signal.aborted || this.#conn.closedSignal.aborted) {
          // Let the next ready() try again from scratch.
          this.#ready = null;
          reject(error);
          return;
        }
        try {
          await delay(wait, signal);
        } catch {
          break;
        }
        wait = Math.min(wait * 2, 2_000);
      }
    }
    if (first) reject(new CeleriacError("The rpc:// backend closed before it was ready"));
  }

  #receive(msg: amqp.Message): void {
    let meta: ResultMeta;
    try {
      meta = parseJson(new TextDecoder().decode(msg.content)) as ResultMeta;
    } catch {
      return; // Not a result: nothing a reader could do with it.
    }
    if (meta === null || typeof meta !== "object" || typeof meta.status !== "string") return;
    const taskId = msg.properties.correlationId ?? meta.task_id;
    if (typeof taskId !== "string") return;
    this.#update(taskId, {
      ...meta,
      task_id: taskId,
      traceback: meta.traceback ?? null,
      children: meta.children ?? [],
      date_done: meta.date_done ?? null,
    });
  }

  #update(taskId: string, meta: ResultMeta): void {
    if (this.#forgotten.has(taskId)) return;
    if (this.#cache.get(taskId)?.status === "SUCCESS") return;
    this.#cache.set(taskId, structuredClone(meta));
    for (const l of this.#listeners) l(meta);
  }

  /**
   * Sends a task's meta to the caller's reply queue (or records it directly when the caller is
   * this process). A SUCCESS already received is never replaced.
   *
   * @param taskId The task id.
   * @param meta The meta.
   * @param options Where to reply (the task's `reply_to`).
   * @returns Nothing.
   */
  async store(taskId: string, meta: ResultMeta, options: RpcStoreOptions = {}): Promise<void> {
    const replyTo = options.replyTo || this.#oid;
    if (replyTo === this.#oid) {
      this.#update(taskId, meta);
      return;
    }
    const body = Buffer.from(stringifyJson(meta, ""), "utf8");
    let wait = 50;
    for (let attempt = 0;; attempt++) {
      try {
        const channel = await this.#publishChannel();
        channel.publish("", replyTo, body, {
          correlationId: options.correlationId ?? taskId,
          contentType: "application/json",
          contentEncoding: "utf-8",
          deliveryMode: 1,
        });
        await (channel as amqp.ConfirmChannel).waitForConfirms();
        return;
      } catch (error) {
        if (attempt >= 10 || this.#closed.signal.aborted) throw error;
        this.#publisher = null;
        await delay(wait);
        wait = Math.min(wait * 2, 1_000);
      }
    }
  }

  #publishChannel(): Promise<amqp.Channel> {
    this.#publisher ??= (async () => {
      const model = await this.#conn.connection();
      const channel = await model.createConfirmChannel();
      channel.on("error", () => {});
      channel.on("close", () => this.#publisher = null);
      return channel;
    })().catch((e) => {
      this.#publisher = null;
      throw e;
    });
    return this.#publisher;
  }

  /**
   * The latest meta this process received for a task; `null` if none yet (rpc cannot ask
   * anyone: PENDING, or a result meant for another process).
   *
   * @param taskId The task id.
   * @returns The meta or `null`.
   */
  async get(taskId: string): Promise<ResultMeta | null> {
    await this.ready();
    const meta = this.#cache.get(taskId);
    return meta ? structuredClone(meta) : null;
  }

  async *waitFor(
    taskIds: readonly string[],
    options: WaitOptions = {},
  ): AsyncGenerator<ResultMeta> {
    yield* readyEach(taskIds, (ids) => this.#changes(ids, options));
  }

  async *watch(taskId: string, options: WaitOptions = {}): AsyncGenerator<ResultMeta> {
    yield* untilReady(this.#changes(new Set([taskId]), options));
  }

  async *#changes(ids: Set<string>, options: WaitOptions): AsyncGenerator<ResultMeta> {
    const signal = AbortSignal.any([
      this.#closed.signal,
      ...(options.signal ? [options.signal] : []),
    ]);
    const metas = new PushChannel<ResultMeta>();
    const listener = (meta: ResultMeta) => {
      if (ids.has(meta.task_id)) metas.push(structuredClone(meta));
    };
    this.#listeners.add(listener);
    try {
      await this.ready();
      for (const id of ids) {
        const meta = this.#cache.get(id);
        if (meta) metas.push(structuredClone(meta));
      }
      yield* metas.stream(signal, { onAbort: "throw" });
    } finally {
      this.#listeners.delete(listener);
    }
  }

  /**
   * Drops what this process received for a task (later replies for it are ignored).
   *
   * @param taskId The task id.
   * @returns Nothing.
   */
  forget(taskId: string): Promise<void> {
    this.#cache.delete(taskId);
    this.#forgotten.add(taskId);
    return Promise.resolve();
  }

  /** @throws {RpcNotSupportedError} Always. */
  saveGroup(_groupId: string, _taskIds: readonly string[]): Promise<void> {
    return Promise.reject(new RpcNotSupportedError("saving groups (GroupResult.save())"));
  }

  /** @throws {RpcNotSupportedError} Always. */
  restoreGroup(_groupId: string): Promise<string[] | null> {
    return Promise.reject(new RpcNotSupportedError("restoring groups"));
  }

  /** @throws {RpcNotSupportedError} Always. */
  deleteGroup(_groupId: string): Promise<void> {
    return Promise.reject(new RpcNotSupportedError("deleting groups"));
  }

  /** @throws {RpcNotSupportedError} Always. */
  setChordSize(_groupId: string, _size: number): Promise<void> {
    return Promise.reject(new RpcNotSupportedError("chords"));
  }

  /** @throws {RpcNotSupportedError} Always. */
  chordPartReturn(
    _groupId: string,
    _groupIndex: number,
    _part: ChordPart,
  ): Promise<ChordPart[] | null> {
    return Promise.reject(new RpcNotSupportedError("chords"));
  }

  /**
   * Stops consuming, deletes the reply queue, and closes the connection if it is its own;
   * idempotent.
   *
   * @returns Nothing.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const channel = this.#channel;
      this.#closed.abort();
      if (channel) {
        await channel.deleteQueue(this.#oid).catch(() => {});
        await channel.close().catch(() => {});
      }
      await this.#loop?.catch(() => {});
      const publisher = await this.#publisher?.catch(() => null);
      await publisher?.close().catch(() => {});
      if (this.#ownsConnection) await this.#conn.close();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
