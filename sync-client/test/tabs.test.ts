// Several clients on one IndexedDB database, as tabs of one origin: one queue, one pusher.
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { IndexedDbStore, type FailedMutation, type TabsOptions } from "../src/index.js";
import { FakeLocks, FakeServer, until } from "./fake-server.js";
import { client, titles } from "./helpers.js";

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
