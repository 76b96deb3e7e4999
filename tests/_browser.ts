// Headless Chromium for the dashboard tests: Debian's /usr/bin/chromium (as .ci/run installs
// it) driven by puppeteer-core, with a fresh profile; no browser download.
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export const CHROMIUM = Deno.env.get("CELERIAC_CHROMIUM") ?? "/usr/bin/chromium";

export interface TestBrowser extends AsyncDisposable {
  browser: Browser;
  page: Page;
  /** Messages of JavaScript dialogs (alert, confirm, prompt) the page opened. */
  dialogs: string[];
  /** Uncaught errors of the page. */
  errors: string[];
}

/** Launches Chromium and opens one page (1360×800). */
export async function launchBrowser(): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "celeriac-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    userDataDir: profile,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 800 });
  const dialogs: string[] = [];
  const errors: string[] = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return {
    browser,
    page,
    dialogs,
    errors,
    async [Symbol.asyncDispose]() {
      await browser.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

const SHOTS = new URL("./.screenshots/", import.meta.url);

/** Writes a screenshot to tests/.screenshots/<name>.png (git-ignored). */
export async function screenshot(page: Page, name: string): Promise<string> {
  await Deno.mkdir(SHOTS, { recursive: true });
  const path = new URL(`${name}.png`, SHOTS).pathname;
  await page.screenshot({ path: path as `${string}.png` });
  return path;
}
