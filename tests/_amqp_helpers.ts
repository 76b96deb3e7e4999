// Helpers for tests against the shared RabbitMQ: unique names, cleanup of what a test made,
// and running Debian's Python (kombu/celery) as the other side.
// @ts-types="@types/amqplib"
import amqp from "amqplib";
import { runPython } from "./_control_helpers.ts";

export const AMQP_URL = Deno.env.get("CELERIAC_AMQP_URL") ?? "amqp://guest:guest@127.0.0.1:5672//";

/** Deletes queues and exchanges a test made (missing ones are fine). */
export async function cleanup(names: { queues?: string[]; exchanges?: string[] }): Promise<void> {
  const conn = await amqp.connect(AMQP_URL.replace(/\/\/$/, "/%2F"));
  try {
    for (const q of names.queues ?? []) {
      const ch = await conn.createChannel();
      ch.on("error", () => {});
      await ch.deleteQueue(q).catch(() => {});
      await ch.close().catch(() => {});
    }
    for (const x of names.exchanges ?? []) {
      const ch = await conn.createChannel();
      ch.on("error", () => {});
      await ch.deleteExchange(x).catch(() => {});
      await ch.close().catch(() => {});
    }
  } finally {
    await conn.close();
  }
}

/** The queues and exchange a broker declares for a task queue. */
export const taskQueueNames = (q: string) => ({ queues: [q, `${q}.dlq`], exchanges: [q] });

/** Runs a Python script with Debian's python3; returns stdout, throws on failure. */
export function python(script: string, args: string[] = [], timeoutMs = 30_000): Promise<string> {
  return runPython(script, { args, timeoutMs });
}

/** Counts ready and unacknowledged messages of a queue with rabbitmqctl. */
export async function queueCounts(queue: string): Promise<{ ready: number; unacked: number }> {
  const out = await new Deno.Command("rabbitmqctl", {
    args: [
      "list_queues",
      "-q",
      "--no-table-headers",
      "name",
      "messages_ready",
      "messages_unacknowledged",
    ],
    stdout: "piped",
    stderr: "null",
  }).output();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const [name, ready, unacked] = line.trim().split(/\s+/);
    if (name === queue) return { ready: Number(ready), unacked: Number(unacked) };
  }
  return { ready: 0, unacked: 0 };
}
