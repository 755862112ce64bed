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

  sync.query("todo").where("titel", "=", "x"); // line 18: a misspelt field

  sync.query("todo").where("completed", "=", "yes"); // line 20: a value of the wrong type

  sync.query("todo").where("completed", "startsWith", "t"); // line 22: a prefix of a field that is not a string

  sync.query("todo").orderBy("created"); // line 24: ordered by an unknown field

  sync.query("todos"); // line 26: an unknown entity type

  new SyncClient<Mutations, Entities>({ indexes: { todo: [["complete"]] } }); // line 28: an index on an unknown field
}
