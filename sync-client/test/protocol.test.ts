// PROTOCOL 1.1 on the client's side, against the fake server as 1.1 and as version 1, and the
// protocol's rules of which failures drop a queued mutation.
import { describe, expect, it } from "vitest";
import { MemoryStore, type FailedMutation } from "../src/index.js";
import { FakeServer, until } from "./fake-server.js";
import { client, sleep, titles } from "./helpers.js";

const slowRetries = { backoff: { initialMs: 60_000, maxMs: 60_000 } };

describe("PROTOCOL 1.1", () => {
  it("keeps log_id with the cursor and sends it, with client_id, in pulls and snapshots", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "a" });
    const store = new MemoryStore();
    const c = client(server, { store });
    await c.start();
    await c.pull();
    const snapshot = server.requests.find((r) => r.path === "snapshot")!;
    expect(snapshot.body).toMatchObject({ client_id: c.clientId });
    const pull = server.requests.filter((r) => r.path === "pull").at(-1)!;
    expect(pull.body).toMatchObject({ log_id: server.logId, client_id: c.clientId, cursor: 1 });
    expect((await store.load("_default")).state).toEqual({ cursor: 1, logId: server.logId, clientSeq: 0 });
  });

  it("answers 410 log_replaced with a snapshot of the new log and keeps the queue", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "old", title: "old" });
    const c = client(server);
    await c.start();
    await c.pull();
    server.offline = true;
    await c.mutate("todo/create", { id: "mine", title: "mine" });
    // The database is restored from a backup: another log, whose cursors mean nothing to the client.
    const restored = new FakeServer();
    for (let i = 0; i < 3; i++) restored.other("todo/create", { id: `r${i}`, title: `restored ${i}` });
    server.replaceWith(restored);
    server.offline = false;
    c.wake();
    await until(() => c.pendingCount === 0);
    await c.pull();
    expect(server.requests.some((r) => r.path === "pull" && r.status === 410)).toBe(true);
    expect(titles(c)).toEqual(["mine", "restored 0", "restored 1", "restored 2"]);
    expect(server.todos().map((t) => t.id)).toContain("mine");
  });

  it("does not replay a mutation the server processed over pulled data that holds it, though its push answer was lost", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "a" });
    const c = client(server, slowRetries);
    await c.start();
    await c.pull();
    server.script = ["lose"]; // applied, the answer lost; the retry waits a minute
    const toggled = await c.mutate("todo/toggle", { id: "a" });
    await until(() => server.todos()[0]!.completed);
    await c.pull();
    expect(c.view().get("todo", "a")?.completed).toBe(true); // once, not twice
    expect(c.pendingCount).toBe(1); // its verdict is still to come
    c.wake();
    expect(await toggled.confirmed).toMatchObject({ ok: true, duplicate: true });
    await c.pull();
    expect(c.view().get("todo", "a")?.completed).toBe(true);
  });

  it("does not replay it over a 410 snapshot that holds it either", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "a" });
    const c = client(server, slowRetries);
    await c.start();
    await c.pull();
    server.script = ["lose"];
    await c.mutate("todo/toggle", { id: "a" });
    await until(() => server.todos()[0]!.completed);
    server.trim(server.head);
    const snapshots = c.stats.snapshots;
    await c.pull();
    expect(c.stats.snapshots).toBe(snapshots + 1);
    expect(c.view().get("todo", "a")?.completed).toBe(true);
  });

  it("takes a paged snapshot, then pulls from its first page's cursor", async () => {
    const server = new FakeServer();
    server.snapshotPageSize = 2;
    for (let i = 0; i < 5; i++) server.other("todo/create", { id: `t${i}`, title: `t${i}` });
    const fetch = server.fetch;
    let pages = 0;
    // Between the first and the second page, t0 (already sent) is renamed and t4 (not yet) too.
    const c = client(server, {
      fetch: async (input, init) => {
        const answer = await fetch(input, init);
        if (String(input).endsWith("/snapshot") && ++pages === 1) {
          server.other("todo/rename", { id: "t0", title: "t0 renamed" });
          server.other("todo/rename", { id: "t4", title: "t4 renamed" });
        }
        return answer;
      },
    });
    await c.start();
    await c.pull();
    const snapshots = server.requests.filter((r) => r.path === "snapshot");
    expect(snapshots.map((r) => r.body.after)).toEqual([undefined, ["todo", "t1"], ["todo", "t3"]]);
    expect(server.requests.find((r) => r.path === "pull")!.body.cursor).toBe(5);
    expect(titles(c)).toEqual(["t0 renamed", "t1", "t2", "t3", "t4 renamed"]);
    expect(c.cursor()).toBe(7);
  });

  it("reports a failure whose push answer was lost as a failure", async () => {
    const server = new FakeServer();
    const failed: FailedMutation[] = [];
    const c = client(server);
    c.on("mutationFailed", (f) => failed.push(f));
    await c.start();
    await c.pull();
    server.script = ["lose"];
    const bad = await c.mutate("todo/toggle", { id: "nope" });
    expect(await bad.confirmed).toEqual({ ok: false, code: "not_found", error: "not_found", duplicate: true });
    expect(failed).toMatchObject([{ seq: bad.seq, code: "not_found" }]);
    await until(() => c.pendingCount === 0);
  });

  it("works with a version-1 server, whose answers carry no log_id and no client_seq", async () => {
    const server = new FakeServer();
    server.version = 1;
    server.other("todo/create", { id: "a", title: "a" });
    const store = new MemoryStore();
    const c = client(server, { store });
    await c.start();
    await c.pull();
    await c.mutate("todo/rename", { id: "a", title: "mine" });
    await until(() => c.pendingCount === 0);
    await c.pull();
    expect(titles(c)).toEqual(["mine"]);
    server.other("todo/create", { id: "b", title: "b" });
    server.trim(server.head);
    await c.pull();
    expect(titles(c)).toEqual(["mine", "b"]); // ids a and b
    expect(server.requests.filter((r) => r.path === "pull").every((r) => r.body.log_id === undefined)).toBe(true);
    expect((await store.load("_default")).state).toEqual({ cursor: server.head, logId: undefined, clientSeq: 0 });
  });
});

