// Benchmark: the live query `completed = false, order by title, limit 50` over 100,000 todos, in
// headless Chromium: its first result, and one changed todo from the pull that brings it to the
// live query's listener, each against a bare filter + sort + slice over the same todos in the same
// page; with and without an index on (completed, title). Medians per run; several runs.
//
//   node bench/query.mjs [--todos N] [--rounds N] [--runs N]
import { fileURLToPath } from "node:url";
import path from "node:path";
import { benchPage, bundle, launch, median, option } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const todos = Number(option("todos", 100_000));
const rounds = Number(option("rounds", 20));
const runs = Number(option("runs", 3));

const script = await bundle(here, "query-page.ts");
const browser = await launch();
const ms = (value) => `${value.toFixed(2)} ms`;
try {
  console.log(`${todos} todos, ${rounds} rounds per run, ${runs} runs (a fresh page each)`);
  for (let run = 1; run <= runs; run++) {
    const page = await benchPage(browser, script);
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
