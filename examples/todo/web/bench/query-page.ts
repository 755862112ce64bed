// The live query benchmark's page code, bundled by query.mjs: 100,000 todos and the query
// `completed = false, order by title, limit 50`, with and without an index on (completed, title),
// against the baseline, a bare filter + sort + slice over the same array of todos in the same page.
import { MemoryStore, SyncClient, type Change } from "@syncengine/client";

type Todo = { id: string; title: string; completed: boolean };
type Entities = { todo: Todo };

/** Titles in no particular order (a fixed pseudo-random sequence), half the todos completed. */
function todos(n: number): Record<string, Todo> {
  let seed = 42;
  const next = (): number => {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    return seed;
  };
  const all: Record<string, Todo> = {};
  for (let i = 0; i < n; i++) {
    const id = `todo-${String(i).padStart(6, "0")}`;
    all[id] = { id, title: `${next().toString(36)} ${next().toString(36)}`, completed: i % 2 === 0 };
  }
  return all;
}

/** A server in the page: a snapshot of the todos, then one toggle per pull. */
function fakeServer(n: number) {
  const all = todos(n);
  let head = n;
  let next: Change[] = [];
  const json = (body: unknown): Response => new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
  return {
    toggle(id: string): void {
      const todo = all[id] as Todo;
      all[id] = { ...todo, completed: !todo.completed };
      next = [{ cursor: ++head, scope: "_default", entity: "todo", id, op: "update", data: all[id], ts: new Date().toISOString() }];
    },
    fetch: async (input: RequestInfo | URL): Promise<Response> => {
      if (String(input).endsWith("/snapshot")) return json({ data: { todo: all }, cursor: head, log_id: "bench-log", client_seq: 0 });
      const changes = next;
      next = [];
      return json({ changes, cursor: head, has_more: false, log_id: "bench-log", client_seq: 0 });
    },
  };
}

async function setup(n: number, indexed: boolean) {
  const server = fakeServer(n);
  const client = new SyncClient<Record<string, { args: unknown; result: unknown }>, Entities>({
    store: new MemoryStore(),
    fetch: server.fetch,
    webSocket: null,
    url: location.origin,
    tabs: { locks: null, channel: null },
    ...(indexed ? { indexes: { todo: [["completed", "title"]] } } : {}),
  });
  await client.start();
  await client.pull();
  const query = client.query("todo").where("completed", "=", false).orderBy("title").limit(50);
  return { server, client, query };
}

/** The bare recomputation: filter, sort and slice over a plain array of the same todos. */
function bare(list: readonly Todo[]): Todo[] {
  return list
    .filter((t) => !t.completed)
    .sort((a, b) => (a.title < b.title ? -1 : a.title > b.title ? 1 : a.id < b.id ? -1 : 1))
    .slice(0, 50);
}

function same(a: readonly Todo[], b: readonly Todo[]): boolean {
  return a.length === b.length && a.every((t, i) => t.id === b[i]?.id);
}

/**
 * Per round, in ms: the live query's first result (subscribe, then read `result`), `run()`, and
 * the bare recomputation over the same todos, alternating.
 */
async function firstResult(n: number, rounds: number, indexed: boolean): Promise<{ live: number[]; run: number[]; bare: number[] }> {
  const { client, query } = await setup(n, indexed);
  const list = client.view().list("todo") as Todo[];
  const times = { live: [] as number[], run: [] as number[], bare: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    let start = performance.now();
    const expected = bare(list);
    times.bare.push(performance.now() - start);

    start = performance.now();
    const live = client.watch(query);
    const off = live.subscribe(() => {});
    const result = live.result;
    times.live.push(performance.now() - start);
    off();

    start = performance.now();
    const ran = query.run();
    times.run.push(performance.now() - start);
    if (!same(result, expected) || !same(ran, expected)) throw new Error("the query's result differs from the bare one");
  }
  await client.close();
  return times;
}

/**
 * Per round, in ms: from `client.pull()` bringing one toggled todo (one of the result, or the one
 * toggled back the round before: the result changes every round) to the live query's listener,
 * and the bare recomputation of the same result over the same todos.
 */
async function changed(n: number, rounds: number, indexed: boolean): Promise<{ live: number[]; bare: number[] }> {
  const { server, client, query } = await setup(n, indexed);
  const live = client.watch(query);
  let heard: (() => void) | undefined;
  let calls = 0;
  live.subscribe(() => {
    calls += 1;
    heard?.();
  });
  const times = { live: [] as number[], bare: [] as number[] };
  let back: string | undefined;
  for (let round = 0; round < rounds; round++) {
    const id = back ?? (live.result[round % 50] as Todo).id;
    back = back ? undefined : id;
    server.toggle(id);
    const called = new Promise<void>((resolve) => (heard = resolve));
    let start = performance.now();
    await client.pull();
    await called;
    times.live.push(performance.now() - start);

    const list = client.view().list("todo") as Todo[];
    start = performance.now();
    const expected = bare(list);
    times.bare.push(performance.now() - start);
    if (!same(live.result, expected)) throw new Error("the live result differs from the bare one");
  }
  if (calls !== rounds) throw new Error(`${calls} notifications for ${rounds} changes`);
  await client.close();
  return times;
}

Object.assign(globalThis, { bench: { firstResult, changed } });
