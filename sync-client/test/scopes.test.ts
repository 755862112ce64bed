// Scopes that change at runtime (addScope, removeScope), and scopes the server refuses (403, live
// ERROR forbidden).
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { IndexedDbStore, MemoryStore } from "../src/index.js";
import { FakeServer, until } from "./fake-server.js";
import { client, sleep, type Client } from "./helpers.js";

const titlesIn = (c: Client, scope: string): string[] => c.view(scope).list("todo").map((t) => t.title);
/** How many pulls and snapshots of `scope` the server saw. */
const readsOf = (server: FakeServer, scope: string): number =>
  server.requests.filter((r) => (r.path === "pull" || r.path === "snapshot") && r.body.scope === scope).length;

describe("addScope", () => {
  it("loads the scope's local data, snapshots it, JOINs it, and its subscribers hear of its data and pokes", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "x", title: "in b" }, "b");
    const c = client(server, { webSocket: server.connect, scopes: ["a"], pullIntervalMs: 60_000 });
    await c.start();
    await c.pull();
    await until(() => server.sockets[0]?.joined.has("a") ?? false);
    const socket = server.sockets[0]!;
    const seen: string[][] = [];
    c.subscribe((view) => view.list("todo").map((t) => t.title), (titles) => seen.push(titles), { scope: "b" });

    await c.addScope("b");
    expect(c.scopes).toEqual(["a", "b"]);
    await c.pull();
    expect(seen).toEqual([[], ["in b"]]);
    expect(server.requests.filter((r) => r.path === "snapshot").map((r) => r.body.scope)).toEqual(["a", "b"]);
    await until(() => socket.joined.has("b"));
    expect(socket.joins().at(-1)).toEqual({ scopes: ["b"] }); // a JOIN of its own, on the same connection

    server.push([{ name: "todo/create", args: { id: "p", title: "poked" }, client_id: "o", client_seq: 1, scope: "b" }]);
    await until(() => seen.at(-1)?.includes("poked") ?? false);

    // Added again: nothing happens.
    const requests = server.requests.length;
    await c.addScope("b");
    expect(c.scopes).toEqual(["a", "b"]);
    expect(socket.joins()).toHaveLength(2);
    await sleep(10);
    expect(server.requests.length).toBe(requests);
  });

  it("shows what the store holds of the scope at once, offline, and pulls it with the others periodically", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "x", title: "stored" }, "b");
    const store = new MemoryStore();
    const first = client(server, { store, scopes: ["b"] });
    await first.start();
    await first.pull();
    await first.close();

    server.offline = true;
    const c = client(server, { store, scopes: ["a"], pullIntervalMs: 20 });
    await c.start();
    await c.addScope("b");
    expect(titlesIn(c, "b")).toEqual(["stored"]);
    server.offline = false;
    c.wake();
    await c.pull();
    server.other("todo/create", { id: "y", title: "unannounced" }, "b");
    await until(() => titlesIn(c, "b").includes("unannounced"));
  });
});

describe("removeScope", () => {
  it("LEAVEs the scope, drops its rows and cursor from the view and the store, and keeps its queued mutations", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "k", title: "kept" }, "a");
    server.other("todo/create", { id: "x", title: "pulled" }, "b");
    const name = `remove-${Math.random()}`;
    const c = client(server, { store: await IndexedDbStore.open(name), webSocket: server.connect, scopes: ["a", "b"], pullIntervalMs: 60_000 });
    await c.start();
    await c.pull();
    await until(() => server.sockets[0]?.joined.has("b") ?? false);
    const socket = server.sockets[0]!;
    const seen: string[][] = [];
    c.subscribe((view) => view.list("todo").map((t) => t.title), (titles) => seen.push(titles), { scope: "b" });
    const changed: string[] = [];
    c.on("change", (scopes) => changed.push(...scopes));

    server.offline = true;
    const queued = await c.mutate("todo/create", { id: "q", title: "queued" }, { scope: "b" });
    expect(seen.at(-1)).toEqual(["queued", "pulled"]); // in id order
    changed.length = 0;
    await c.removeScope("b");
    expect(c.scopes).toEqual(["a"]);
    expect(socket.sent.at(-1)).toMatchObject({ type: 2, payload: { scopes: ["b"] } });
    await until(() => !socket.joined.has("b"));
    // The pulled rows are gone; the queued mutation shows until the server answers it.
    expect(seen.at(-1)).toEqual(["queued"]);
    expect(changed).toEqual(["b"]);

    const reopened = await IndexedDbStore.open(name);
    expect(await reopened.load("b")).toEqual({ state: { cursor: 0, clientSeq: 0 }, rows: [] });
    expect((await reopened.load("a")).rows.map((r) => r.id)).toEqual(["k"]);
    expect((await reopened.pending()).map((m) => m.seq)).toEqual([queued.seq]);
    reopened.close();

    // Online: the queued mutation is pushed (the server decides), and "b" is not pulled again.
    const reads = readsOf(server, "b");
    server.offline = false;
    c.wake();
    expect(await queued.confirmed).toMatchObject({ ok: true });
    await c.pull();
    expect(server.todos("b").map((t) => t.title)).toEqual(["queued", "pulled"]);
    expect(readsOf(server, "b")).toBe(reads);
    expect(seen.at(-1)).toEqual([]);
    expect(titlesIn(c, "a")).toEqual(["kept"]);

    // Removed again: nothing happens.
    const sent = socket.sent.length;
    await c.removeScope("b");
    expect(socket.sent.length).toBe(sent);
  });
});

