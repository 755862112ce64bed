import "fake-indexeddb/auto";
import { describe, expect, it, vi } from "vitest";
import { IndexedDbStore, MemoryStore, type FailedMutation, type LocalStore, type SyncStatus } from "../src/index.js";
import { FakeServer, until } from "./fake-server.js";
import { client, titles } from "./helpers.js";

describe("the queue", () => {
  it("holds a mutation durably before mutate returns, and a reload pushes it once", async () => {
    const server = new FakeServer();
    server.offline = true;
    const store = new MemoryStore();
    const first = client(server, { store });
    await first.start();
    await first.mutate("todo/create", { id: "a", title: "milk" });
    expect(await store.pending()).toMatchObject([{ seq: 1, name: "todo/create", args: { id: "a", title: "milk" } }]);
    expect(titles(first)).toEqual(["milk"]); // optimistic
    await first.close();

    server.offline = false;
    const reloaded = client(server, { store });
    await reloaded.start();
    expect(reloaded.clientId).toBe(first.clientId);
    expect(titles(reloaded)).toEqual(["milk"]); // the queue is re-applied at once
    await until(() => reloaded.pendingCount === 0 && server.todos().length === 1);
    await reloaded.pull();
    expect(titles(reloaded)).toEqual(["milk"]);
    expect(await store.pending()).toEqual([]);
    const next = await reloaded.mutate("todo/toggle", { id: "a" });
    expect(next.seq).toBe(2); // the sequence survived the reload
  });

  it("sends client_id and ascending client_seq, and counts a duplicate answer as a confirmation", async () => {
    const server = new FakeServer();
    const c = client(server);
    await c.start();
    server.script = ["lose"]; // the server applies the push, the answer is lost
    const queued = await c.mutate("todo/create", { id: "a", title: "one" });
    await c.mutate("todo/create", { id: "b", title: "two" });
    const outcome = await queued.confirmed;
    expect(outcome).toMatchObject({ ok: true });
    await until(() => c.pendingCount === 0);
    const pushes = server.requests.filter((r) => r.path === "push");
    expect(pushes.length).toBeGreaterThanOrEqual(2);
    expect(pushes[0]!.body.mutations[0]).toMatchObject({ client_id: c.clientId, client_seq: 1, scope: "_default" });
    const retried = pushes[1]!.body.mutations;
    expect(retried[0]).toMatchObject({ client_seq: 1 });
    expect(server.todos().map((t) => t.title)).toEqual(["one", "two"]); // applied once each
    await c.pull();
    expect(titles(c)).toEqual(["one", "two"]);
  });

  it("pushes in order, in batches", async () => {
    const server = new FakeServer();
    server.offline = true;
    const c = client(server, { pushBatchSize: 3 });
    await c.start();
    for (let i = 0; i < 7; i++) await c.mutate("todo/create", { id: `t${i}`, title: `t${i}` });
    server.offline = false;
    c.wake();
    await until(() => c.pendingCount === 0);
    const batches = server.requests.filter((r) => r.path === "push" && r.status === 200).map((r) => r.body.mutations.map((m: any) => m.client_seq));
    expect(batches).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });
});

