// The package as published: `npm pack` from the files a clean clone has, installed from the tarball
// into a fresh project, imported under `moduleResolution` nodenext and bundler, and run by Node:
// first without React (the core must not load it), then with it, for the `./react` entry point.
// Plain JavaScript: it is Node code, outside the package's DOM-only type check.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, "..");
const work = mkdtempSync(path.join(tmpdir(), "sync-client-pack-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A command's stdout. Asynchronous: a minute of blocking calls would starve vitest's worker RPC. */
const run = async (command, args, options = {}) => (await promisify(execFile)(command, args, { encoding: "utf8", ...options })).stdout;
const npm = (cwd, args) => run(process.execPath, [npmCli(), ...args], { cwd });

/** npm's own script, so that npm need not be on PATH. */
function npmCli() {
  const beside = path.join(path.dirname(process.execPath), "../lib/node_modules/npm/bin/npm-cli.js");
  return process.env.npm_execpath?.endsWith(".js") ? process.env.npm_execpath : beside;
}

it("packs from a clean clone, installs from the tarball, and imports under nodenext and bundler", { timeout: 240_000 }, async () => {
  // What a clone has: the tracked files and those not ignored; node_modules lent for the build.
  const clone = path.join(work, "clone");
  const files = (await run("git", ["ls-files", "-co", "--exclude-standard", "."], { cwd: root })).split("\n").filter(Boolean);
  for (const file of files) {
    mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
    cpSync(path.join(root, file), path.join(clone, file));
  }
  symlinkSync(path.join(root, "node_modules"), path.join(clone, "node_modules"));
  await npm(clone, ["pack", "--pack-destination", work, "--loglevel=error"]);
  const [tarball] = readdirSync(work).filter((f) => f.endsWith(".tgz"));
  expect(tarball).toBeDefined();
  const listing = await run("tar", ["-tzf", path.join(work, tarball)]);
  for (const file of ["package/dist/index.js", "package/dist/index.d.ts", "package/dist/wire.gen.d.ts", "package/dist/react.js", "package/dist/react.d.ts", "package/README.md", "package/LICENSE-MIT", "package/LICENSE-APACHE"]) {
    expect(listing).toContain(file);
  }
  expect(listing).not.toContain("package/src/");
  expect(listing).not.toContain("package/test/");

  const app = path.join(work, "app");
  mkdirSync(app);
  writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await npm(app, ["install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", path.join(work, tarball)]);
  writeFileSync(
    path.join(app, "main.ts"),
    `import { MemoryStore, SyncClient, type MutationOutcome, type PullResponse } from "@syncengine/client";
import pkg from "@syncengine/client/package.json" with { type: "json" };
interface Mutations { "note/add": { args: { text: string }; result: { id: string } } }
const client = new SyncClient<Mutations, { note: { id: string; text: string } }>({ store: new MemoryStore(), webSocket: null, fetch: async () => { throw new Error("offline"); } });
export async function run(): Promise<string> {
  await client.start();
  const queued = await client.mutate("note/add", { text: "hi" });
  const outcome: Promise<MutationOutcome<{ id: string }>> = queued.confirmed;
  void outcome;
  const pending = client.pendingCount;
  // The wire types, generated from the server's, come with the package.
  const page: PullResponse = { changes: [], cursor: 0, has_more: false };
  void page;
  await client.close();
  return \`\${pkg.name} \${pending}\`;
}
`,
  );
  const tsc = path.join(root, "node_modules/typescript/bin/tsc");
  for (const [module, resolution] of [["nodenext", "nodenext"], ["esnext", "bundler"]]) {
    await run(process.execPath, [tsc, "--strict", "--noEmit", "--target", "es2022", "--module", module, "--moduleResolution", resolution, "--resolveJsonModule", "--lib", "es2022,dom", "main.ts"], { cwd: app });
  }
  writeFileSync(
    path.join(app, "run.mjs"),
    `import { MemoryStore, SyncClient } from "@syncengine/client";
const client = new SyncClient({ store: new MemoryStore(), webSocket: null, fetch: async () => { throw new Error("offline"); } });
await client.start();
await client.mutate("note/add", { text: "hi" });
console.log(client.pendingCount);
await client.close();
`,
  );
  expect((await run(process.execPath, ["run.mjs"], { cwd: app })).trim()).toBe("1");

  // The React entry point, with React installed beside the package (its optional peer dependency).
  const lock = JSON.parse(readFileSync(path.join(root, "package-lock.json"), "utf8"));
  const pinned = (name) => `${name}@${lock.packages[`node_modules/${name}`].version}`;
  // Prefer the cache, not only it: `npm ci` caches the tarballs it installs but not the registry's
  // package documents that resolving a name needs, so a fresh machine has none of them yet.
  await npm(app, ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", ...["react", "react-dom", "@types/react", "@types/react-dom"].map(pinned)]);
  writeFileSync(
    path.join(app, "hooks.ts"),
    `import { createElement, type ReactNode } from "react";
import { MemoryStore, SyncClient } from "@syncengine/client";
import { SyncProvider, useMutate, useSyncStatus } from "@syncengine/client/react";
interface Mutations { "note/add": { args: { text: string }; result: { id: string } } }
function Badge(): ReactNode {
  const mutate = useMutate<Mutations>();
  void mutate;
  return useSyncStatus().status;
}
export const client = new SyncClient<Mutations, { note: { id: string; text: string } }>({ store: new MemoryStore(), webSocket: null });
export const page: ReactNode = createElement(SyncProvider, { client }, createElement(Badge));
`,
  );
  for (const [module, resolution] of [["nodenext", "nodenext"], ["esnext", "bundler"]]) {
    await run(process.execPath, [tsc, "--strict", "--noEmit", "--target", "es2022", "--module", module, "--moduleResolution", resolution, "--lib", "es2022,dom", "hooks.ts"], { cwd: app });
  }
  writeFileSync(
    path.join(app, "ssr.mjs"),
    `import { createElement } from "react";
import { renderToString } from "react-dom/server";
import { SyncClient } from "@syncengine/client";
import { SyncProvider, useSyncStatus } from "@syncengine/client/react";
const Badge = () => useSyncStatus().status;
const client = new SyncClient({ webSocket: null });
console.log(renderToString(createElement(SyncProvider, { client }, createElement(Badge))));
`,
  );
  expect((await run(process.execPath, ["ssr.mjs"], { cwd: app })).trim()).toBe("offline");
});
