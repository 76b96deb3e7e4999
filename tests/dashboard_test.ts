// The dashboard in a real browser: `cli.ts dashboard` and `cli.ts worker` subprocesses on
// Redis and on a Deno KV file, the page in Debian's headless Chromium (tests/_browser.ts).
// Screenshots of every page go to tests/.screenshots/ (git-ignored).
import assert from "node:assert/strict";
import { join } from "node:path";
import { App } from "@celeriac/celeriac";
import {
  type Background,
  background,
  CLI,
  REDIS,
  REDIS_BACKEND,
  unique,
} from "./_control_helpers.ts";
import { launchBrowser, screenshot } from "./_browser.ts";
import type { Page } from "puppeteer-core";

// The browser's document, as the functions run in the page see it.
declare const document: {
  body: { innerText: string };
  querySelector(selector: string): { textContent: string | null } | null;
};

const APP = new URL("./apps/dashboard_app.ts", import.meta.url).pathname;
const XSS = "<script>alert(1)</script>";

interface Setup {
  label: string;
  broker: string;
  backend: string;
  prefix: string;
  queue: string;
}

function spawnCli(args: string[], setup: Setup): Background {
  return background(Deno.execPath(), ["run", "-A", CLI, ...args], {
    CELERIAC_BROKER_URL: setup.broker,
    CELERIAC_RESULT_BACKEND: setup.backend,
    CELERIAC_TEST_PREFIX: setup.prefix,
    CELERIAC_TEST_QUEUE: setup.queue,
    NO_COLOR: "1",
  });
}

async function text(page: Page, selector: string): Promise<string> {
  return await page.$eval(selector, (e) => e.textContent ?? "");
}

// Waits for a selector; on timeout the error carries the page's text.
async function see(page: Page, selector: string, timeout = 20_000): Promise<void> {
  try {
    await page.waitForSelector(selector, { timeout });
  } catch (error) {
    const body = await page.evaluate(() => document.body.innerText).catch(() => "");
    throw new Error(`${selector} not shown in ${timeout} ms; the page says:\n${body}`, {
      cause: error,
    });
  }
}

