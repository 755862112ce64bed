// End-to-end test of the signed-in web app in headless Chromium, against `todo --auth demo`:
// two users each see their own list and the one shared between them, and a removed member stops
// receiving its changes.
//
//   node e2e/users.mjs http://127.0.0.1:PORT
//
// Run by examples/todo/tests/browser.rs.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.argv[2];
if (!base) {
  console.error("usage: node e2e/users.mjs http://127.0.0.1:PORT");
  process.exit(2);
}
const deadline = setTimeout(() => {
  console.error("e2e users: timed out after 120 s");
  process.exit(1);
}, 120_000);
const log = (...args) => console.error("e2e users:", ...args);

/** A signed-in page for `name`, in a browser context of its own. */
async function signIn(browser, name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => log(`${name}: page error:`, error.message));
  await page.goto(base);
  await page.fill("#name", name);
  await page.press("#name", "Enter");
  await page.waitForSelector("body[data-ready=true]");
  await page.waitForSelector(`#me:text-is("${name}")`);
  return page;
}

/** The titles the page shows in the current list, sorted. */
const titles = (page) => page.$$eval("#todos li .title", (items) => items.map((t) => t.textContent).sort());
/** The names of the lists in the picker. */
const listNames = (page) => page.$$eval("#list-picker button", (items) => items.map((b) => b.textContent));

async function add(page, title) {
  await page.fill("#title", title);
  await page.press("#title", "Enter");
  await page.waitForSelector(`#todos li .title:text-is(${JSON.stringify(title)})`);
}

async function openList(page, name) {
  await page.locator("#list-picker button", { hasText: name }).click();
  await page.waitForSelector(`#list-picker button[aria-current=true]:text-is(${JSON.stringify(name)})`);
}

/** Waits until the page has pushed everything. */
const settled = (page) => page.waitForFunction(() => globalThis.todo.pendingCount === 0);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
});
try {
  const ann = await signIn(browser, "ann");
  const bob = await signIn(browser, "bob");

  // Each user's own list is theirs alone.
  await add(ann, "ann's secret");
  await add(bob, "bob's secret");
  await settled(ann);
  await settled(bob);
  assert.deepEqual(await titles(ann), ["ann's secret"]);
  assert.deepEqual(await titles(bob), ["bob's secret"]);

  // Ann creates a list and shares it with Bob, who then sees it and what is in it.
  await ann.fill("#list-title", "Groceries");
  await ann.press("#list-title", "Enter");
  await ann.waitForSelector('#list-picker button:text-is("Groceries")');
  await openList(ann, "Groceries");
  await add(ann, "milk");
  await ann.fill("#share-name", "bob");
  await ann.press("#share-name", "Enter");
  await ann.waitForSelector('#members li:has-text("bob")');
  await settled(ann);
  await bob.waitForSelector('#list-picker button:text-is("Groceries")', { timeout: 45_000 });
  assert.deepEqual(await listNames(bob), ["My todos", "Groceries"]);
  await openList(bob, "Groceries");
  await bob.waitForSelector('#todos li .title:text-is("milk")');
  assert.equal(await bob.locator("#todos li .by").first().textContent(), "by ann", "who created it shows");
  await add(bob, "bread");
  await ann.waitForSelector('#todos li .title:text-is("bread")');
  log("shared list converged");

  // Neither sees the other's own list.
  await openList(ann, "My todos");
  assert.deepEqual(await titles(ann), ["ann's secret"]);

  // Ann removes Bob: the list leaves his picker and his client, and he gets no more of its changes.
  await openList(ann, "Groceries");
  await ann.click('#members button[aria-label="Stop sharing with bob"]');
  await ann.waitForFunction(() => ![...document.querySelectorAll("#members li")].some((li) => li.textContent?.startsWith("bob")));
  await settled(ann);
  await bob.waitForFunction(
    () => ![...document.querySelectorAll("#list-picker button")].some((b) => b.textContent === "Groceries"),
    undefined,
    { timeout: 45_000 },
  );
  assert.ok(!(await bob.evaluate(() => globalThis.todo.scopes.some((s) => s.startsWith("list:")))), "the scope is dropped");
  await add(ann, "after bob left");
  await settled(ann);
  const groceries = await ann.evaluate(() => globalThis.todo.scopes.find((s) => s.startsWith("list:")));
  const kept = await bob.evaluate(async (scope) => {
    await globalThis.todo.pull();
    return globalThis.todo.view(scope).list("todo").map((t) => t.title);
  }, groceries);
  assert.deepEqual(kept, [], "bob's client holds none of the list, and gets none of its changes");
  log("a removed member stops receiving changes");
} finally {
  await browser.close();
  clearTimeout(deadline);
}
