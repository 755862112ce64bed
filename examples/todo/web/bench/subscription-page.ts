// The subscription benchmark's page code, bundled by subscription.mjs: one changed todo in a scope of
// N todos, from the pull that brings it to the subscriber's callback, against the baseline, a bare
// loop that copies the same N todos into a new list with the changed one in its place.
import { IndexedDbStore, MemoryStore, SyncClient, type Change } from "@syncengine/client";

type Todo = { id: string; title: string; completed: boolean };

/** A server in the page: a snapshot of N todos, then one toggle per pull. */
function fakeServer(n: number) {
  const todos: Record<string, Todo> = {};
  for (let i = 0; i < n; i++) {
    const id = `todo-${String(i).padStart(6, "0")}`;
    todos[id] = { id, title: `Todo number ${i}, to do soon`, completed: false };
  }
  let head = n;
  let next: Change[] = [];
  const json = (body: unknown): Response => new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
  return {
    toggle(id: string): void {
      const todo = todos[id] as Todo;
      todos[id] = { ...todo, completed: !todo.completed };
      next = [{ cursor: ++head, scope: "_default", entity: "todo", id, op: "update", data: todos[id], ts: new Date().toISOString() }];
    },
    fetch: async (input: RequestInfo | URL): Promise<Response> => {
      if (String(input).endsWith("/snapshot")) return json({ data: { todo: todos }, cursor: head, log_id: "bench-log", client_seq: 0 });
      const changes = next;
      next = [];
      return json({ changes, cursor: head, has_more: false, log_id: "bench-log", client_seq: 0 });
    },
  };
}

/** Milliseconds from `client.pull()` to the callback, per round. */
async function subscription(n: number, rounds: number, store: "memory" | "indexeddb"): Promise<number[]> {
  const server = fakeServer(n);
  const name = `bench-subscription-${Math.random()}`;
  const client = new SyncClient<Record<string, { args: unknown; result: unknown }>, { todo: Todo }>({
    store: store === "memory" ? new MemoryStore() : await IndexedDbStore.open(name),
    fetch: server.fetch,
    webSocket: null,
    url: location.origin,
    tabs: { locks: null, channel: null },
  });
  await client.start();
  await client.pull();
  let heard: (() => void) | undefined;
  let calls = 0;
  client.subscribe(
    (view) => view.list("todo"),
    (list) => {
      calls += 1;
      if (list.length !== n) throw new Error(`the list holds ${list.length} todos`);
      heard?.();
    },
  );
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    server.toggle(`todo-${String((round * 7919) % n).padStart(6, "0")}`);
    const called = new Promise<void>((resolve) => (heard = resolve));
    const start = performance.now();
    await client.pull();
    await called;
    times.push(performance.now() - start);
  }
  if (calls !== rounds + 1) throw new Error(`${calls} callbacks for ${rounds} changes`);
  await client.close();
  if (store === "indexeddb") await IndexedDbStore.destroy(name);
  return times;
}

/** The baseline: a loop over the same N todos that makes the new list with one changed todo. */
function bareLoop(n: number, rounds: number): number[] {
  let list: Todo[] = [];
  for (let i = 0; i < n; i++) list.push({ id: `todo-${String(i).padStart(6, "0")}`, title: `Todo number ${i}, to do soon`, completed: false });
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const changed = (round * 7919) % n;
    const start = performance.now();
    const next = new Array<Todo>(n);
    for (let i = 0; i < n; i++) next[i] = i === changed ? { ...(list[i] as Todo), completed: !(list[i] as Todo).completed } : (list[i] as Todo);
    list = next;
    times.push(performance.now() - start);
  }
  return times;
}

Object.assign(globalThis, { bench: { subscription, bareLoop } });