async function scenario(setup: Setup): Promise<void> {
  const hostname = `${unique("dash")}@test`;
  const dashboard = spawnCli(["dashboard", "--app", APP, "--port", "0"], setup);
  let worker: Background | undefined;
  const producer = new App({
    broker: setup.broker,
    backend: setup.backend,
    transportOptions: setup.prefix ? { global_keyprefix: setup.prefix } : {},
    defaultQueue: setup.queue,
  });
  const markerDir = await Deno.makeTempDir({ prefix: "celeriac-dash-marker-" });
  try {
    await dashboard.waitFor(/dashboard at http:\/\/\S+\//, 60_000);
    const url = /dashboard at (http:\/\/\S+\/)/.exec(dashboard.output())![1]!;
    await using b = await launchBrowser();
    const { page } = b;
    await page.goto(url + "#/workers");
    await see(page, "#live.on");
    await page.evaluate(() => (globalThis as { loadedOnce?: boolean }).loadedOnce = true);

    // A worker started after the page loaded appears, online, without a reload.
    worker = spawnCli([
      "worker",
      "--app",
      APP,
      "-Q",
      setup.queue,
      "-E",
      "-P",
      "inline",
      "-c",
      "4",
      "-n",
      hostname,
      "--heartbeat-interval",
      "1",
      "--without-mingle",
    ], setup);
    await see(page, `tr[data-worker="${hostname}"] [data-state="online"]`, 60_000);

    // A task with a script tag as its argument: shown as text, and no dialog opens.
    await page.goto(url + "#/tasks");
    const echo = await producer.sendTask("dash.echo", [XSS]);
    await see(page, `tr[data-task="${echo.id}"] [data-state="SUCCESS"]`);
    const shownArgs = await text(page, `tr[data-task="${echo.id}"] .task-args`);
    assert.ok(shownArgs.includes(XSS), `args shown as ${shownArgs}`);
    assert.equal(await page.$$eval("main script", (s) => s.length), 0);
    await screenshot(page, `${setup.label}-tasks`);

    // Revoke (terminate) a running task with the button: it turns REVOKED.
    const sleeper = await producer.sendTask("dash.sleep", [120_000]);
    await page.goto(url + `#/task/${sleeper.id}`);
    await see(page, `.fields [data-state="STARTED"]`);
    await page.click("#terminate");
    await see(page, "#modal:not([hidden])");
    await page.click("#modal-ok");
    await see(page, `.fields [data-state="REVOKED"]`);
    await screenshot(page, `${setup.label}-task`);

    // A dead-lettered message, replayed with its button, then succeeds.
    const marker = join(markerDir, "seen");
    const once = await producer.sendTask("dash.once", [marker]);
    await page.goto(url + "#/tasks");
    await see(page, `tr[data-task="${once.id}"] [data-state="REJECTED"]`);
    await page.goto(url + "#/queues");
    await see(page, `tr[data-queue="${setup.queue}"]`);
    await page.waitForFunction(
      (q) => document.querySelector(`tr[data-queue="${q}"] .dead-count`)?.textContent === "1",
      { timeout: 20_000 },
      setup.queue,
    );
    await screenshot(page, `${setup.label}-queues`);
    await page.goto(url + `#/queue/${encodeURIComponent(setup.queue)}`);
    await see(page, "tr[data-dead] button.replay");
    assert.equal(await text(page, "tr[data-dead] td:nth-child(2)"), once.id);
    await screenshot(page, `${setup.label}-queue`);
    await page.click("tr[data-dead] button.replay");
    await page.click("#modal-ok");
    await page.goto(url + "#/tasks");
    await see(page, `tr[data-task="${once.id}"] [data-state="SUCCESS"]`);
    assert.equal(await once.get({ timeout: 10_000 }), "replayed");

    // A failure shows its exception; the list now holds every outcome (the README picture).
    const failed = await producer.sendTask("dash.fail", []);
    await see(page, `tr[data-task="${failed.id}"] [data-state="FAILURE"]`);
    assert.match(await text(page, `tr[data-task="${failed.id}"]`), /boom/);
    await screenshot(page, `${setup.label}-tasks-all`);

    await page.goto(url + `#/worker/${encodeURIComponent(hostname)}`);
    await see(page, ".fields [data-state=online]");
    await screenshot(page, `${setup.label}-worker`);
    await page.goto(url + "#/workers");
    await see(page, `tr[data-worker="${hostname}"]`);
    await screenshot(page, `${setup.label}-workers`);
    await page.goto(url + "#/beat");
    await see(page, "main tbody tr td");
    assert.match(await page.evaluate(() => document.body.innerText), /nightly-report/);
    await screenshot(page, `${setup.label}-beat`);
    await page.goto(url + "#/charts");
    await see(page, ".chart canvas");
    await screenshot(page, `${setup.label}-charts`);

    // No reload happened on the way, and the page opened no dialog.
    assert.equal(
      await page.evaluate(() => (globalThis as { loadedOnce?: boolean }).loadedOnce),
      true,
    );
    assert.deepEqual(b.dialogs, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await producer.close();
    await worker?.stop();
    await dashboard.stop();
    await Deno.remove(markerDir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "the dashboard over a Redis worker: live worker and tasks, revoke, DLQ replay, escaping",
  // puppeteer-core keeps a pipe to Chromium open across the test's awaits.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await scenario({
      label: "redis",
      broker: REDIS,
      backend: REDIS_BACKEND,
      prefix: `${unique("dash")}:`,
      queue: unique("dash-q"),
    });
  },
});

Deno.test({
  name: "the dashboard over a kv:// worker: live worker and tasks, revoke, DLQ replay, escaping",
  // puppeteer-core keeps a pipe to Chromium open across the test's awaits.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "celeriac-dash-kv-" });
    try {
      const kv = `kv://${join(dir, "dash.kv")}`;
      await scenario({ label: "kv", broker: kv, backend: kv, prefix: "", queue: unique("dash-q") });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
