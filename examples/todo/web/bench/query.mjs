// Benchmark: the live query `completed = false, order by title, limit 50` over 100,000 todos, in
// headless Chromium: its first result, and one changed todo from the pull that brings it to the
// live query's listener, each against a bare filter + sort + slice over the same todos in the same
// page; with and without an index on (completed, title). Medians per run; several runs.
//
//   node bench/query.mjs [--todos N] [--rounds N] [--runs N]
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
const rounds = Number(option("rounds", 20));
const runs = Number(option("runs", 3));

const bundle = await esbuild.build({
  entryPoints: [path.join(here, "query-page.ts")],
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
const ms = (value) => `${value.toFixed(2)} ms`;
try {
  console.log(`${todos} todos, ${rounds} rounds per run, ${runs} runs (a fresh page each)`);
  for (let run = 1; run <= runs; run++) {
    const page = await browser.newPage();
    const origin = "http://bench.invalid";
    await page.route(`${origin}/**`, (route) =>
      route.fulfill({ contentType: "text/html", body: `<!doctype html><script type="module">${script}</script>` }),
    );
    await page.goto(`${origin}/bench.html`);
    await page.waitForFunction(() => globalThis.bench !== undefined);
    for (const indexed of [false, true]) {
      const label = indexed ? "index (completed, title)" : "no index";
      const first = await page.evaluate(([n, r, i]) => globalThis.bench.firstResult(n, r, i), [todos, rounds, indexed]);
      const [live, ran, bare] = [median(first.live), median(first.run), median(first.bare)];
      console.log(
        `run ${run}, ${label}: first result ${ms(live)} (${(live / bare).toFixed(2)}× bare ${ms(bare)}); run() ${ms(ran)} (${(ran / bare).toFixed(3)}×)`,
      );
      const change = await page.evaluate(([n, r, i]) => globalThis.bench.changed(n, r, i), [todos, rounds, indexed]);
      const [update, again] = [median(change.live), median(change.bare)];
      console.log(`run ${run}, ${label}: one change to the listener ${ms(update)} (${(update / again).toFixed(3)}× bare ${ms(again)})`);
    }
    await page.close();
  }
} finally {
  await browser.close();
}
