/**
 * Autoscale (Celery `--autoscale max,min`): the pool grows by one while tasks wait for a
 * slot, and shrinks back towards `min` once it has not been busy for the keepalive.
 *
 * @module
 */

import { delay } from "../_signal.ts";
import type { Pool } from "./pool.ts";

/** Options of {@linkcode Autoscaler}. */
export interface AutoscalerOptions {
  /** The pool. */
  pool: Pool;
  /** Fewest slots (Web Workers or inline tasks). */
  min: number;
  /** Most slots. */
  max: number;
  /** How long the pool stays grown after the load is gone, in ms. @default {30_000} */
  keepaliveMs?: number;
  /** Tasks one slot runs at once (Web Workers' `childConcurrency`). @default {1} */
  perSlot?: number;
  /** Messages held now (running or waiting). */
  load: () => number;
  /** Logs each change. */
  log: (message: string) => void;
  /** Called when a grow finished (a slot may be free). */
  onGrown: () => void;
  /** Stops the shrink loop. */
  signal: AbortSignal;
}

/** Grows and shrinks a pool with the load. */
export class Autoscaler {
  #o: AutoscalerOptions;
  #size: number;
  #growing = false;
  #lastBusy = 0;
  #loop: Promise<void>;

  /**
   * Starts the shrink loop.
   *
   * @param options The pool, bounds and callbacks.
   */
  constructor(options: AutoscalerOptions) {
    this.#o = { ...options };
    this.#size = options.min;
    this.#loop = this.#shrinkLoop();
  }

  /** Slots now. */
  get size(): number {
    return this.#size;
  }

  /** Grows by one slot, unless at `max` or already growing. */
  grow(): void {
    const o = this.#o;
    if (this.#growing || this.#size >= o.max) return;
    this.#growing = true;
    this.#size++;
    this.#lastBusy = Date.now();
    o.pool.grow(1).then(
      () => o.log(`autoscale: grew to ${this.#size}`),
      (error) => {
        this.#size--;
        o.log(`Cannot grow the pool: ${error}`);
      },
    ).finally(() => {
      this.#growing = false;
      o.onGrown();
    });
  }

  /**
   * Changes the bounds at run time, as Celery's `Autoscaler.update` (remote control
   * `autoscale`): a `max` below the size shrinks the pool to it, a `min` above grows it.
   *
   * @param max Most slots, or `null` to keep it.
   * @param min Fewest slots, or `null` to keep it.
   * @returns The bounds now.
   */
  async update(max: number | null, min: number | null): Promise<{ max: number; min: number }> {
    const o = this.#o;
    if (max !== null) {
      if (max < this.#size) {
        const n = this.#size - max;
        this.#size = max;
        await o.pool.shrink(n);
      }
      o.max = max;
    }
    if (min !== null) {
      if (min > this.#size) {
        const n = min - this.#size;
        this.#size = min;
        await o.pool.grow(n);
        o.onGrown();
      }
      o.min = min;
    }
    return { max: o.max, min: o.min };
  }

  /**
   * Waits for the shrink loop to end (after `signal` aborts).
   *
   * @returns When stopped.
   */
  stopped(): Promise<void> {
    return this.#loop;
  }

  async #shrinkLoop(): Promise<void> {
    const o = this.#o;
    const keepalive = o.keepaliveMs ?? 30_000;
    const tick = Math.min(1000, keepalive / 4);
    while (!o.signal.aborted) {
      try {
        await delay(tick, o.signal);
      } catch {
        return;
      }
      const wanted = Math.max(o.min, Math.ceil(o.load() / (o.perSlot ?? 1)));
      if (wanted >= this.#size) this.#lastBusy = Date.now();
      else if (Date.now() - this.#lastBusy >= keepalive && !this.#growing) {
        const n = this.#size - wanted;
        this.#size = wanted;
        await o.pool.shrink(n);
        o.log(`autoscale: shrunk to ${wanted}`);
      }
    }
  }
}
