// Benchmark: one changed todo in a scope of 100,000 reaches its subscriber (from the pull that brings
// it to the subscription's callback), in headless Chromium, against a bare loop that builds the new
// list over the same data, in the same page; medians. No server: the page answers its own requests.
//
//   node bench/subscription.mjs [--todos N] [--rounds N]
import { fileURLToPath } from "node:url";
import path from "node:path";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const option = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
};
const todos = Number(option("todos", 100_000));
const rounds = Number(option("rounds", 50));

const bundle = await esbuild.build({
  entryPoints: [path.join(here, "subscription-page.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  write: false,
  tsconfig: path.join(here, "../tsconfig.json"),
});
const script = bundle.outputFiles[0].text;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
try {
  const page = await browser.newPage();
  const origin = "http://bench.invalid";
  await page.route(`${origin}/**`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!doctype html><script type="module">${script}</script>` }),
  );
  await page.goto(`${origin}/bench.html`);
  await page.waitForFunction(() => globalThis.bench !== undefined);
  const loop = median(await page.evaluate(([n, r]) => globalThis.bench.bareLoop(n, r), [todos, rounds]));
  console.log(`${todos} todos, ${rounds} rounds; bare loop: median ${loop.toFixed(2)} ms`);
  for (const store of ["memory", "indexeddb"]) {
    const times = await page.evaluate(([n, r, s]) => globalThis.bench.subscription(n, r, s), [todos, rounds, store]);
    const m = median(times);
    console.log(`pull to callback (${store} store): median ${m.toFixed(2)} ms, ratio to the bare loop ${(m / loop).toFixed(1)}`);
  }
} finally {
  await browser.close();
}
