// Mistakes the generated types must catch with the real client: `tsc --strict` must refuse each marked line.
import { SyncClient } from "../../../../sync-client/src/index.js";
import type { Entities, Mutations } from "../src/sync.gen";

const sync = new SyncClient<Mutations, Entities>();
export async function mistakes(): Promise<void> {
  await sync.mutate("todo/create", { titel: "x" }); // line 7: a misspelt argument

  await sync.mutate("todo/fly", { id: "a" }); // line 9: an unknown mutation

  await sync.mutate("todo/rename", { id: "a" }); // line 11: a missing argument

  await sync.mutate("todo/toggle", { id: 42 }); // line 13: an argument of the wrong type

  const title: number | undefined = ((o) => (o.ok ? o.value.title : undefined))(await (await sync.mutate("todo/create", { title: "x" })).confirmed); // line 15
  void title;
}
