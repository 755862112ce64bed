// What the test files share: the todo mutations, a client factory against a fake server, and cleanup.
import { afterEach } from "vitest";
import { SyncClient, type LocalMutators, type SyncClientOptions } from "../src/index.js";
import type { FakeServer } from "./fake-server.js";

export type Todo = { id: string; title: string; completed: boolean };
export interface Mutations {
  "todo/create": { args: { title: string; id?: string | null }; result: Todo };
  "todo/toggle": { args: { id: string }; result: Todo };
  "todo/rename": { args: { id: string; title: string }; result: Todo };
  "todo/delete": { args: { id: string }; result: void };
}
export interface Entities {
  todo: Todo;
}
export type Client = SyncClient<Mutations, Entities>;

export const mutators: LocalMutators<Mutations, Entities> = {
  "todo/create": (tx, { id, title }) => {
    if (id) tx.put("todo", id, { id, title, completed: false });
  },
  "todo/toggle": (tx, { id }) => {
    const todo = tx.get("todo", id);
    if (todo) tx.put("todo", id, { ...todo, completed: !todo.completed });
  },
  "todo/rename": (tx, { id, title }) => {
    const todo = tx.get("todo", id);
    if (todo) tx.put("todo", id, { ...todo, title });
  },
  "todo/delete": (tx, { id }) => tx.delete("todo", id),
};

const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

export function client(server: FakeServer, options: Partial<SyncClientOptions<Mutations, Entities>> = {}): Client {
  const c = new SyncClient<Mutations, Entities>({
    url: "http://server.test",
    fetch: server.fetch,
    webSocket: null,
    mutators,
    backoff: { initialMs: 1, maxMs: 4 },
    ...options,
  });
  clients.push(c);
  return c;
}

export const titles = (c: Client): string[] => c.view().list("todo").map((t) => t.title);

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
