// Typed use of the generated module with the real client: this file must type-check under `tsc --strict`.
import { SyncClient, type LiveQuery, type MutationOutcome, type Query, type Queued } from "../../../../sync-client/src/index.js";
import { mutationNames, type Entities, type MutationArgs, type Mutations, type Todo } from "../src/sync.gen";

const sync = new SyncClient<Mutations, Entities>({ indexes: { todo: [["completed", "title"], ["created_by"]] } });

export function queries(): void {
  const active: Query<Todo> = sync
    .query("todo", { scopes: ["_default", "team"] })
    .where("completed", "=", false)
    .where("title", "startsWith", "Buy")
    .where("title", "in", ["a", "b"])
    .where("created_by", "!=", undefined)
    .filter((todo) => todo.title.length > 2)
    .orderBy("title")
    .orderBy("id", "desc")
    .offset(10)
    .limit(50);
  const rows: readonly Readonly<Todo>[] = active.run();
  const key: string = active.key;
  const live: LiveQuery<Todo> = sync.watch(active);
  const unsubscribe: () => void = live.subscribe(() => void live.result[0]?.title);
  unsubscribe();
  void rows;
  void key;
}

export async function use(): Promise<void> {
  const queued: Queued<Todo> = await sync.mutate("todo/create", { title: "x" });
  const seq: number = queued.seq;
  const outcome: MutationOutcome<Todo> = await queued.confirmed;
  if (outcome.ok) {
    const todo: Todo = outcome.value;
    await sync.mutate("todo/toggle", { id: todo.id });
    const renamed = await (await sync.mutate("todo/rename", { id: todo.id, title: "z" })).confirmed;
    const done: boolean = renamed.ok && renamed.value.completed;
    void done;
  } else {
    const why: string = `${outcome.code}: ${outcome.error}`;
    void why;
  }
  await sync.mutate("todo/create", { title: "y", id: "client-chosen" }, { scope: "team" });
  const deleted = await (await sync.mutate("todo/delete", { id: "a" })).confirmed;
  const nothing: void | undefined = deleted.ok ? deleted.value : undefined;
  const first: Readonly<Todo> | undefined = sync.view().list("todo")[0];
  sync.subscribe(
    (view) => view.get("todo", "a")?.title,
    (title: string | undefined) => void title,
  );
  await sync.pull();
  const args: MutationArgs<"todo/create"> = { title: "t", id: null };
  const names: readonly string[] = mutationNames;
  void seq;
  void nothing;
  void first;
  void args;
  void names;
}
