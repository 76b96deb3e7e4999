// A producer process of tests/observe_test.ts: sends a chain obs.add(2, 2) | obs.add(4) and
// obs.nested(1), then obs.flaky (retries once), waits for each, and prints one JSON line with their ids.
// deno-lint-ignore-file no-console -- a test subprocess: one JSON line on stdout
import { chain } from "@celeriac/celeriac";
import { add, app } from "../apps/observe_app.ts";

const c = await chain(add.s(2, 2), add.s(4)).applyAsync();
const chainValue = await c.get({ timeout: 20_000 });
const nested = await app.sendTask("obs.nested", [1]);
const nestedChild = await nested.get({ timeout: 20_000 });
const flaky = await app.sendTask("obs.flaky");
const flakyValue = await flaky.get({ timeout: 20_000 });
console.log(
  JSON.stringify({
    last: c.id,
    chainValue,
    nested: nested.id,
    nestedChild,
    flaky: flaky.id,
    flakyValue,
  }),
);
await app.close();
