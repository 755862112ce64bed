// Typed use of the generated module: this file must type-check under `tsc --strict`.
import { mutationNames, typed, type MutationArgs, type Todo } from "../src/sync.gen";

declare const client: { mutate(name: string, args: unknown): Promise<unknown>; pull(): Promise<void> };
const sync = typed(client);

export async function use(): Promise<void> {
  const todo: Todo = await sync.mutate("todo/create", { title: "x" });
  await sync.mutate("todo/create", { title: "y", id: "client-chosen" });
  await sync.mutate("todo/toggle", { id: todo.id });
  const renamed = await sync.mutate("todo/rename", { id: todo.id, title: "z" });
  const done: boolean = renamed.completed;
  await sync.mutate("todo/delete", { id: todo.id });
  await sync.pull();
  const args: MutationArgs<"todo/create"> = { title: "t", id: null };
  const names: readonly string[] = mutationNames;
  void done;
  void args;
  void names;
}
