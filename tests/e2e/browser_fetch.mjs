// Opens one page in Debian's Chromium, headless, and prints what the page reported.
//
// Usage: node browser_fetch.mjs PAGE_URL USER_DATA_DIR
//
// This helper owns only the browser: it loads PAGE_URL (a page that runs fetch() against
// the gateway and stores its findings in `window.__result`), waits for the result (bounded),
// prints it as one JSON line on stdout and closes the browser. What the page does and what
// is asserted live in test_browser.py. Exit code 2: the browser could not be driven.
import { chromium } from "playwright-core";

const [pageUrl, userDataDir] = process.argv.slice(2);
const RESULT_TIMEOUT_MS = 20000;

if (!pageUrl || !userDataDir) {
  console.error("usage: node browser_fetch.mjs PAGE_URL USER_DATA_DIR");
  process.exit(2);
}

let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: RESULT_TIMEOUT_MS,
  });
  const page = await context.newPage();
  await page.goto(pageUrl, { timeout: RESULT_TIMEOUT_MS });
  await page.waitForFunction(() => window.__result !== undefined, null, {
    timeout: RESULT_TIMEOUT_MS,
  });
  const result = await page.evaluate(() => window.__result);
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (error) {
  console.error(`browser_fetch: ${error}`);
  process.exitCode = 2;
} finally {
  if (context) {
    await context.close();
  }
}
