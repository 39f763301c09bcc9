// Drives the web explorer in headless Chromium (playwright-core), as a person would: find a
// stream by search, open an event and copy its JSON, search by type, watch the live tail show
// an event appended through the API, and read the stats chart. Keeps a screenshot per page.
//
// Environment: BASE (the server's URL), PLAYWRIGHT_CORE (the playwright-core package's
// directory), CHROMIUM (the browser), SCREENSHOTS (a directory). Exits non-zero on failure.
"use strict";

const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const BASE = process.env.BASE;
const SHOTS = process.env.SCREENSHOTS;

function check(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const ready = () => page.waitForSelector("main[data-ready=true]");
  const navigate = async (action) => {
    await page.evaluate(() => { document.getElementById("main").dataset.ready = "false"; });
    await action();
    await ready();
  };

  try {
    // The root leads to the explorer's streams page.
    await page.goto(BASE + "/");
    await ready();
    check(page.url().endsWith("/explorer/"), `redirected to /explorer/ (at ${page.url()})`);
    const all = await page.locator("[data-testid=streams] tbody tr").count();
    check(all === 3, `three streams listed (saw ${all})`);
    await shot("streams");

    // Find a stream by search, with the keyboard: `/` focuses the search field.
    await page.keyboard.press("/");
    await page.keyboard.type("order-");
    await navigate(() => page.keyboard.press("Enter"));
    const found = await page.locator("[data-testid=streams] tbody tr").allTextContents();
    check(found.length === 1 && found[0].includes("order-1"), `only order-1 found (saw ${found})`);
    await navigate(() => page.click("text=order-1"));
    check((await page.textContent("[data-testid=stream-id]")) === "order-1", "the stream page of order-1");
    const versions = await page.locator("[data-testid=events] tbody tr").count();
    check(versions === 2, `order-1 holds two events (saw ${versions})`);
    await shot("stream");

    // `j` selects the first event, Enter opens it; its JSON is shown and copied.
    await page.keyboard.press("j");
    await navigate(() => page.keyboard.press("Enter"));
    const json = JSON.parse(await page.textContent("[data-testid=event-json]"));
    check(json.stream === "order-1" && json.version === 0, `the first event of order-1 (saw ${json.stream} ${json.version})`);
    check((await page.textContent("[data-testid=event-id]")) === json.id, "its id is shown");
    await page.click("[data-testid=copy-json]");
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    check(JSON.parse(copied).id === json.id, "Copy JSON puts the event's JSON on the clipboard");
    await page.click("[data-testid=copy-id]");
    check((await page.evaluate(() => navigator.clipboard.readText())) === json.id, "Copy id copies the id");
    await shot("event");

    // Search by namespace.Type.
    await navigate(() => page.keyboard.press("2"));
    await page.fill("[data-testid=search-type]", "shop.Placed");
    await navigate(() => page.click("[data-testid=search-submit]"));
    const placed = await page.locator("[data-testid=events] tbody tr").allTextContents();
    check(placed.length === 2 && placed.every((r) => r.includes("shop.Placed")), `two shop.Placed events (saw ${placed.length})`);
    await shot("search");

    // The live tail shows an event appended through the API.
    await navigate(() => page.keyboard.press("3"));
    await page.waitForSelector("[data-testid=live-status]:has-text('connected')");
    const appended = await fetch(`${BASE}/streams/live-1`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify([{ namespace: "shop", type: "Shipped", data: { parcel: "P-1" } }]),
    });
    check(appended.status === 201, `the append is stored (status ${appended.status})`);
    await page.waitForSelector("[data-testid=live-events] tr:has-text('live-1')", { timeout: 15000 });
    const row = await page.textContent("[data-testid=live-events] tr");
    check(row.includes("shop.Shipped"), `the live row names the type (saw ${row})`);
    await shot("live");

    // The stats page: counts and the chart of the last hour.
    await navigate(() => page.keyboard.press("4"));
    await page.waitForSelector("[data-testid=chart] rect");
    const events = await page.textContent("[data-testid=stat-events]");
    check(events === "5", `five events counted (saw ${events})`);
    await shot("stats");

    check(problems.length === 0, `no script errors (${problems.join("; ")})`);
  } catch (e) {
    await shot("failure").catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
}

main().then(
  () => { console.log("explorer: every step passed"); },
  (e) => { console.error(`explorer: ${e.stack || e}`); process.exit(1); },
);
