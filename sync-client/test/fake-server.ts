// A small in-memory implementation of PROTOCOL.md's push, pull and snapshot (todo mutations), as
// version 1.1 or, with `version = 1`, as version 1 (no log_id, no client_seq, no remembered
// failures, no snapshot pages), with knobs to fail requests, lose answers, trim or replace the log,
// refuse credentials or scopes, and a fake live channel.
import type { Change, JoinReply, LeaveReply, LiveError, LiveSocket, MutationResult, Poke, ServerFrame, WireMutation } from "../src/index.js";

type Todo = { id: string; title: string; completed: boolean };

/** A scripted answer: a status (with a protocol error body), "lose" (apply, then drop the answer), or a whole answer. */
export type Scripted = number | "lose" | { status: number; body?: string; headers?: Record<string, string> };

/** A request as the fake server saw it: `token` is the bearer token it carried. */
export interface SeenRequest {
  path: string;
  body: any;
  headers: Headers;
  token: string | undefined;
  status?: number;
}

/** Why the authorizer refuses a token a scope, or undefined where it allows it. */
export type Refusal = "unauthorized" | "forbidden" | undefined;

export class FakeServer {
  version: 1 | 1.1 = 1.1;
  logId = newLogId();
  log: Change[] = [];
  head = 0;
  /** Changes at or below this cursor were trimmed. */
  trimmedUpTo = 0;
  entities = new Map<string, Map<string, Todo>>();
  seqs = new Map<string, number>();
  /** Failures for good, by client and seq, as 1.1 remembers them. */
  failures = new Map<string, { code: string; error: string }>();
  /** Entities per snapshot page (1.1); default: one page. */
  snapshotPageSize = Infinity;
  requests: SeenRequest[] = [];
  /** The authorizer, asked for every scope of every request and JOIN; default: everything allowed. */
  authorize: (scope: string, token: string | undefined) => Refusal = () => undefined;
  offline = false;
  /** Answers to give instead of the real one, in order. */
  script: Scripted[] = [];
  /** The endpoint the script applies to. */
  scriptPath = "push";
  sockets: FakeSocket[] = [];

  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const path = String(input).replace(/^.*\/_sync\//, "");
    const body = JSON.parse(String(init?.body ?? "{}"));
    const headers = new Headers(init?.headers);
    const authorization = headers.get("authorization");
    const token = authorization?.startsWith("Bearer ") ? authorization.slice("Bearer ".length) : undefined;
    const request: SeenRequest = { path, body, headers, token };
    this.requests.push(request);
    await Promise.resolve();
    if (this.offline) throw new TypeError("Failed to fetch");
    const scopes: string[] = path === "push" ? body.mutations.map((m: WireMutation) => m.scope) : [body.scope ?? "_default"];
    const refusals = scopes.map((scope) => this.authorize(scope, token));
    // As the server does: no valid credentials (401) before a refused scope (403).
    const refusal = refusals.includes("unauthorized") ? "unauthorized" : refusals.includes("forbidden") ? "forbidden" : undefined;
    if (refusal) {
      request.status = refusal === "unauthorized" ? 401 : 403;
      return json(request.status, { error: `refused: ${refusal}`, code: refusal });
    }
    const next = path === this.scriptPath ? this.script.shift() : undefined;
    if (typeof next === "number") {
      request.status = next;
      const code = next === 503 ? "unavailable" : next === 401 ? "unauthorized" : next === 429 ? "too_many_requests" : "invalid_request";
      return json(next, { error: `scripted ${next}`, code });
    }
    if (typeof next === "object") {
      request.status = next.status;
      return new Response(next.body ?? "", { status: next.status, headers: next.headers ?? {} });
    }
    const [status, answer] = this.handle(path, body);
    request.status = status;
    if (next === "lose") throw new TypeError("the connection was reset");
    return json(status, answer);
  };

  get v11(): boolean {
    return this.version === 1.1;
  }

  handle(path: string, body: any): [number, unknown] {
    switch (path) {
      case "push":
        return this.push(body.mutations as WireMutation[]);
      case "pull":
        return this.pull(body);
      case "snapshot":
        return this.snapshot(body);
      default:
        return [404, { error: "no", code: "not_found" }];
    }
  }

  push(mutations: WireMutation[]): [number, unknown] {
    for (const m of mutations) {
      if (m.scope.includes("\u0000")) return [400, { error: "bad scope", code: "invalid_scope" }];
    }
    const results: MutationResult[] = mutations.map((m) => this.apply(m));
    this.poke(new Set(mutations.map((m) => m.scope)));
    return [200, { results, cursor: this.head, ...(this.v11 ? { log_id: this.logId } : {}) }];
  }

