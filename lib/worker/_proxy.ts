/**
 * Broker and backend calls made by tasks inside a Web Worker travel to the parent isolate,
 * which runs them on its own connections. One connection per process instead of one per Web
 * Worker, and `memory://` works across isolates.
 *
 * @module
 */

import type {
  Backend,
  ChordPart,
  ResultMeta,
  StoreOptions,
  WaitOptions,
} from "../backends/backend.ts";
import type { BroadcastMessage, Broker, Delivery, PublishOptions } from "../brokers/broker.ts";
import type { Message } from "../protocol/message.ts";

/** Messages from a Web Worker to the parent about proxied calls. */
export type ProxyRequest =
  | { type: "call"; callId: number; method: string; args: unknown[] }
  | { type: "cancel"; callId: number };

/** Messages from the parent to a Web Worker about proxied calls. */
export type ProxyResponse =
  | { type: "reply"; callId: number; ok: true; value: unknown }
  | { type: "reply"; callId: number; ok: false; error: { name: string; message: string } }
  | { type: "item"; callId: number; value: unknown };

const STREAMS = new Set(["backend.waitFor", "backend.watch"]);

/** The worker side: sends calls and routes replies. */
export class ProxyClient {
  #post: (m: ProxyRequest) => void;
  #next = 1;
  #calls = new Map<number, PromiseWithResolvers<unknown>>();
  #streams = new Map<
    number,
    { items: unknown[]; wake: () => void; done: boolean; error?: Error }
  >();

  /**
   * Creates the client.
   *
   * @param post Posts a message to the parent.
   */
  constructor(post: (m: ProxyRequest) => void) {
    this.#post = post;
  }

  /**
   * Handles a message from the parent; returns false when it is not a proxy message.
   *
   * @param m The message.
   * @returns Whether it was handled.
   */
  handle(m: { type: string }): boolean {
    if (m.type !== "reply" && m.type !== "item") return false;
    const r = m as ProxyResponse;
    const stream = this.#streams.get(r.callId);
    if (stream) {
      if (r.type === "item") stream.items.push(r.value);
      else {
        stream.done = true;
        if (!r.ok) stream.error = Object.assign(new Error(r.error.message), { name: r.error.name });
      }
      stream.wake();
      return true;
    }
    const call = this.#calls.get(r.callId);
    if (!call || r.type !== "reply") return true;
    this.#calls.delete(r.callId);
    if (r.ok) call.resolve(r.value);
    else call.reject(Object.assign(new Error(r.error.message), { name: r.error.name }));
    return true;
  }

  /**
   * Calls a method on the parent's broker or backend.
   *
   * @param method `broker.publish`, `backend.get`, ...
   * @param args Its arguments (structured-clone safe).
   * @returns Its result.
   */
  call<T>(method: string, ...args: unknown[]): Promise<T> {
    const callId = this.#next++;
    const pending = Promise.withResolvers<unknown>();
    this.#calls.set(callId, pending);
    this.#post({ type: "call", callId, method, args });
    return pending.promise as Promise<T>;
  }

  /**
   * Streams the items of an async-iterable method on the parent.
   *
   * @param method `backend.waitFor` or `backend.watch`.
   * @param args Its arguments.
   * @param signal Stops the stream.
   * @returns The items.
   */
  async *stream<T>(method: string, args: unknown[], signal?: AbortSignal): AsyncGenerator<T> {
    const callId = this.#next++;
    let wake = () => {};
    const state = { items: [] as unknown[], wake: () => wake(), done: false } as {
      items: unknown[];
      wake: () => void;
      done: boolean;
      error?: Error;
    };
    this.#streams.set(callId, state);
    const onAbort = () => wake();
    signal?.addEventListener("abort", onAbort);
    this.#post({ type: "call", callId, method, args });
    try {
      while (true) {
        if (state.items.length) {
          yield state.items.shift() as T;
          continue;
        }
        if (state.error) throw state.error;
        if (state.done) return;
        if (signal?.aborted) throw signal.reason;
        await new Promise<void>((r) => wake = r);
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.#streams.delete(callId);
      if (!state.done) this.#post({ type: "cancel", callId });
    }
  }
}

/** A broker whose calls run in the parent isolate. */
export class ProxyBroker implements Broker {
  readonly url: string;
  #client: ProxyClient;

