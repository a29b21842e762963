// Drives Debian's headless Chromium through page.html for tests/browser.rs
// and prints one line of JSON: what the page saw. Everything is bounded: the
// page's own waits by --timeout-ms, the whole run by twice that, after which
// the browser is closed and the script exits 2.
//
//   node run.mjs --mode exchange|gather --url turn:127.0.0.1:3478?transport=udp
//                --username alice --credential secret [--count 50]
//                [--timeout-ms 15000] [--home DIR] [--chromium /usr/bin/chromium]
//                [--ignore-certificate-errors]
//   node run.mjs --mode selftest --page-url http://127.0.0.1:9642/selftest/#token=T
//
// --mode selftest opens turnd's own self-test page (served by the admin
// listener) and prints its #summary JSON, the <body> data-state and
// data-result, and the URL of every request the page made.
//
// --home becomes Chromium's $HOME, so it reads the NSS database in
// DIR/.pki/nssdb (where the test puts its CA); without it a fresh empty one
// is used. The profile (--user-data-dir) is always a fresh temporary one.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    mode: { type: "string", default: "exchange" },
    url: { type: "string" },
    "page-url": { type: "string" },
    username: { type: "string" },
    credential: { type: "string" },
    count: { type: "string", default: "50" },
    "timeout-ms": { type: "string", default: "15000" },
    home: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "ignore-certificate-errors": { type: "boolean", default: false },
  },
});
if (args.mode === "selftest" ? !args["page-url"]
    : !args.url || args.username === undefined || args.credential === undefined) {
  console.error("run.mjs: --url, --username and --credential (or --page-url) are required");
  process.exit(64);
}
if (!["exchange", "gather", "selftest"].includes(args.mode)) {
  console.error(`run.mjs: unknown --mode ${args.mode}`);
  process.exit(64);
}
const timeoutMs = Number(args["timeout-ms"]);
const count = Number(args.count);

const scratch = mkdtempSync(join(tmpdir(), "turnd-chromium-"));
const home = args.home ?? join(scratch, "home");
const profile = join(scratch, "profile");

// Flags: headless on a loopback-only machine, with the background services
// that would otherwise try the network turned off.
const flags = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Without it Chromium gathers no candidates when loopback is the only
  // interface, and refuses loopback relay addresses as remote candidates.
  "--allow-loopback-in-peer-connection",
];
if (args["ignore-certificate-errors"]) flags.push("--ignore-certificate-errors");

// turnd's self-test page: waits until it says it is done (or failed).
async function selftest(page) {
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(args["page-url"], { timeout: timeoutMs });
  await page.waitForFunction(
    () => ["done", "error"].includes(document.body?.dataset.state),
    null,
    { timeout: 2 * timeoutMs - 1000 },
  );
  return page.evaluate((requests) => ({
    state: document.body.dataset.state,
    result: document.body.dataset.result ?? null,
    summary: JSON.parse(document.getElementById("summary").textContent),
    location: location.href,
    requests,
  }), requests);
}

let context;
const deadline = setTimeout(async () => {
  console.error(`run.mjs: no result within ${2 * timeoutMs} ms; closing the browser`);
  await context?.close().catch(() => {});
  rmSync(scratch, { recursive: true, force: true });
  process.exit(2);
}, 2 * timeoutMs);

let exitCode = 0;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: flags,
    env: { ...process.env, HOME: home },
    timeout: timeoutMs,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e}`));
  let result;
  if (args.mode === "selftest") {
    result = await selftest(page);
  } else {
    const here = dirname(fileURLToPath(import.meta.url));
    await page.goto(pathToFileURL(join(here, "page.html")).href, { timeout: timeoutMs });
    const opts = {
      iceServer: { urls: args.url, username: args.username, credential: args.credential },
      count,
      timeoutMs,
    };
    result = await page.evaluate(
      ([mode, o]) => (mode === "gather" ? window.turnd.gatherOnly(o) : window.turnd.exchange(o)),
      [args.mode, opts],
    );
  }
  result.browser = context.browser()?.version() ?? null;
  result.console = consoleLines;
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(`run.mjs: ${err?.stack ?? err}`);
  exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  clearTimeout(deadline);
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(exitCode);