  apply(m: WireMutation): MutationResult {
    const last = this.seqs.get(m.client_id) ?? 0;
    if (m.client_seq <= last) {
      const failed = this.failures.get(`${m.client_id}/${m.client_seq}`);
      if (failed && this.v11) return { ok: false, cursor: this.head, duplicate: true, ...failed };
      return { ok: true, cursor: this.head, duplicate: true };
    }
    this.seqs.set(m.client_id, m.client_seq);
    const todos = this.scope(m.scope);
    const args = m.args as any;
    const fail = (code: string): MutationResult => {
      this.failures.set(`${m.client_id}/${m.client_seq}`, { code, error: code });
      return { ok: false, cursor: this.head, code, error: code };
    };
    let todo: Todo | undefined;
    let op: Change["op"] = "update";
    switch (m.name) {
      case "todo/create":
        if (todos.has(args.id)) return fail("already_exists");
        todo = { id: args.id, title: args.title, completed: false };
        op = "create";
        break;
      case "todo/toggle":
        todo = todos.get(args.id);
        if (!todo) return fail("not_found");
        todo = { ...todo, completed: !todo.completed };
        break;
      case "todo/rename":
        todo = todos.get(args.id);
        if (!todo) return fail("not_found");
        todo = { ...todo, title: args.title };
        break;
      case "todo/delete":
        if (!todos.delete(args.id)) return fail("not_found");
        op = "delete";
        break;
      default:
        return fail("unknown_mutation");
    }
    this.head += 1;
    const change: Change = { cursor: this.head, scope: m.scope, entity: "todo", id: args.id, op, ts: new Date().toISOString() };
    if (todo) {
      todos.set(todo.id, todo);
      change.data = todo;
    }
    this.log.push(change);
    return { ok: true, cursor: this.head, changes: [change], value: todo };
  }

