// The `auth` option: one bearer token on every request and JOIN, asked for again only after the
// server refused it, with backoff.
import { describe, expect, it, vi } from "vitest";
import type { RetryEvent, SyncStatus } from "../src/index.js";
import { FakeServer, until } from "./fake-server.js";
import { client, sleep } from "./helpers.js";

describe("auth", () => {
  it("sends its token on push, pull and snapshot and in the JOIN, asked for once, over the headers' Authorization", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "a" });
    const reasons: string[] = [];
    const c = client(server, {
      webSocket: server.connect,
      auth: async (reason) => {
        reasons.push(reason);
        return "secret";
      },
      headers: () => ({ Authorization: "Basic bm9wZQ==", "X-App": "todo" }),
    });
    await c.start();
    await c.pull();
    await c.mutate("todo/create", { id: "b", title: "b" });
    await until(() => c.pendingCount === 0 && (server.sockets[0]?.joins().length ?? 0) > 0);
    expect(new Set(server.requests.map((r) => r.path))).toEqual(new Set(["snapshot", "pull", "push"]));
    for (const request of server.requests) {
      expect(request.headers.get("authorization")).toBe("Bearer secret");
      expect(request.headers.get("x-app")).toBe("todo");
    }
    expect(server.sockets[0]!.joins()[0]).toEqual({ scopes: ["_default"], token: "secret" });
    expect(reasons).toEqual(["initial"]);

    // No token: no Authorization of its own, and JOINs without one.
    const other = new FakeServer();
    const anonymous = client(other, { webSocket: other.connect, auth: () => null });
    await anonymous.start();
    await anonymous.pull();
    await until(() => (other.sockets[0]?.joins().length ?? 0) > 0);
    expect(other.requests.every((r) => r.headers.get("authorization") === null)).toBe(true);
    expect(other.sockets[0]!.joins()[0]).toEqual({ scopes: ["_default"] });
  });

  it("asks for a fresh token after each 401 and retries with backoff: under fake timers, no tight loop", async () => {
    vi.useFakeTimers();
    try {
      const server = new FakeServer();
      server.authorize = () => "unauthorized";
      const reasons: string[] = [];
      const c = client(server, {
        auth: (reason) => `t${reasons.push(reason)}`,
        backoff: { initialMs: 100, maxMs: 1000 },
        random: () => 1,
      });
      await c.start();
      await vi.advanceTimersByTimeAsync(5000);
      // The snapshot at 0 ms, then after 100, 200, 400, 800, 1000, 1000 and 1000 ms: 8 in 5 s.
      expect(server.requests.map((r) => r.path)).toEqual(Array(8).fill("snapshot"));
      expect(reasons).toEqual(["initial", ...Array(7).fill("unauthorized")]);
      expect(server.requests.map((r) => r.token)).toEqual(reasons.map((_, i) => `t${i + 1}`));
      expect(c.status).toBe("error"); // fresh tokens did not help

      server.authorize = () => undefined;
      await vi.advanceTimersByTimeAsync(1000);
      expect(c.status).toBe("online");
      expect(reasons).toHaveLength(9);
    } finally {
      vi.useRealTimers();
    }
  });

  it("makes one auth call for a burst of 401s: push, snapshot and JOIN wait for the call in flight", async () => {
    const server = new FakeServer();
    server.authorize = (_, token) => (token === "fresh" ? undefined : "unauthorized");
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const reasons: string[] = [];
    const c = client(server, {
      webSocket: server.connect,
      scopes: ["a", "b"],
      pullIntervalMs: 60_000,
      // HTTP answers come late: the JOIN is refused first, then the push and the snapshot.
      fetch: async (input, init) => {
        await sleep(20);
        return server.fetch(input, init);
      },
      auth: async (reason) => {
        reasons.push(reason);
        if (reason === "initial") return "stale";
        await gate;
        return "fresh";
      },
    });
    await c.start();
    await c.mutate("todo/create", { id: "x", title: "x" }, { scope: "a" });
    const refused = (path: string) => server.requests.some((r) => r.path === path && r.status === 401);
    await until(() => refused("push") && refused("snapshot") && reasons.length === 2);
    await sleep(30); // retries come due meanwhile: they wait for the call in flight
    expect(reasons).toEqual(["initial", "unauthorized"]);
    const socket = server.sockets[0]!;
    expect(socket.joins()).toEqual([{ scopes: ["a", "b"], token: "stale" }]);
    expect(server.requests.every((r) => r.token === "stale")).toBe(true);

    release();
    await until(() => c.pendingCount === 0 && socket.joined.has("a") && socket.joined.has("b"));
    await c.pull();
    expect(reasons).toEqual(["initial", "unauthorized"]);
    expect(socket.joins().at(-1)).toEqual({ scopes: ["a", "b"], token: "fresh" });
    expect(server.todos("a").map((t) => t.title)).toEqual(["x"]);
  });

  it("asks for no other token after a 401 to a request whose token was replaced meanwhile", async () => {
    const server = new FakeServer();
    server.authorize = (_, token) => (token === "fresh" ? undefined : "unauthorized");
    const reasons: string[] = [];
    const c = client(server, {
      webSocket: server.connect,
      pullIntervalMs: 60_000,
      // The snapshot's 401 comes after the JOIN was refused and JOINed again with a fresh token.
      fetch: async (input, init) => {
        await sleep(30);
        return server.fetch(input, init);
      },
      auth: (reason) => (reasons.push(reason), reason === "initial" ? "stale" : "fresh"),
    });
    await c.start();
    await until(() => server.sockets[0]?.joined.has("_default") ?? false);
    await c.pull();
    expect(server.requests.filter((r) => r.status === 401).map((r) => r.token)).toEqual(["stale"]);
    expect(reasons).toEqual(["initial", "unauthorized"]);
  });

  it("retries, with backoff, where auth throws, and says so in the retry events and the status", async () => {
    const server = new FakeServer();
    let calls = 0;
    const c = client(server, {
      auth: () => {
        calls += 1;
        if (calls <= 2) throw new Error("no session yet");
        return "ok";
      },
    });
    const retries: RetryEvent[] = [];
    const statuses: SyncStatus[] = [];
    c.on("retry", (r) => retries.push(r));
    c.on("status", (s) => statuses.push(s));
    await c.start();
    await c.pull();
    expect(calls).toBe(3);
    expect(retries.filter((r) => r.what === "pull" && r.reason.includes("no session yet"))).toHaveLength(2);
    expect(statuses).toContain("error");
    expect(c.status).toBe("online");
    expect(server.requests.length).toBeGreaterThan(0);
    expect(server.requests.every((r) => r.token === "ok")).toBe(true);
  });
});

