// What the Chromium benchmarks share: their command-line options, the page bundle, the browser, a
// page that runs the bundle, and medians.
import path from "node:path";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

/** The value after `--name` on the command line, or `fallback`. */
export function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The benchmark page `entry` (a TypeScript file of this folder) bundled with the client, as the app is. */
export async function bundle(here, entry) {
  const built = await esbuild.build({
    entryPoints: [path.join(here, entry)],
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    write: false,
    tsconfig: path.join(here, "../tsconfig.json"),
  });
  return built.outputFiles[0].text;
}

/** Headless Chromium (Debian's, or `$CHROMIUM`) without the background work that adds noise. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * A page at `origin`/bench.html running `script`, once its `globalThis.bench` is there. Only that
 * path is answered by Playwright, so that a real server at `origin` answers the rest.
 */
export async function benchPage(browser, script, origin = "http://bench.invalid") {
  const page = await browser.newPage();
  await page.route(`${origin}/bench.html`, (route) =>
    route.fulfill({ contentType: "text/html", body: `<!doctype html><script type="module">${script}</script>` }),
  );
  await page.goto(`${origin}/bench.html`);
  await page.waitForFunction(() => globalThis.bench !== undefined);
  return page;
}
