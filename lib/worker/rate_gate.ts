/**
 * The worker's rate limits: a task's own `rateLimit` (per worker, changeable at run time by
 * the `rate_limit` control command) and its `globalRateLimit` (shared by every worker through
 * the broker's store).
 *
 * @module
 */

import type { TaskRequest } from "../protocol/message.ts";
import type { RateLimit, TaskOptions } from "../task_options.ts";
import { delay } from "../_signal.ts";
import { createRateLimiter, MemoryRateLimiter, parseRate, type RateLimiter } from "./rate_limit.ts";

/** Options of {@linkcode RateGate}. */
export interface RateGateOptions {
  /** The broker URL, whose store the global limiter uses. */
  brokerUrl: string;
  /** Key prefix of the global limiter's keys (the broker's). */
  prefix?: string;
  /** The global limiter, when given by the user. */
  limiter?: RateLimiter;
  /** A task waits in the worker at most this long for its slot, in ms. @default {2000} */
  holdMs?: number;
  /** Aborts the waits (warm shutdown). */
  signal: AbortSignal;
}

/** What {@linkcode RateGate.pass} says: run now, reschedule to `eta`, or stopped (`null`). */
export type Passage = { go: true } | { go: false; eta: Date | null };

/** Waits for tasks' rate limits. */
export class RateGate {
  #options: RateGateOptions;
  #local = new MemoryRateLimiter();
  #global: Promise<RateLimiter> | undefined;
  #rates = new Map<string, number>();

  /**
   * Creates the gate.
   *
   * @param options Broker URL, limiter, hold time and signal.
   */
  constructor(options: RateGateOptions) {
    this.#options = options;
  }

  /**
   * Changes the per-worker rate of a task type; `undefined` restores the task's own.
   *
   * @param name The task name.
   * @param rate The rate (`0`, `""` or `null`: none).
   * @throws {TypeError} When the rate cannot be read.
   */
  set(name: string, rate: RateLimit | null | undefined): void {
    if (rate === undefined) this.#rates.delete(name);
    else this.#rates.set(name, parseRate(rate));
  }

  /**
   * Waits until the task may run. A slot further away than `holdMs` is not waited for: the
   * answer is then the time to reschedule the message to, so it holds no prefetch slot.
   *
   * @param req The request.
   * @param options The task's options.
   * @returns The passage.
   */
  async pass(req: TaskRequest, options: Readonly<TaskOptions>): Promise<Passage> {
    const hold = this.#options.holdMs ?? 2000;
    const local = this.#rates.get(req.name) ?? parseRate(options.rateLimit);
    const global = parseRate(options.globalRateLimit);
    const limits: [() => Promise<RateLimiter>, number][] = [];
    if (local > 0) limits.push([() => Promise.resolve(this.#local), local]);
    if (global > 0) limits.push([() => this.#globalLimiter(), global]);
    for (const [limiter, rate] of limits) {
      const { reserved, waitMs } = await (await limiter()).reserve(req.name, rate, hold);
      if (!reserved) return { go: false, eta: new Date(Date.now() + waitMs) };
      if (waitMs > 0) {
        try {
          await delay(waitMs, this.#options.signal);
        } catch {
          return { go: false, eta: null };
        }
      }
    }
    return { go: true };
  }

  /**
   * Closes the global limiter if the gate made it.
   *
   * @returns When closed.
   */
  async close(): Promise<void> {
    const limiter = await this.#global?.catch(() => undefined);
    if (limiter && !this.#options.limiter) await limiter.close().catch(() => {});
  }

  #globalLimiter(): Promise<RateLimiter> {
    const o = this.#options;
    return this.#global ??= o.limiter
      ? Promise.resolve(o.limiter)
      : createRateLimiter(o.brokerUrl, o.prefix === undefined ? {} : { prefix: o.prefix });
  }
}