  /**
   * Creates the proxy.
   *
   * @param url The parent broker's URL.
   * @param client The call channel.
   */
  constructor(url: string, client: ProxyClient) {
    this.url = url;
    this.#client = client;
  }
  publish(queue: string, message: Message, options?: PublishOptions): Promise<void> {
    return this.#client.call("broker.publish", queue, message, options ?? {});
  }
  schedule(queue: string, message: Message, eta: Date, options?: PublishOptions): Promise<void> {
    return this.#client.call("broker.schedule", queue, message, eta, options ?? {});
  }
  // deno-lint-ignore require-yield
  async *consume(): AsyncGenerator<Delivery> {
    throw new TypeError("Cannot consume from inside a task");
  }
  purge(queue: string): Promise<number> {
    return this.#client.call("broker.purge", queue);
  }
  broadcast(message: BroadcastMessage): Promise<void> {
    return this.#client.call("broker.broadcast", message);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A result backend whose calls run in the parent isolate. */
export class ProxyBackend implements Backend {
  readonly url: string;
  #client: ProxyClient;

  /**
   * Creates the proxy.
   *
   * @param url The parent backend's URL.
   * @param client The call channel.
   */
  constructor(url: string, client: ProxyClient) {
    this.url = url;
    this.#client = client;
  }
  store(taskId: string, meta: ResultMeta, options: StoreOptions = {}): Promise<void> {
    return this.#client.call("backend.store", taskId, meta, options);
  }
  get(taskId: string): Promise<ResultMeta | null> {
    return this.#client.call("backend.get", taskId);
  }
  waitFor(taskIds: readonly string[], options: WaitOptions = {}): AsyncIterable<ResultMeta> {
    return this.#client.stream("backend.waitFor", [[...taskIds]], options.signal);
  }
  watch(taskId: string, options: WaitOptions = {}): AsyncIterable<ResultMeta> {
    return this.#client.stream("backend.watch", [taskId], options.signal);
  }
  forget(taskId: string): Promise<void> {
    return this.#client.call("backend.forget", taskId);
  }
  saveGroup(groupId: string, taskIds: readonly string[]): Promise<void> {
    return this.#client.call("backend.saveGroup", groupId, [...taskIds]);
  }
  restoreGroup(groupId: string): Promise<string[] | null> {
    return this.#client.call("backend.restoreGroup", groupId);
  }
  deleteGroup(groupId: string): Promise<void> {
    return this.#client.call("backend.deleteGroup", groupId);
  }
  setChordSize(groupId: string, size: number): Promise<void> {
    return this.#client.call("backend.setChordSize", groupId, size);
  }
  chordPartReturn(groupId: string, index: number, part: ChordPart): Promise<ChordPart[] | null> {
    return this.#client.call("backend.chordPartReturn", groupId, index, part);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The parent side: runs proxied calls on real connections.
 */
export class ProxyServer {
  #broker: Broker;
  #backend: Backend;
  #streams = new Map<number, AbortController>();

  /**
   * Creates the server.
   *
   * @param broker The parent's broker.
   * @param backend The parent's backend.
   */
  constructor(broker: Broker, backend: Backend) {
    this.#broker = broker;
    this.#backend = backend;
  }

  /**
   * Handles one request from a Web Worker.
   *
   * @param m The request.
   * @param post Posts the response(s) back.
   */
  async handle(m: ProxyRequest, post: (r: ProxyResponse) => void): Promise<void> {
    if (m.type === "cancel") {
      this.#streams.get(m.callId)?.abort();
      return;
    }
    const [target, name] = m.method.split(".") as [string, string];
    const object = (target === "broker" ? this.#broker : this.#backend) as unknown as Record<
      string,
      (...args: unknown[]) => unknown
    >;
    try {
      const fn = object[name];
      if (typeof fn !== "function" || name === "close" || name === "consume") {
        throw new TypeError(`Cannot proxy ${m.method}`);
      }
      if (STREAMS.has(m.method)) {
        const controller = new AbortController();
        this.#streams.set(m.callId, controller);
        try {
          const iterable = fn.call(object, ...m.args, {
            signal: controller.signal,
          }) as AsyncIterable<
            unknown
          >;
          for await (const value of iterable) post({ type: "item", callId: m.callId, value });
        } catch (error) {
          if (!controller.signal.aborted) throw error;
        } finally {
          this.#streams.delete(m.callId);
        }
        post({ type: "reply", callId: m.callId, ok: true, value: null });
        return;
      }
      const value = await fn.apply(object, m.args);
      post({ type: "reply", callId: m.callId, ok: true, value: value ?? null });
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      post({
        type: "reply",
        callId: m.callId,
        ok: false,
        error: { name: e.name, message: e.message },
      });
    }
  }

  /** Stops every stream. */
  close(): void {
    for (const c of this.#streams.values()) c.abort();
    this.#streams.clear();
  }
}
