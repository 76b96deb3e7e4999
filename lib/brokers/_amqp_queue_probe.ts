/**
 * What an existing queue is, over AMQP alone: AMQP has no "describe queue", but an active
 * `queue.declare` with other arguments than the queue has fails with `PRECONDITION_FAILED`
 * naming one differing argument and its current value
 * (`inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received none but current
 * is the value '5' of type 'byte'`). Declaring `x-queue-type: quorum` and then each argument
 * the refusals name, one at a time, finds the queue's type and its quorum arguments
 * (`x-delivery-limit`, `x-dead-letter-exchange`, ...) without changing the queue. Each try
 * runs on a throw-away channel, since a refusal closes it.
 *
 * celeriac needs this for a queue it adopts: a quorum queue refuses global QoS (the server
 * closes the whole connection with `NOT_IMPLEMENTED`), takes native delayed delivery, and may
 * drop a message after `x-delivery-limit` returns.
 *
 * @module
 */

// @ts-types="@types/amqplib"
import type amqp from "amqplib";

/** What {@linkcode probeQueue} found. */
export interface QueueProbe {
  /** `x-queue-type`: `quorum`, `classic`, `stream`, ... (`classic` when the queue has none). */
  type: string;
  /** The arguments found (all of them for a quorum queue; only the type otherwise). */
  arguments: Record<string, unknown>;
}

const INEQUIVALENT =
  /inequivalent arg '([^']+)' for queue '.*' in vhost '.*': received (.+) but current is (.+)$/s;

// "none", "'quorum'", "the value '5' of type 'byte'" -> the value (undefined for none).
function parseValue(text: string): { value: unknown } | null {
  text = text.trim().replace(/"$/, "");
  if (text === "none") return { value: undefined };
  const typed = /^the value '(.*)' of type '([a-z]+)'$/s.exec(text);
  const plain = /^'(.*)'$/s.exec(text);
  const raw = typed?.[1] ?? plain?.[1];
  if (raw === undefined) return null;
  const type = typed?.[2];
  if (type === "bool") return { value: raw === "true" };
  if (type === "longstr" || type === undefined && !/^-?\d+$/.test(raw)) return { value: raw };
  if (type === undefined || ["byte", "short", "long", "signedint", "unsignedint"].includes(type)) {
    return /^-?\d+$/.test(raw) ? { value: Number(raw) } : null;
  }
  return null;
}

/**
 * Finds an existing queue's type, and for a quorum queue its arguments.
 *
 * @param connection An open connection.
 * @param queue The queue (must exist: a missing one would be created).
 * @returns What was found; `null` when the answers could not be read.
 */
export async function probeQueue(
  connection: amqp.ChannelModel,
  queue: string,
): Promise<QueueProbe | null> {
  const args: Record<string, unknown> = { "x-queue-type": "quorum" };
  for (let attempt = 0; attempt < 16; attempt++) {
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    try {
      await channel.assertQueue(queue, { durable: true, arguments: args });
      return { type: "quorum", arguments: args };
    } catch (error) {
      if ((error as { code?: number })?.code !== 406) throw error;
      const match = INEQUIVALENT.exec((error as Error).message);
      if (!match) return null;
      const [, property, , currentText] = match as unknown as [string, string, string, string];
      const current = parseValue(currentText);
      if (property === "x-queue-type") {
        const type = typeof current?.value === "string" ? current.value : "classic";
        return { type, arguments: { "x-queue-type": type } };
      }
      if (!current || property === "durable" || property === "auto_delete") {
        // Past the type check, so quorum; the rest cannot be read.
        return { type: "quorum", arguments: args };
      }
      if (current.value === undefined) delete args[property];
      else args[property] = current.value;
    } finally {
      await channel.close().catch(() => {});
    }
  }
  return { type: "quorum", arguments: args };
}
