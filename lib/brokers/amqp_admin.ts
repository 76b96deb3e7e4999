/**
 * The admin method of the RabbitMQ broker that AMQP itself can answer: queue counts. A passive
 * `queue.declare` (`checkQueue`) tells a queue's ready messages; the dead letters are the
 * ready messages of `<queue>.dlq`. Unacked and TTL-delayed (ETA) counts need the management
 * plugin's HTTP API, so they are reported unknown (`null`).
 *
 * @module
 */

import type amqp from "amqplib";
import type { QueueCounts } from "./broker.ts";

// A missing queue closes the channel (404): each check gets its own channel.
async function readyCount(connection: amqp.ChannelModel, queue: string): Promise<number> {
  const channel = await connection.createChannel();
  channel.on("error", () => {});
  try {
    return (await channel.checkQueue(queue)).messageCount;
  } catch (error) {
    if ((error as { code?: number })?.code === 404) return 0;
    throw error;
  } finally {
    await channel.close().catch(() => {});
  }
}

/**
 * Counts of each queue: waiting and dead-lettered; reserved and scheduled are `null`.
 *
 * @param connection The broker's connection.
 * @param queues The queues.
 * @returns One entry per queue, in order.
 */
export async function amqpQueueCounts(
  connection: amqp.ChannelModel,
  queues: readonly string[],
): Promise<QueueCounts[]> {
  const counts: QueueCounts[] = [];
  for (const queue of queues) {
    counts.push({
      queue,
      waiting: await readyCount(connection, queue),
      reserved: null,
      scheduled: null,
      deadLettered: await readyCount(connection, `${queue}.dlq`),
    });
  }
  return counts;
}

/**
 * Deletes the dead letters of a queue: purges `<queue>.dlq`.
 *
 * @param connection The broker's connection.
 * @param queue The queue.
 * @returns How many were deleted (0 when there is no `<queue>.dlq`).
 */
export async function amqpPurgeDeadLetters(
  connection: amqp.ChannelModel,
  queue: string,
): Promise<number> {
  const channel = await connection.createChannel();
  channel.on("error", () => {});
  try {
    return (await channel.purgeQueue(`${queue}.dlq`)).messageCount;
  } catch (error) {
    if ((error as { code?: number })?.code === 404) return 0;
    throw error;
  } finally {
    await channel.close().catch(() => {});
  }
}