describe("which failures drop a queued mutation", () => {
  it("keeps the queue through 429 (honouring Retry-After), 404, 405, 408, 409, 425, 502 and answers that are not the protocol's", async () => {
    const server = new FakeServer();
    const failed: FailedMutation[] = [];
    const c = client(server, { onMutationFailed: (f) => failed.push(f) });
    const delays: { delayMs: number; reason: string }[] = [];
    c.on("retry", (r) => r.what === "push" && delays.push(r));
    await c.start();
    await c.pull();
    server.offline = true;
    for (let i = 0; i < 5; i++) await c.mutate("todo/create", { id: `t${i}`, title: `t${i}` });
    const page = (status: number) => ({ status, body: "<html><body>Bad gateway</body></html>", headers: { "content-type": "text/html" } });
    server.script = [
      { status: 429, body: JSON.stringify({ error: "slow down", code: "rate_limited" }), headers: { "retry-after": "0.05" } },
      404, 405, 408, 409, 425, 502,
      page(400), page(403), page(413), page(200),
    ];
    server.offline = false;
    c.wake();
    await until(() => c.pendingCount === 0);
    expect(failed).toEqual([]);
    expect(server.todos()).toHaveLength(5);
    expect(delays.find((d) => d.reason.includes("429"))!.delayMs).toBeGreaterThanOrEqual(50);
  });

  it("drops a mutation refused alone by 403 or 413, reports it, and pushes the rest", async () => {
    const server = new FakeServer();
    const failed: FailedMutation[] = [];
    const c = client(server, { onMutationFailed: (f) => failed.push(f) });
    await c.start();
    await c.pull();
    server.offline = true;
    await c.mutate("todo/create", { id: "a", title: "refused" });
    await c.mutate("todo/create", { id: "b", title: "too big" });
    await c.mutate("todo/create", { id: "c", title: "kept" });
    const refusal = (status: number, code: string) => ({ status, body: JSON.stringify({ error: code, code }) });
    // The batch is refused, then its first mutation alone, then the batch of the rest, then its first alone.
    server.script = [refusal(403, "forbidden"), refusal(403, "forbidden"), refusal(413, "body_too_large"), refusal(413, "body_too_large")];
    server.offline = false;
    c.wake();
    await until(() => c.pendingCount === 0);
    expect(failed.map((f) => [f.seq, f.code])).toEqual([[1, "forbidden"], [2, "body_too_large"]]);
    expect(server.todos().map((t) => t.title)).toEqual(["kept"]);
  });

  it("waits between 401 retries, even where the app gives a fresh token each time", async () => {
    const server = new FakeServer();
    let refreshed = 0;
    const c = client(server, { auth: (reason) => `token-${reason === "unauthorized" ? ++refreshed : 0}`, backoff: { initialMs: 20, maxMs: 40 } });
    await c.start();
    await c.pull();
    server.script = Array(10_000).fill(401);
    await c.mutate("todo/create", { id: "a", title: "x" });
    await sleep(200);
    const pushes = server.requests.filter((r) => r.path === "push").length;
    expect(pushes).toBeLessThan(15);
    expect(refreshed).toBeGreaterThan(0);
    server.script = [];
    c.wake();
    await until(() => c.pendingCount === 0);
  });
});
