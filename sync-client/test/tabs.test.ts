// Several clients on one IndexedDB database, as tabs of one origin: one queue, one pusher.
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { IndexedDbStore, type FailedMutation, type TabsOptions } from "../src/index.js";
import { FakeLocks, FakeServer, until } from "./fake-server.js";
import { client, sleep, titles, type Client } from "./helpers.js";

const modes: [string, () => TabsOptions][] = [
  ["with Web Locks", () => ({ locks: new FakeLocks() })],
  ["without Web Locks", () => ({ locks: null })],
];

describe.each(modes)("two tabs on one database, %s", (_, tabsOptions) => {
  it("offline, A adds, B adds, A adds; online, every mutation reaches the server once, and both tabs show them", async () => {
    const name = `tabs-${Math.random()}`;
    const server = new FakeServer();
    server.offline = true;
    const tabs = tabsOptions();
    const a = client(server, { store: await IndexedDbStore.open(name), tabs });
    const b = client(server, { store: await IndexedDbStore.open(name), tabs });
    await a.start();
    await b.start();
    expect(b.clientId).toBe(a.clientId);
    await a.mutate("todo/create", { id: "1", title: "A one" });
    await b.mutate("todo/create", { id: "2", title: "B one" });
    await a.mutate("todo/create", { id: "3", title: "A two" });
    // Each tab shows the other's pending mutation without a reload.
    await until(() => titles(a).length === 3 && titles(b).length === 3 && a.pendingCount === 3 && b.pendingCount === 3);
    server.offline = false;
    a.wake();
    b.wake();
    await until(() => a.pendingCount === 0 && b.pendingCount === 0);
    expect(server.todos().map((t) => t.title)).toEqual(["A one", "B one", "A two"]);
    // Every push holds the durable queue's head in client_seq order (without a lock, both tabs push it).
    for (const push of server.requests.filter((r) => r.path === "push")) {
      const seqs: number[] = push.body.mutations.map((m: any) => m.client_seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    }
    await until(() => titles(a).length === 3 && titles(b).length === 3);
  });
});

describe("the leading tab", () => {
  it("pushes and pulls for the others, which follow without reloading; closing it hands over", async () => {
    const name = `lead-${Math.random()}`;
    const server = new FakeServer();
    const tabs = { locks: new FakeLocks() };
    const a = client(server, { store: await IndexedDbStore.open(name), tabs });
    const b = client(server, { store: await IndexedDbStore.open(name), tabs });
    await a.start();
    await b.start();
    await until(() => a.leader);
    expect(b.leader).toBe(false);

    // Pulled data reaches the follower; its pull() asks the leader.
    server.other("todo/create", { id: "x", title: "from elsewhere" });
    await b.pull();
    await until(() => titles(b).includes("from elsewhere"));

    // The follower's mutation is pushed by the leader; its verdict reaches the follower.
    const failed: FailedMutation[] = [];
    b.on("mutationFailed", (f) => failed.push(f));
    const bad = await b.mutate("todo/toggle", { id: "nope" });
    const good = await b.mutate("todo/toggle", { id: "x" });
    expect(await bad.confirmed).toMatchObject({ ok: false, code: "not_found" });
    expect(await good.confirmed).toMatchObject({ ok: true });
    expect(failed).toMatchObject([{ seq: bad.seq, code: "not_found" }]);
    await until(() => b.view().get("todo", "x")?.completed === true && b.pendingCount === 0);
    const pushesBefore = server.requests.filter((r) => r.path === "push").length;
    expect(pushesBefore).toBeGreaterThan(0);

    await a.close();
    await until(() => b.leader);
    server.other("todo/create", { id: "y", title: "after the handover" });
    await b.pull();
    expect(titles(b)).toContain("after the handover");
    await b.mutate("todo/create", { id: "z", title: "pushed by B" });
    await until(() => server.todos().some((t) => t.id === "z"));
  });
});

describe("tabs with scopes of their own", () => {
  const titlesIn = (c: Client, scope: string): string[] => c.view(scope).list("todo").map((t) => t.title);

  it("the leader pulls and JOINs every tab's scopes: each tab's scope syncs, added or removed, refused or handed over", async () => {
    const name = `scopes-${Math.random()}`;
    const server = new FakeServer();
    server.other("todo/create", { id: "1", title: "in a" }, "a");
    server.other("todo/create", { id: "2", title: "in b" }, "b");
    server.authorize = (scope) => (scope === "secret" ? "forbidden" : undefined);
    const tabs = { locks: new FakeLocks() };
    const options = { tabs, webSocket: server.connect, pullIntervalMs: 60_000 };
    const a = client(server, { ...options, store: await IndexedDbStore.open(name), scopes: ["a"] });
    const b = client(server, { ...options, store: await IndexedDbStore.open(name), scopes: ["b"] });
    await a.start();
    await b.start();
    await until(() => a.leader);
    expect(b.leader).toBe(false);

    // B's scope is pulled and JOINed by A, the leader, and shown to B only.
    await until(() => titlesIn(b, "b").includes("in b"));
    await until(() => server.sockets.length === 1 && server.sockets[0]!.joined.has("b"));
    const socket = server.sockets[0]!;
    expect(titlesIn(a, "b")).toEqual([]);
    server.push([{ name: "todo/create", args: { id: "3", title: "poked" }, client_id: "o", client_seq: 1, scope: "b" }]);
    await until(() => titlesIn(b, "b").includes("poked"));

    // B adds a scope: A syncs it for B.
    server.other("todo/create", { id: "4", title: "in c" }, "c");
    await b.addScope("c");
    await until(() => titlesIn(b, "c").includes("in c") && socket.joined.has("c"));

    // A scope refused to the leader is reported to the tab that asked for it.
    const forbidden: string[][] = [[], []];
    a.on("forbidden", (e) => forbidden[0]!.push(e.scope));
    b.on("forbidden", (e) => forbidden[1]!.push(e.scope));
    await b.addScope("secret");
    await until(() => forbidden[1]!.length === 1);
    expect(forbidden).toEqual([[], ["secret"]]);

    // Both sync "c"; B removes it: A's copy stays, in memory and in the store.
    await a.addScope("c");
    expect(titlesIn(a, "c")).toEqual(["in c"]);
    await b.removeScope("c");
    expect(titlesIn(b, "c")).toEqual([]);
    await sleep(20);
    expect(titlesIn(a, "c")).toEqual(["in c"]);
    expect(socket.joined.has("c")).toBe(true);
    const reader = await IndexedDbStore.open(name);
    expect((await reader.load("c")).rows.map((r) => r.id)).toEqual(["4"]);
    reader.close();

    // B removes "b", which only it syncs: A LEAVEs it and deletes it from the store.
    await b.removeScope("b");
    await until(() => !socket.joined.has("b"));
    await until(async () => {
      const store = await IndexedDbStore.open(name);
      const { rows } = await store.load("b");
      store.close();
      return rows.length === 0;
    });

    // A closes: B leads, and syncs its own scopes; A's stay in the store for its next start.
    await b.addScope("b");
    await a.close();
    await until(() => b.leader);
    await sleep(20);
    const after = await IndexedDbStore.open(name);
    expect((await after.load("a")).rows.map((r) => r.id)).toEqual(["1"]);
    expect((await after.load("c")).rows.map((r) => r.id)).toEqual(["4"]);
    after.close();
    server.other("todo/create", { id: "5", title: "after the handover" }, "b");
    await b.pull();
    expect(titlesIn(b, "b")).toContain("after the handover");
    await until(() => server.sockets.some((s) => s !== socket && s.joined.has("b")));
  });
});
