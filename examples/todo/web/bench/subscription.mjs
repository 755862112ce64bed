// Benchmark: one changed todo in a scope of 100,000 reaches its subscriber (from the pull that brings
// it to the subscription's callback), in headless Chromium, against a bare loop that builds the new
// list over the same data, in the same page; medians. No server: the page answers its own requests.
//
//   node bench/subscription.mjs [--todos N] [--rounds N]
import { fileURLToPath } from "node:url";
import path from "node:path";
import { benchPage, bundle, launch, median, option } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const todos = Number(option("todos", 100_000));
const rounds = Number(option("rounds", 50));

const script = await bundle(here, "subscription-page.ts");
const browser = await launch();
try {
  const page = await benchPage(browser, script);
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
