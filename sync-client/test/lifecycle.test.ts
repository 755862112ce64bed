// close(), start() again, the database closing under the client, and clearing a user's data.
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { IndexedDbStore, MemoryStore, SyncClosedError } from "../src/index.js";
import { FakeServer, until } from "./fake-server.js";
import { client, titles } from "./helpers.js";

describe("lifecycle", () => {
  it("close() waits for the push in flight and records its answer; what cannot complete is rejected", async () => {
    const server = new FakeServer();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // IndexedDB, so that a write after close would fail (the database is closed).
    const name = `close-${Math.random()}`;
    const store = await IndexedDbStore.open(name);
    const queue = async () => {
      const reader = await IndexedDbStore.open(name);
      const pending = await reader.pending();
      reader.close();
      return pending;
    };
    const c = client(server, {
      store,
      fetch: async (input, init) => {
        if (String(input).endsWith("/push")) await gate;
        return server.fetch(input, init);
      },
    });
    await c.start();
    await c.pull();
    const inFlight = await c.mutate("todo/create", { id: "a", title: "in flight" });
    const closing = c.close();
    await expect(c.mutate("todo/create", { id: "b", title: "too late" })).rejects.toThrow(SyncClosedError);
    release();
    await closing;
    expect(await inFlight.confirmed).toMatchObject({ ok: true });
    expect(await queue()).toEqual([]);

    // Offline: the mutation cannot be confirmed before close; it stays queued.
    server.offline = true;
    await c.start();
    const queued = await c.mutate("todo/create", { id: "c", title: "queued" });
    await c.close();
    await expect(queued.confirmed).rejects.toThrow(SyncClosedError);
    expect((await queue()).map((m) => m.seq)).toEqual([queued.seq]);

    // Started again, it goes on.
    server.offline = false;
    await c.start();
    await until(() => c.pendingCount === 0);
    await c.pull();
    expect(titles(c)).toEqual(["in flight", "queued"]);
  });

  it("closes with an event where another tab upgrades the database", async () => {
    const name = `upgrade-${Math.random()}`;
    const server = new FakeServer();
    const c = client(server, { store: await IndexedDbStore.open(name) });
    const closed: string[] = [];
    c.on("closed", ({ reason }) => closed.push(reason));
    await c.start();
    await c.pull();
    const upgrade = indexedDB.open(name, 2);
    await new Promise((resolve, reject) => {
      upgrade.onsuccess = resolve;
      upgrade.onerror = reject;
    });
    upgrade.result.close();
    await until(() => closed.length === 1);
    expect(closed).toEqual(["versionchange"]);
  });

  it("clear() deletes the user's queue, data and client id", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "theirs" });
    const store = new MemoryStore();
    const c = client(server, { store });
    await c.start();
    await c.pull();
    server.offline = true;
    await c.mutate("todo/create", { id: "b", title: "mine" });
    const id = c.clientId;
    await c.clear();
    expect(titles(c)).toEqual([]);
    expect(c.pendingCount).toBe(0);
    expect(await store.pending()).toEqual([]);
    server.offline = false;
    await c.start();
    expect(c.clientId).not.toBe(id);
    await c.pull();
    expect(titles(c)).toEqual(["theirs"]);
  });
});