describe("push failures", () => {
  it("backs off exponentially, with jitter, on 503 and network errors, then succeeds", async () => {
    const server = new FakeServer();
    const c = client(server, { backoff: { initialMs: 4, maxMs: 16 }, random: () => 1 });
    const delays: number[] = [];
    c.on("retry", (r) => r.what === "push" && delays.push(r.delayMs));
    await c.start();
    server.script = [503, 503, 503, 503];
    await c.mutate("todo/create", { id: "a", title: "x" });
    await until(() => c.pendingCount === 0, 3000);
    expect(delays).toEqual([4, 8, 16, 16]);
    expect(server.todos()).toHaveLength(1);

    // The jitter: with random() = 0 a delay is half of its ceiling; network errors back off too.
    const other = new FakeServer();
    other.offline = true;
    const jittered = client(other, { backoff: { initialMs: 8, maxMs: 32 }, random: () => 0 });
    const half: number[] = [];
    jittered.on("retry", (r) => r.what === "push" && half.push(r.delayMs));
    await jittered.start();
    await jittered.mutate("todo/create", { id: "a", title: "x" });
    await until(() => half.length >= 4);
    expect(half.slice(0, 4)).toEqual([4, 8, 16, 16]);
  });

  it("drops a mutation the server refuses for good, reports it, and goes on", async () => {
    const server = new FakeServer();
    const failed: FailedMutation[] = [];
    const c = client(server, { onMutationFailed: (f) => failed.push(f) });
    const events: FailedMutation[] = [];
    c.on("mutationFailed", (f) => events.push(f));
    await c.start();
    const bad = await c.mutate("todo/toggle", { id: "nope" });
    await c.mutate("todo/create", { id: "a", title: "kept" });
    expect(await bad.confirmed).toMatchObject({ ok: false, code: "not_found" });
    await until(() => c.pendingCount === 0);
    expect(failed).toMatchObject([{ seq: 1, name: "todo/toggle", code: "not_found" }]);
    expect(events).toHaveLength(1);
    expect(server.todos().map((t) => t.title)).toEqual(["kept"]);
  });

  it("does not retry a 4xx: finds the refused mutation, reports it and drops only it", async () => {
    const server = new FakeServer();
    server.offline = true;
    const failed: FailedMutation[] = [];
    const c = client(server, { onMutationFailed: (f) => failed.push(f), scopes: ["_default", "bad\u0000scope"] });
    await c.start();
    await c.mutate("todo/create", { id: "a", title: "one" });
    await c.mutate("todo/create", { id: "b", title: "two" }, { scope: "bad\u0000scope" });
    await c.mutate("todo/create", { id: "c", title: "three" });
    server.offline = false;
    c.wake();
    await until(() => c.pendingCount === 0);
    expect(failed).toMatchObject([{ seq: 2, code: "invalid_scope" }]);
    expect(server.todos().map((t) => t.title)).toEqual(["one", "three"]);
    const pushes = server.requests.filter((r) => r.path === "push" && !server.offline);
    // The refused mutation was sent alone once, never retried.
    expect(pushes.filter((p) => p.body.mutations.length === 1 && p.body.mutations[0].client_seq === 2)).toHaveLength(1);
  });

  it("asks the app for a fresh token on 401 and then retries", async () => {
    const server = new FakeServer();
    const reasons: string[] = [];
    const c = client(server, {
      auth: (reason) => {
        reasons.push(reason);
        return `token-${reasons.length}`;
      },
    });
    await c.start();
    await c.pull();
    server.script = [401];
    await c.mutate("todo/create", { id: "a", title: "x" });
    await until(() => c.pendingCount === 0);
    expect(reasons).toEqual(["initial", "unauthorized"]);
    expect(server.requests.filter((r) => r.path === "push").map((r) => r.token)).toEqual(["token-1", "token-2"]);
    expect(server.todos()).toHaveLength(1);
  });
});

describe("pull", () => {
  it("takes a snapshot at cursor 0, then follows has_more page by page", async () => {
    const server = new FakeServer();
    for (let i = 0; i < 3; i++) server.apply({ name: "todo/create", args: { id: `s${i}`, title: `s${i}` }, client_id: "other", client_seq: i + 1, scope: "_default" });
    const store = new MemoryStore();
    const apply = vi.spyOn(store, "applyChanges");
    const c = client(server, { store, pullLimit: 2 });
    await c.start();
    await c.pull();
    expect(c.stats.snapshots).toBe(1);
    expect(titles(c)).toEqual(["s0", "s1", "s2"]);
    expect(c.cursor()).toBe(3);
    for (let i = 3; i < 8; i++) server.apply({ name: "todo/create", args: { id: `s${i}`, title: `s${i}` }, client_id: "other", client_seq: i + 1, scope: "_default" });
    apply.mockClear();
    await c.pull();
    // 5 changes in pages of 2: three pages, each applied to the store in one call.
    expect(apply.mock.calls.map((call) => call[2].length)).toEqual([2, 2, 1]);
    expect(titles(c)).toHaveLength(8);
    expect(c.cursor()).toBe(8);
    expect((await store.load("_default")).state.cursor).toBe(8);
  });

  it("answers a 410 with a snapshot that replaces the scope, and pulls on from its cursor", async () => {
    const server = new FakeServer();
    const c = client(server);
    await c.start();
    server.apply({ name: "todo/create", args: { id: "gone", title: "gone" }, client_id: "o", client_seq: 1, scope: "_default" });
    await c.pull();
    expect(titles(c)).toEqual(["gone"]);
    server.apply({ name: "todo/delete", args: { id: "gone" }, client_id: "o", client_seq: 2, scope: "_default" });
    server.apply({ name: "todo/create", args: { id: "new", title: "new" }, client_id: "o", client_seq: 3, scope: "_default" });
    server.trim(3);
    const snapshots = c.stats.snapshots;
    await c.pull();
    expect(c.stats.snapshots).toBe(snapshots + 1);
    expect(server.requests.some((r) => r.status === 410)).toBe(true);
    expect(titles(c)).toEqual(["new"]);
    expect(c.cursor()).toBe(3);

    // cursor_ahead: the server's log was replaced by a shorter one.
    const fresh = new FakeServer();
    fresh.apply({ name: "todo/create", args: { id: "x", title: "other log" }, client_id: "o", client_seq: 1, scope: "_default" });
    server.log = fresh.log;
    server.head = fresh.head;
    server.trimmedUpTo = 0;
    server.entities = fresh.entities;
    await c.pull();
    expect(titles(c)).toEqual(["other log"]);
    expect(c.cursor()).toBe(1);
  });

  it("re-applies pending optimistic mutations on top of pulled state, and drops them once confirmed", async () => {
    const server = new FakeServer();
    server.apply({ name: "todo/create", args: { id: "a", title: "server" }, client_id: "o", client_seq: 1, scope: "_default" });
    const c = client(server);
    await c.start();
    await c.pull();
    server.offline = true;
    await c.mutate("todo/rename", { id: "a", title: "mine" });
    expect(c.view().get("todo", "a")).toMatchObject({ title: "mine" });
    // Someone else toggles it; the pulled state carries the toggle, the pending rename stays on top.
    server.offline = false;
    server.script = [503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503];
    server.apply({ name: "todo/toggle", args: { id: "a" }, client_id: "o", client_seq: 2, scope: "_default" });
    server.script = [];
    await until(() => c.pendingCount === 0);
    await c.pull();
    expect(c.view().get("todo", "a")).toEqual({ id: "a", title: "mine", completed: true });

    // A refused mutation's optimistic effect disappears.
    const bad = await c.mutate("todo/create", { id: "a", title: "duplicate id" });
    expect(await bad.confirmed).toMatchObject({ ok: false, code: "already_exists" });
    await c.pull();
    expect(c.view().get("todo", "a")).toEqual({ id: "a", title: "mine", completed: true });
  });
});