describe("a scope the server refuses", () => {
  it("answered 403 to a pull or snapshot: forbidden once, not pulled again, data kept, others go on; adding it again tries again", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "x", title: "mine once" }, "b");
    const denied = new Set<string>();
    server.authorize = (scope) => (denied.has(scope) ? "forbidden" : undefined);
    const c = client(server, { scopes: ["a", "b"], pullIntervalMs: 10 });
    const events: { scope: string; code: string; error: string }[] = [];
    c.on("forbidden", (event) => events.push(event));
    await c.start();
    await c.pull();
    expect(titlesIn(c, "b")).toEqual(["mine once"]);

    denied.add("b");
    await until(() => events.length === 1);
    expect(events).toEqual([{ scope: "b", code: "forbidden", error: "refused: forbidden" }]);
    const reads = readsOf(server, "b");
    server.other("todo/create", { id: "y", title: "a goes on" }, "a");
    await until(() => titlesIn(c, "a").includes("a goes on"));
    await sleep(50); // several periodic pulls
    expect(readsOf(server, "b")).toBe(reads);
    expect(events).toHaveLength(1);
    expect(titlesIn(c, "b")).toEqual(["mine once"]);

    // Added again though refused: one more try (a pull), refused again, once.
    await c.addScope("b");
    await until(() => events.length === 2);
    await sleep(30);
    expect(readsOf(server, "b")).toBe(reads + 1);
    expect(events).toHaveLength(2);

    // Removed and added: a snapshot (its data was dropped), refused as well.
    await c.removeScope("b");
    await c.addScope("b");
    await until(() => events.length === 3);
    expect(server.requests.filter((r) => r.body.scope === "b").at(-1)).toMatchObject({ path: "snapshot", status: 403 });
    expect(titlesIn(c, "b")).toEqual([]);

    // Allowed again: adding it syncs it.
    denied.delete("b");
    await c.addScope("b");
    await c.pull();
    expect(titlesIn(c, "b")).toEqual(["mine once"]);
    expect(events).toHaveLength(3);
  });

  it("refused by the live channel (ERROR forbidden naming it): forbidden once, not JOINed nor pulled again; an ERROR naming no scope changes nothing", async () => {
    const server = new FakeServer();
    let allowed = true;
    server.authorize = (scope) => (scope === "b" && !allowed ? "forbidden" : undefined);
    const c = client(server, { webSocket: server.connect, scopes: ["a", "b"], pullIntervalMs: 60_000 });
    const events: { scope: string; code: string }[] = [];
    c.on("forbidden", (event) => events.push(event));
    await c.start();
    await c.pull();
    await until(() => server.sockets[0]?.joined.size === 2);
    const socket = server.sockets[0]!;

    // An older server's ERROR names no scopes: as before, only logged.
    socket.deliver({ type: 8, ref: 0, payload: { code: "forbidden", error: "not joined: \"b\"" } });
    await sleep(10);
    expect(events).toEqual([]);

    // The server's re-check finds "b" no longer allowed, and leaves it.
    allowed = false;
    socket.revoke("forbidden", ["b"]);
    await until(() => events.length === 1);
    expect(events[0]).toMatchObject({ scope: "b", code: "forbidden" });
    expect(socket.sent.filter((m) => m.type === 2)).toEqual([]); // the server left it already

    // Its pokes are not pulled; a reconnect JOINs only "a"; "a" goes on.
    const reads = readsOf(server, "b");
    server.push([{ name: "todo/create", args: { id: "p", title: "poke" }, client_id: "o", client_seq: 1, scope: "b" }]);
    server.push([{ name: "todo/create", args: { id: "q", title: "a goes on" }, client_id: "o", client_seq: 2, scope: "a" }]);
    await until(() => titlesIn(c, "a").includes("a goes on"));
    socket.drop();
    c.wake();
    await until(() => server.sockets.length === 2 && server.sockets[1]!.joins().length === 1);
    expect(server.sockets[1]!.joins()[0]!.scopes).toEqual(["a"]);
    await c.pull();
    expect(readsOf(server, "b")).toBe(reads);

    // Added again: JOINed and pulled again, both refused, reported once.
    await c.addScope("b");
    await until(() => events.length === 2);
    await until(() => server.sockets[1]!.joins().length === 2);
    await sleep(20);
    expect(server.sockets[1]!.joins()[1]!.scopes).toEqual(["b"]);
    expect(events).toHaveLength(2);
  });
});