describe("auth and close", () => {
  it("close() stops waiting for an auth that never answers after closeTimeoutMs", async () => {
    const server = new FakeServer();
    const c = client(server, { auth: () => new Promise<string>(() => {}), closeTimeoutMs: 20 });
    await c.start();
    void c.pull();
    await sleep(10);
    await c.close();
    expect(server.requests).toEqual([]);
  });
});

describe("auth on the live channel", () => {
  it("after an ERROR unauthorized naming scopes, JOINs them again with a fresh token, and their pokes come again", async () => {
    const server = new FakeServer();
    let valid = "t1";
    server.authorize = (_, token) => (token === valid ? undefined : "unauthorized");
    const reasons: string[] = [];
    const c = client(server, {
      webSocket: server.connect,
      scopes: ["a", "b"],
      pullIntervalMs: 60_000,
      auth: (reason) => `t${reasons.push(reason)}`,
    });
    await c.start();
    await c.pull();
    await until(() => server.sockets[0]?.joined.size === 2);
    const socket = server.sockets[0]!;

    // The identity expires: the server's re-check leaves "a" and says so, unprompted.
    valid = "t2";
    socket.revoke("unauthorized", ["a"]);
    await until(() => socket.joins().length === 2);
    expect(socket.joins()[1]).toEqual({ scopes: ["a"], token: "t2" });
    expect(reasons).toEqual(["initial", "unauthorized"]);
    await until(() => socket.joined.has("a"));

    server.push([{ name: "todo/create", args: { id: "p", title: "poked" }, client_id: "o", client_seq: 1, scope: "a" }]);
    await until(() => c.view("a").get("todo", "p") !== undefined);
    expect(server.requests.at(-1)!.token).toBe("t2"); // the pull it made carries the fresh token too
    expect(server.sockets).toHaveLength(1); // no reconnect needed
  });
});
