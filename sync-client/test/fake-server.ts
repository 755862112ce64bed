// A small in-memory implementation of docs/protocol.md's push, pull and snapshot (todo mutations), with
// knobs to fail requests, lose answers and trim the log, and a fake live channel.
import type { Change, LiveSocket, MutationResult, WireMutation } from "../src/index.js";

type Todo = { id: string; title: string; completed: boolean };

export class FakeServer {
  log: Change[] = [];
  head = 0;
  /** Changes at or below this cursor were trimmed. */
  trimmedUpTo = 0;
  entities = new Map<string, Map<string, Todo>>();
  seqs = new Map<string, number>();
  requests: { path: string; body: any; status?: number }[] = [];
  offline = false;
  /** Answers to give instead of the real one, in order: a status (with an error body), or "lose" (apply, then drop the answer). */
  script: (number | "lose")[] = [];
  /** The endpoint the script applies to. */
  scriptPath = "push";
  sockets: FakeSocket[] = [];

  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const path = String(input).replace(/^.*\/_sync\//, "");
    const body = JSON.parse(String(init?.body ?? "{}"));
    const request: { path: string; body: any; status?: number } = { path, body };
    this.requests.push(request);
    await Promise.resolve();
    if (this.offline) throw new TypeError("Failed to fetch");
    const next = path === this.scriptPath ? this.script.shift() : undefined;
    if (typeof next === "number") {
      request.status = next;
      return json(next, { error: `scripted ${next}`, code: next === 503 ? "unavailable" : next === 401 ? "unauthorized" : "invalid_request" });
    }
    const [status, answer] = this.handle(path, body);
    request.status = status;
    if (next === "lose") throw new TypeError("the connection was reset");
    return json(status, answer);
  };

  handle(path: string, body: any): [number, unknown] {
    switch (path) {
      case "push":
        return this.push(body.mutations as WireMutation[]);
      case "pull":
        return this.pull(body.scope ?? "_default", body.cursor ?? 0, body.limit ?? 100);
      case "snapshot":
        return this.snapshot(body.scope ?? "_default");
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
    return [200, { results, cursor: this.head }];
  }

  apply(m: WireMutation): MutationResult {
    const last = this.seqs.get(m.client_id) ?? 0;
    if (m.client_seq <= last) return { ok: true, cursor: this.head, duplicate: true };
    this.seqs.set(m.client_id, m.client_seq);
    const todos = this.scope(m.scope);
    const args = m.args as any;
    const fail = (code: string): MutationResult => ({ ok: false, cursor: this.head, code, error: code });
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

  pull(scope: string, cursor: number, limit: number): [number, unknown] {
    if (cursor > this.head) return [410, { error: "ahead", code: "cursor_ahead" }];
    if (cursor < this.trimmedUpTo) return [410, { error: "old", code: "cursor_too_old" }];
    const after = this.log.filter((c) => c.scope === scope && c.cursor > cursor);
    const changes = after.slice(0, limit);
    const last = changes[changes.length - 1];
    return [200, { changes, cursor: last ? last.cursor : this.head, has_more: after.length > changes.length }];
  }

  snapshot(scope: string): [number, unknown] {
    const todos = this.entities.get(scope);
    const data = todos && todos.size > 0 ? { todo: Object.fromEntries(todos) } : {};
    return [200, { data: structuredClone(data), cursor: this.head }];
  }

  /** Drops every change at or below `cursor` from the log. */
  trim(cursor: number): void {
    this.log = this.log.filter((c) => c.cursor > cursor);
    this.trimmedUpTo = cursor;
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
      const cursors: Record<string, number> = {};
      for (const scope of message.payload.scopes) {
        this.joined.add(scope);
        cursors[scope] = this.server.scopeCursor(scope);
      }
      this.deliver({ type: 5, ref: message.ref, payload: { status: "ok", cursors } });
    }
  }

  deliver(message: unknown): void {
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

/** Waits until `check` holds, polling; fails after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms: ${check.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
