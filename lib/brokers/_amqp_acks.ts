/**
 * The acks of one consumer channel, sent together. Acks made in one turn of the event loop
 * leave as one `basic.ack` with `multiple` for the longest run of settled deliveries at the
 * front of the channel's window, plus one plain `basic.ack` for each acked delivery behind a
 * delivery still unsettled. RabbitMQ then handles one frame where it handled one per message.
 *
 * A `multiple` ack with tag T acks every delivery up to T that the server still holds, and
 * fails the channel if T itself is not one of them. So T is always a delivery acked in this
 * batch, and every delivery before it has been settled here first: acked in this batch, or
 * acked, rejected or requeued before (those frames went out earlier, in order). A delivery
 * still held (waiting in the consumer, or running) stops the run, so it is never acked by
 * accident. Only deliveries no frame has settled are remembered, so a delivery held for long
 * (or never settled) costs one entry, not one per delivery after it.
 *
 * @module
 */

import type amqp from "amqplib";
import { setImmediate } from "node:timers";

/** Coalesces the acks of one channel. */
export class ChannelAcks {
  readonly #channel: amqp.Channel;
  // Deliveries no frame has settled yet (held, or acked since the last flush), in the order the
  // server sent them: a Set keeps insertion order, and tags only grow.
  #open = new Set<number>();
  // Tags acked since the last flush.
  #pending: number[] = [];
  #scheduled = false;

  /**
   * @param channel The consumer channel.
   */
  constructor(channel: amqp.Channel) {
    this.#channel = channel;
  }

  /**
   * Records a delivery as the server sent it.
   *
   * @param tag Its delivery tag.
   */
  delivered(tag: number): void {
    this.#open.add(tag);
  }

  /**
   * Records a delivery settled by a frame already sent (`basic.nack`, `basic.reject`).
   *
   * @param tag Its delivery tag.
   */
  settled(tag: number): void {
    this.#open.delete(tag);
  }

  /**
   * Acks a delivery; the frame leaves at the end of this turn of the event loop.
   *
   * @param tag Its delivery tag.
   */
  ack(tag: number): void {
    this.#pending.push(tag);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends the pending acks now (before the channel closes, say). */
  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const pending = new Set(this.#pending);
    this.#pending = [];
    // The longest run of acked deliveries at the front of the open ones: everything before
    // its last tag has been settled by an earlier frame or is in the run.
    let multiple = -1;
    for (const tag of this.#open) {
      if (!pending.has(tag)) break;
      multiple = tag;
      this.#open.delete(tag);
      pending.delete(tag);
    }
    if (multiple >= 0) this.#send(multiple, true);
    for (const tag of pending) {
      this.#open.delete(tag);
      this.#send(tag, false);
    }
  }

  #send(tag: number, multiple: boolean): void {
    try {
      this.#channel.ack({ fields: { deliveryTag: tag } } as amqp.Message, multiple);
    } catch {
      // The channel closed under us: the server requeues what it still holds.
    }
  }
}
