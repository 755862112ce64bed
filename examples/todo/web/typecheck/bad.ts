// Mistakes the generated types must catch: `tsc --strict` must refuse each marked line.
import { typed } from "../src/sync.gen";

declare const client: { mutate(name: string, args: unknown): Promise<unknown> };
const sync = typed(client);
export async function mistakes(): Promise<void> {
  await sync.mutate("todo/create", { titel: "x" }); // line 7: a misspelt argument

  await sync.mutate("todo/fly", { id: "a" }); // line 9: an unknown mutation

  await sync.mutate("todo/rename", { id: "a" }); // line 11: a missing argument

  await sync.mutate("todo/toggle", { id: 42 }); // line 13: an argument of the wrong type

  const title: number = (await sync.mutate("todo/create", { title: "x" })).title; // line 15
  void title;
}