  /** What 1.1 adds to pull and snapshot answers. */
  #identity(clientId: unknown): Record<string, unknown> {
    if (!this.v11) return {};
    return { log_id: this.logId, ...(typeof clientId === "string" ? { client_seq: this.seqs.get(clientId) ?? 0 } : {}) };
  }

  pull(body: any): [number, unknown] {
    const scope = body.scope ?? "_default";
    const cursor = body.cursor ?? 0;
    const limit = body.limit ?? 100;
    if (this.v11 && body.log_id !== undefined && body.log_id !== this.logId) return [410, { error: "other log", code: "log_replaced" }];
    if (cursor > this.head) return [410, { error: "ahead", code: "cursor_ahead" }];
    if (cursor < this.trimmedUpTo) return [410, { error: "old", code: "cursor_too_old" }];
    const after = this.log.filter((c) => c.scope === scope && c.cursor > cursor);
    const changes = after.slice(0, limit);
    const last = changes[changes.length - 1];
    return [200, { changes, cursor: last ? last.cursor : this.head, has_more: after.length > changes.length, ...this.#identity(body.client_id) }];
  }

  snapshot(body: any): [number, unknown] {
    const scope = body.scope ?? "_default";
    const todos = [...this.scope(scope).values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const start = this.v11 && Array.isArray(body.after) ? todos.filter((t) => t.id > body.after[1]) : todos;
    const size = this.v11 ? this.snapshotPageSize : Infinity;
    const page = start.slice(0, size);
    const has_more = start.length > page.length;
    const data = page.length > 0 ? { todo: Object.fromEntries(page.map((t) => [t.id, t])) } : {};
    const paging = this.v11 ? { has_more, ...(has_more ? { next: ["todo", page[page.length - 1]!.id] } : {}) } : {};
    return [200, { data: structuredClone(data), cursor: this.head, ...this.#identity(body.client_id), ...paging }];
  }

  /** Drops every change at or below `cursor` from the log. */
  trim(cursor: number): void {
    this.log = this.log.filter((c) => c.cursor > cursor);
    this.trimmedUpTo = cursor;
  }

  /** The database is restored from `other`: its log, entities, client records and log id. */
  replaceWith(other: FakeServer): void {
    this.log = other.log;
    this.head = other.head;
    this.trimmedUpTo = other.trimmedUpTo;
    this.entities = other.entities;
    this.seqs = other.seqs;
    this.failures = other.failures;
    this.logId = other.logId;
  }

  scope(scope: string): Map<string, Todo> {
    let todos = this.entities.get(scope);
    if (!todos) this.entities.set(scope, (todos = new Map()));
    return todos;
  }

  todos(scope = "_default"): Todo[] {
    return [...this.scope(scope).values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  poke(scopes: Set<string>): void {
    for (const socket of this.sockets) {
      if (socket.readyState !== 1) continue;
      for (const scope of scopes) if (socket.joined.has(scope)) socket.deliver({ type: 11, ref: 0, payload: { scope, cursor: this.head } });
    }
  }

  connect = (url: string): LiveSocket => {
    const socket = new FakeSocket(url, this);
    this.sockets.push(socket);
    return socket;
  };

  scopeCursor(scope: string): number {
    return this.log.filter((c) => c.scope === scope).reduce((max, c) => Math.max(max, c.cursor), 0);
  }

  /** An operation by another client, straight into the server. */
  other(name: string, args: Record<string, unknown>, scope = "_default"): MutationResult {
    const seq = (this.seqs.get("other") ?? 0) + 1;
    return this.apply({ name, args, client_id: "other", client_seq: seq, scope });
  }
}

export class FakeSocket implements LiveSocket {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: unknown) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  sent: any[] = [];
  joined = new Set<string>();

  constructor(
    readonly url: string,
    readonly server: FakeServer,
  ) {
    setTimeout(() => {
      if (this.readyState !== 0) return;
      if (server.offline) {
        this.readyState = 3;
        this.onclose?.({});
        return;
      }
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }

  send(data: string): void {
    const message = JSON.parse(data);
    this.sent.push(message);
    if (message.type === 1) {
      // As the server does: one ERROR naming the refused scopes (`unauthorized` wins), then a REPLY.
      const cursors: Record<string, number> = {};
      const refused: string[] = [];
      let code: Refusal;
      for (const scope of message.payload.scopes) {
        const refusal = this.server.authorize(scope, message.payload.token);
        if (refusal) {
          refused.push(scope);
          if (code !== "unauthorized") code = refusal;
          continue;
        }
        this.joined.add(scope);
        cursors[scope] = this.server.scopeCursor(scope);
      }
      if (code) this.deliver({ type: 8, ref: message.ref, payload: { code, error: `not joined: ${code}`, scopes: refused } });
      const logId = this.server.v11 ? { log_id: this.server.logId } : {};
      this.deliver({ type: 5, ref: message.ref, payload: { status: "ok", cursors, ...logId } });
    }
    if (message.type === 2) {
      for (const scope of message.payload.scopes) this.joined.delete(scope);
      this.deliver({ type: 5, ref: message.ref, payload: { status: "ok" } });
    }
  }

  /** The server's re-check refuses joined scopes: it leaves them and says so, unprompted. */
  revoke(code: "unauthorized" | "forbidden", scopes: string[]): void {
    for (const scope of scopes) this.joined.delete(scope);
    this.deliver({ type: 8, ref: 0, payload: { code, error: `no longer joined: ${code}`, scopes } });
  }

  /** The JOIN frames this socket sent. */
  joins(): { scopes: string[]; token?: string }[] {
    return this.sent.filter((m) => m.type === 1).map((m) => m.payload);
  }

  deliver(message: ServerFrame<JoinReply | LeaveReply | LiveError | Poke>): void {
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(message) }), 0);
  }

  /** The server or the network closes the connection. */
  drop(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({});
  }

  close(): void {
    this.drop();
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function newLogId(): string {
  return `log-${Math.random().toString(36).slice(2, 12)}`;
}

/** Waits until `check` holds, polling; fails after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms: ${check.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A Web Locks stand-in shared by the clients of one test: exclusive locks, granted in request order. */
export class FakeLocks {
  readonly #tails = new Map<string, Promise<void>>();
  readonly #held = new Set<string>();

  request(name: string, options: { signal?: AbortSignal; ifAvailable?: boolean }, callback: (lock: unknown) => Promise<void>): Promise<unknown> {
    if (options.ifAvailable && (this.#held.has(name) || this.#tails.has(name))) return callback(null);
    let aborted = false;
    const previous = this.#tails.get(name) ?? Promise.resolve();
    const mine = previous.then(async () => {
      if (aborted) return;
      this.#held.add(name);
      try {
        await callback({ name });
      } finally {
        this.#held.delete(name);
      }
    });
    const tail = mine.catch(() => {});
    this.#tails.set(name, tail);
    void tail.then(() => this.#tails.get(name) === tail && this.#tails.delete(name));
    return new Promise((resolve, reject) => {
      options.signal?.addEventListener("abort", () => {
        aborted = true;
        reject(new DOMException("aborted", "AbortError"));
      });
      mine.then(resolve, reject);
    });
  }
}