describe("failsafe", () => {
  it("pulls on its interval without any poke", async () => {
    const server = new FakeServer();
    const c = client(server, { pullIntervalMs: 20 });
    await c.start();
    await c.pull();
    server.apply({ name: "todo/create", args: { id: "a", title: "unannounced" }, client_id: "o", client_seq: 1, scope: "_default" });
    await until(() => titles(c).includes("unannounced"));
  });
});

describe("live", () => {
  it("JOINs its scopes, pulls on a REPLY or POKE ahead of its cursor, and re-JOINs after a reconnect", async () => {
    const server = new FakeServer();
    server.apply({ name: "todo/create", args: { id: "a", title: "before" }, client_id: "o", client_seq: 1, scope: "_default" });
    const c = client(server, { webSocket: server.connect, scopes: ["_default", "team"], pullIntervalMs: 60_000 });
    await c.start();
    await until(() => server.sockets[0]?.sent.some((m) => m.type === 1) ?? false);
    expect(server.sockets[0]!.sent[0]).toMatchObject({ type: 1, payload: { scopes: ["_default", "team"] } });
    await until(() => titles(c).length === 1);

    // A push by someone else pokes; the client pulls.
    const pullsBefore = c.stats.pulls;
    server.push([{ name: "todo/create", args: { id: "b", title: "poked" }, client_id: "o", client_seq: 2, scope: "_default" }]);
    await until(() => titles(c).includes("poked"));
    expect(c.stats.pulls).toBeGreaterThan(pullsBefore);

    // The connection drops; a change lands meanwhile; the client reconnects, re-JOINs, and the REPLY's
    // cursor is ahead of its own, so it pulls.
    server.offline = true;
    server.sockets[0]!.drop();
    server.apply({ name: "todo/create", args: { id: "c", title: "missed" }, client_id: "o", client_seq: 3, scope: "_default" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    server.offline = false;
    c.wake();
    await until(() => server.sockets.some((s, i) => i > 0 && s.sent.some((m) => m.type === 1)));
    const rejoin = server.sockets.find((s, i) => i > 0 && s.sent.some((m) => m.type === 1))!;
    expect(rejoin.sent.find((m) => m.type === 1).payload.scopes).toEqual(["_default", "team"]);
    await until(() => titles(c).includes("missed"));
  });
});

describe("subscriptions and status", () => {
  it("re-runs a subscription on every local change and reports online / offline / syncing", async () => {
    const server = new FakeServer();
    const c = client(server);
    const statuses: SyncStatus[] = [];
    c.on("status", (s) => statuses.push(s));
    const seen: string[][] = [];
    await c.start();
    const unsubscribe = c.subscribe((view) => view.list("todo").map((t) => t.title), (value) => seen.push(value));
    await c.pull();
    expect(c.status).toBe("online");
    server.offline = true;
    await c.mutate("todo/create", { id: "a", title: "one" });
    await until(() => c.status === "offline");
    expect(seen.at(-1)).toEqual(["one"]);
    server.offline = false;
    c.wake();
    await until(() => c.pendingCount === 0 && c.status === "online");
    expect(statuses).toContain("syncing");
    expect(statuses).toContain("offline");
    expect(statuses.at(-1)).toBe("online");
    unsubscribe();
    const count = seen.length;
    await c.mutate("todo/create", { id: "b", title: "two" });
    expect(seen.length).toBe(count);
  });

  it("reports error when the server refuses credentials and a fresh token does not help", async () => {
    const server = new FakeServer();
    const c = client(server, { auth: () => "same" });
    const statuses: SyncStatus[] = [];
    c.on("status", (s) => statuses.push(s));
    server.scriptPath = "snapshot";
    server.script = [401, 401];
    await c.start();
    await until(() => statuses.includes("error"));
    await until(() => c.status === "online"); // the retry succeeds
  });
});

describe("IndexedDbStore", () => {
  it("keeps meta, queue, scope states and entities across reopen; a snapshot replaces only its scope", async () => {
    const name = `test-${Math.random()}`;
    let store: LocalStore = await IndexedDbStore.open(name);
    const meta = await store.meta(() => "client-1");
    expect(meta).toEqual({ clientId: "client-1", nextSeq: 1 });
    expect((await store.enqueue({ name: "todo/create", args: { title: "a" }, scope: "s" })).seq).toBe(1);
    expect((await store.enqueue({ name: "todo/toggle", args: { id: "x" }, scope: "s" })).seq).toBe(2);
    const s3 = { cursor: 3, logId: "L", clientSeq: 1 };
    expect(
      await store.applyChanges("s", 0, [
        { cursor: 1, scope: "s", entity: "todo", id: "x", op: "create", data: { v: 1 }, ts: "" },
        { cursor: 2, scope: "s", entity: "todo", id: "y", op: "create", data: { v: 2 }, ts: "" },
        { cursor: 3, scope: "s", entity: "todo", id: "x", op: "delete", ts: "" },
      ], s3),
    ).toBe(true);
    // A page pulled from a cursor the scope has left (another tab pulled it) is not stored.
    expect(await store.applyChanges("s", 0, [{ cursor: 1, scope: "s", entity: "todo", id: "x", op: "create", data: { v: 1 }, ts: "" }], { cursor: 1, clientSeq: 0 })).toBe(false);
    await store.applyChanges("t", 0, [{ cursor: 4, scope: "t", entity: "todo", id: "x", op: "create", data: { v: 4 }, ts: "" }], { cursor: 4, clientSeq: 0 });
    store.close();

    store = await IndexedDbStore.open(name);
    expect(await store.meta(() => "client-2")).toEqual({ clientId: "client-1", nextSeq: 3 });
    expect((await store.pending()).map((m) => m.seq)).toEqual([1, 2]);
    expect((await store.pending(1)).map((m) => m.seq)).toEqual([1]);
    const loaded = await store.load("s");
    expect(loaded.state).toEqual(s3);
    expect(loaded.rows.map((e) => [e.id, e.data])).toEqual([["y", { v: 2 }]]);
    expect((await store.load("never")).state).toEqual({ cursor: 0, clientSeq: 0 });
    await store.remove([1]);
    expect((await store.pending()).map((m) => m.seq)).toEqual([2]);
    await store.replaceScope("s", { todo: { z: { v: 9 } } }, { cursor: 10, logId: "M", clientSeq: 2 });
    expect((await store.load("s")).rows.map((e) => e.id)).toEqual(["z"]);
    expect((await store.load("t")).rows.map((e) => e.id)).toEqual(["x"]);
    expect((await store.load("s")).state).toEqual({ cursor: 10, logId: "M", clientSeq: 2 });
    await store.clear();
    expect(await store.pending()).toEqual([]);
    expect((await store.load("t")).rows).toEqual([]);
    expect(await store.meta(() => "client-3")).toEqual({ clientId: "client-3", nextSeq: 1 });
    store.close();
    await IndexedDbStore.destroy(name);
  });

  it("runs a client end to end on IndexedDB and survives a reload", async () => {
    const server = new FakeServer();
    server.offline = true;
    const name = `client-${Math.random()}`;
    const first = client(server, { store: await IndexedDbStore.open(name) });
    await first.start();
    for (let i = 0; i < 5; i++) await first.mutate("todo/create", { id: `t${i}`, title: `t${i}` });
    await first.close();
    server.offline = false;
    const second = client(server, { store: await IndexedDbStore.open(name) });
    await second.start();
    await until(() => second.pendingCount === 0);
    await second.pull();
    expect(server.todos()).toHaveLength(5);
    expect(titles(second)).toEqual(["t0", "t1", "t2", "t3", "t4"]);
  });
});
