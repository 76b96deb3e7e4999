// The Backend conformance suite, run against every result backend.
import assert from "node:assert/strict";
import type { Backend, ResultMeta } from "../lib/backends/backend.ts";

export interface BackendFixture {
  backend: Backend;
  /** A prefix unique to this test run, for task and group ids. */
  prefix: string;
}

export const meta = (taskId: string, status: string, result: unknown = null): ResultMeta => ({
  status,
  result,
  traceback: null,
  children: [],
  date_done: status === "SUCCESS" || status === "FAILURE" ? "2026-11-21T01:20:05.808051" : null,
  task_id: taskId,
});

export function backendSuite(
  name: string,
  make: () => Promise<BackendFixture>,
  options: { ignore?: boolean; skip?: RegExp } = {},
) {
  const all = options.ignore ?? false;
  // `skip` leaves out the cases a backend cannot offer by design (e.g. rpc:// has no groups).
  const skipped = (name: string) => all || (options.skip?.test(name) ?? false);

  Deno.test({
    name: `${name}: get() is null (PENDING) until a meta is stored`,
    ignore: skipped(`get() is null (PENDING) until a meta is stored`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      assert.equal(await backend.get(`${prefix}-a`), null);
      await backend.store(`${prefix}-a`, meta(`${prefix}-a`, "SUCCESS", { x: [1, 2] }));
      const got = await backend.get(`${prefix}-a`);
      assert.equal(got?.status, "SUCCESS");
      assert.deepEqual(got?.result, { x: [1, 2] });
    },
  });

  Deno.test({
    name: `${name}: a stored SUCCESS is never overwritten`,
    ignore: skipped(`a stored SUCCESS is never overwritten`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const id = `${prefix}-s`;
      await backend.store(id, meta(id, "SUCCESS", 1));
      await backend.store(id, meta(id, "FAILURE", 2));
      assert.equal((await backend.get(id))?.result, 1);
    },
  });

  Deno.test({
    name: `${name}: waitFor() yields ready metas in completion order, stored ones first`,
    ignore: skipped(`waitFor() yields ready metas in completion order, stored ones first`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const [a, b, c] = ["a", "b", "c"].map((x) => `${prefix}-w${x}`) as [string, string, string];
      await backend.store(c, meta(c, "SUCCESS", 3));
      const seen: string[] = [];
      const done = (async () => {
        for await (const m of backend.waitFor([a, b, c])) seen.push(m.task_id);
      })();
      await new Promise((r) => setTimeout(r, 100));
      await backend.store(b, meta(b, "STARTED"));
      await backend.store(b, meta(b, "FAILURE", { exc_type: "ValueError" }));
      await new Promise((r) => setTimeout(r, 50));
      await backend.store(a, meta(a, "SUCCESS", 1));
      await done;
      assert.deepEqual(seen, [c, b, a]);
    },
  });

  Deno.test({
    name: `${name}: watch() yields progress states until the task is ready`,
    ignore: skipped(`watch() yields progress states until the task is ready`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const id = `${prefix}-p`;
      const states: string[] = [];
      const done = (async () => {
        for await (const m of backend.watch(id)) states.push(m.status);
      })();
      await new Promise((r) => setTimeout(r, 100));
      await backend.store(id, meta(id, "PROGRESS", { done: 50 }));
      await new Promise((r) => setTimeout(r, 50));
      await backend.store(id, meta(id, "SUCCESS", 1));
      await done;
      assert.deepEqual(states, ["PROGRESS", "SUCCESS"]);
    },
  });

  Deno.test({
    name: `${name}: waitFor() stops with the signal's reason when aborted`,
    ignore: skipped(`waitFor() stops with the signal's reason when aborted`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error("stop")), 100);
      await assert.rejects(async () => {
        for await (const _m of backend.waitFor([`${prefix}-never`], { signal: controller.signal }));
      }, /stop/);
    },
  });

  Deno.test({
    name: `${name}: waitFor() over 50 ids stored at once yields each exactly once`,
    ignore: skipped(`waitFor() over 50 ids stored at once yields each exactly once`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const ids = Array.from({ length: 50 }, (_, i) => `${prefix}-many-${i}`);
      await backend.store(ids[0]!, meta(ids[0]!, "SUCCESS", 0));
      const seen: string[] = [];
      const signal = AbortSignal.timeout(15_000);
      const done = (async () => {
        for await (const m of backend.waitFor(ids, { signal })) seen.push(m.task_id);
      })();
      await new Promise((r) => setTimeout(r, 100));
      await Promise.all(ids.slice(1).map((id, i) => backend.store(id, meta(id, "SUCCESS", i + 1))));
      await done;
      assert.equal(seen.length, 50);
      assert.deepEqual([...seen].sort(), [...ids].sort());
    },
  });

  Deno.test({
    name: `${name}: two waiters on one task both get its result`,
    ignore: skipped(`two waiters on one task both get its result`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const id = `${prefix}-two`;
      const signal = AbortSignal.timeout(15_000);
      const wait = async () => {
        for await (const m of backend.waitFor([id], { signal })) return m.result;
      };
      const both = Promise.all([wait(), wait()]);
      await new Promise((r) => setTimeout(r, 100));
      await backend.store(id, meta(id, "SUCCESS", { n: 7 }));
      assert.deepEqual(await both, [{ n: 7 }, { n: 7 }]);
    },
  });

  Deno.test({
    name: `${name}: forget() deletes a result`,
    ignore: skipped(`forget() deletes a result`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const id = `${prefix}-f`;
      await backend.store(id, meta(id, "SUCCESS", 1));
      await backend.forget(id);
      assert.equal(await backend.get(id), null);
    },
  });

  Deno.test({
    name: `${name}: groups are saved, restored and deleted`,
    ignore: skipped(`groups are saved, restored and deleted`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const gid = `${prefix}-g`;
      assert.equal(await backend.restoreGroup(gid), null);
      await backend.saveGroup(gid, ["x", "y"]);
      assert.deepEqual(await backend.restoreGroup(gid), ["x", "y"]);
      await backend.deleteGroup(gid);
      assert.equal(await backend.restoreGroup(gid), null);
    },
  });

  Deno.test({
    name: `${name}: chordPartReturn() completes the chord exactly once, parts in order`,
    ignore: skipped(`chordPartReturn() completes the chord exactly once, parts in order`),
    async fn() {
      const { backend, prefix } = await make();
      await using _ = backend;
      const gid = `${prefix}-chord`;
      const size = 20;
      await backend.setChordSize(gid, size);
      const order = [...Array(size).keys()].sort(() => Math.random() - 0.5);
      const results = await Promise.all(
        order.map((i) =>
          backend.chordPartReturn(gid, i, { taskId: `t${i}`, status: "SUCCESS", result: i * 10 })
        ),
      );
      const completions = results.filter((r) => r !== null);
      assert.equal(completions.length, 1);
      assert.deepEqual(
        completions[0]!.map((p) => p.result),
        [...Array(size).keys()].map((i) => i * 10),
      );
    },
  });
}
