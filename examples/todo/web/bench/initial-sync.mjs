// Benchmark: the initial sync of 100,000 todos into IndexedDB, in headless Chromium, against a bare
// IndexedDB bulk put of the same rows, measured in the same run, alternating, medians.
//
//   node bench/initial-sync.mjs [--todos N] [--rounds N] [--server PATH_TO_TODO_BINARY]
//
// Starts the todo server (in-memory store, no sign-in) on a loopback port, fills it through /_sync/push,
// and serves the benchmark page on the server's origin through Playwright's routing.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { benchPage, bundle, launch, median, option } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const todos = Number(option("todos", 100_000));
const rounds = Number(option("rounds", 5));
const binary = option("server", path.join(here, "../../../../target/release/todo"));

const server = spawn(binary, ["--addr", "127.0.0.1:0", "--store", "memory", "--auth", "none"], {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, RUST_LOG: "warn,todo=info" },
});
const base = await new Promise((resolve, reject) => {
  server.on("error", reject);
  server.on("exit", (code) => reject(new Error(`the server exited (${code})`)));
  createInterface({ input: server.stdout }).on("line", (line) => {
    const found = line.match(/listening on (http:\/\/\S+)/);
    if (found) resolve(found[1]);
  });
});

try {
  console.log(`server ${base}; filling it with ${todos} todos`);
  for (let first = 0; first < todos; first += 1000) {
    const mutations = [];
    for (let i = first; i < Math.min(todos, first + 1000); i++) {
      mutations.push({ name: "todo/create", args: { id: `todo-${String(i).padStart(6, "0")}`, title: `Todo number ${i}, to do soon` } });
    }
    const response = await fetch(`${base}/_sync/push`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ mutations }),
    });
    if (response.status !== 200) throw new Error(`push answered ${response.status}`);
  }

  const script = await bundle(here, "page.ts");
  const browser = await launch();
  try {
    const page = await benchPage(browser, script, base);
    const rows = await page.evaluate(() => globalThis.bench.loadRows());
    if (rows !== todos) throw new Error(`the snapshot holds ${rows} rows, not ${todos}`);

    const sync = [];
    const put = [];
    const ratios = [];
    // A warm-up pair, not counted; then alternate which side goes first.
    for (let round = -1; round < rounds; round++) {
      const order = round % 2 === 0 ? ["sync", "put"] : ["put", "sync"];
      const times = {};
      for (const side of order) {
        const name = `bench-${side}-${round}`;
        const result = await page.evaluate(
          ([side, name]) => (side === "sync" ? globalThis.bench.initialSync(name) : globalThis.bench.bulkPut(name)),
          [side, name],
        );
        if (result.rows !== todos) throw new Error(`${side} stored ${result.rows} rows`);
        times[side] = result.ms;
        await page.evaluate((name) => globalThis.bench.destroy(name), name);
      }
      if (round < 0) continue;
      sync.push(times.sync);
      put.push(times.put);
      ratios.push(times.sync / times.put);
      console.log(`round ${round + 1}: sync ${times.sync.toFixed(0)} ms, bulk put ${times.put.toFixed(0)} ms, ratio ${(times.sync / times.put).toFixed(2)}`);
    }
    console.log(
      `median of ${rounds}: initial sync ${median(sync).toFixed(0)} ms, bulk put ${median(put).toFixed(0)} ms; ` +
        `ratio ${median(ratios).toFixed(2)} (range ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
    );
  } finally {
    await browser.close();
  }
} finally {
  server.kill();
}
