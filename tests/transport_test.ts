// The transport base on its own: the push-to-pull channel, and the consume loop driven by a
// minimal in-test hook set (what each broker supplies), so its rules are checked once.
import assert from "node:assert/strict";
import type { DeadLetterEvent, Delivery } from "../lib/brokers/broker.ts";
import { encodeTask, type Message } from "../lib/protocol/message.ts";
import { PushChannel } from "../lib/transport/channel.ts";
import {
  consumeLoop,
  type ConsumerHooks,
  type RawDelivery,
  type RejectHookOptions,
} from "../lib/transport/consume.ts";

const message = (id: string): Message => encodeTask({ id, name: "t", args: [], kwargs: {} });

Deno.test("PushChannel hands items to one reader in order and ends when closed", async () => {
  const channel = new PushChannel<number>();
  const got: number[] = [];
  const reader = (async () => {
    for await (const n of channel.stream()) got.push(n);
  })();
  for (let i = 0; i < 2000; i++) channel.push(i);
  await new Promise((r) => setTimeout(r, 10));
  channel.push(2000);
  channel.close();
  channel.push(9999);
  await reader;
  assert.equal(got.length, 2001);
  assert.ok(got.every((n, i) => n === i));
});

Deno.test("PushChannel with onAbort: throw yields what waits, then throws the reason", async () => {
  const channel = new PushChannel<string>();
  const controller = new AbortController();
  channel.push("a");
  controller.abort(new Error("stop"));
  const got: string[] = [];
  await assert.rejects(async () => {
    for await (const s of channel.stream(controller.signal, { onAbort: "throw" })) got.push(s);
  }, /stop/);
  assert.deepEqual(got, ["a"]);
  // The default ends at once on abort.
  channel.push("b");
  for await (const _ of channel.stream(controller.signal)) assert.fail("nothing after abort");
  assert.deepEqual(channel.take(5), ["b"]);
});

interface Raw extends RawDelivery {
  id: string;
}

// A hook set over an array: what a broker would do, with every call recorded.
function fakeBroker(raws: Raw[]) {
  const log: string[] = [];
  let renewals = 0;
  const hooks: ConsumerHooks<Raw> = {
    claim: (max) => Promise.resolve(raws.splice(0, max)),
    wait: (signal) =>
      new Promise<void>((r) => {
        const t = setTimeout(r, 20);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          r();
        }, { once: true });
      }),
    ack: (d) => {
      log.push(`ack ${d.id}`);
      return Promise.resolve();
    },
    reject: (d, o: RejectHookOptions) => {
      log.push(`reject ${d.id} ${o.requeue ? "requeue" : `dead: ${o.reason}`}`);
      return Promise.resolve(o.requeue ? "requeued" : "dead");
    },
    release: (ds) => {
      log.push(`release ${ds.map((d) => d.id).join(",")}`);
      return Promise.resolve();
    },
    renew: () => {
      renewals++;
      return Promise.resolve();
    },
    renewInterval: 10,
    close: () => {
      log.push("close");
      return Promise.resolve();
    },
  };
  return { hooks, log, renewals: () => renewals };
}

const raw = (id: string, extra: Partial<Raw> = {}): Raw => ({
  id,
  message: message(id),
  queue: "q",
  deliveryCount: 1,
  redelivered: false,
  ...extra,
});

Deno.test("consumeLoop dead-letters undecodable and worn-out messages itself and reports them", async () => {
  const broker = fakeBroker([
    raw("junk", { message: null, error: "envelope is not JSON", raw: "\x00" }),
    raw("worn", { deliveryCount: 4 }),
    raw("good"),
  ]);
  const events: DeadLetterEvent[] = [];
  const closed = new AbortController();
  const got: Delivery[] = [];
  for await (
    const d of consumeLoop(
      ["q"],
      {
        prefetch: 0,
        onDeadLetter: (e) => {
          events.push(e);
          throw new Error("a listener that throws cannot break the stream");
        },
      },
      { closed: closed.signal, maxDeliveries: 3 },
      () => Promise.resolve(broker.hooks),
    )
  ) {
    got.push(d);
    await d.ack();
    break;
  }
  assert.deepEqual(got.map((d) => d.message.headers.id), ["good"]);
  assert.deepEqual(events.map((e) => [e.queue, e.reason, e.raw]), [
    ["q", "envelope is not JSON", "\x00"],
    ["q", "delivered 4 times (maxDeliveries 3)", undefined],
  ]);
  assert.equal(events[1]!.message?.headers.id, "worn");
  assert.deepEqual(broker.log, [
    "reject junk dead: envelope is not JSON",
    "reject worn dead: delivered 4 times (maxDeliveries 3)",
    "ack good",
    "close",
  ]);
  closed.abort();
});

Deno.test("consumeLoop settles once, requeues past maxDeliveries to the dead letters, gives back on return()", async () => {
  const broker = fakeBroker([raw("a", { deliveryCount: 3 }), raw("b"), raw("c"), raw("d")]);
  const events: DeadLetterEvent[] = [];
  const closed = new AbortController();
  const it = consumeLoop(["q"], { prefetch: 3, onDeadLetter: (e) => events.push(e) }, {
    closed: closed.signal,
    maxDeliveries: 3,
  }, () => Promise.resolve(broker.hooks))[Symbol.asyncIterator]();
  const a = (await it.next()).value as Delivery;
  const first = a.reject({ requeue: true });
  assert.equal(a.ack(), first);
  assert.equal(a.reject(), first);
  await first;
  const b = (await it.next()).value as Delivery;
  await new Promise((r) => setTimeout(r, 50));
  await it.return(undefined);
  await b.reject({ reason: "bad args" });
  assert.deepEqual(broker.log, [
    "reject a dead: delivered 3 times (maxDeliveries 3)",
    "release c",
    "close",
    "reject b dead: bad args",
  ]);
  assert.equal(events.length, 1, "only the dead letter the broker decided is reported");
  assert.ok(broker.renewals() > 0, "leases were renewed while the loop ran");
  const before = broker.renewals();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(broker.renewals(), before, "renewals stop once nothing is held");
  closed.abort();
});

Deno.test("consumeLoop validates its arguments before opening a session", async () => {
  const closed = new AbortController().signal;
  let opened = 0;
  const open = () => {
    opened++;
    return Promise.resolve(fakeBroker([]).hooks);
  };
  for (
    const [queues, prefetch, error] of [
      [[], 1, TypeError],
      [[""], 1, TypeError],
      [["q"], -1, RangeError],
      [["q"], 2.5, RangeError],
    ] as const
  ) {
    await assert.rejects(
      () => consumeLoop(queues, { prefetch }, { closed, maxDeliveries: 1 }, open).next(),
      error,
    );
  }
  assert.equal(opened, 0);
});
