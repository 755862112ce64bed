// The local view: precise subscriptions, frozen values, and the incremental list against a re-sort.
import { describe, expect, it } from "vitest";
import type { Change } from "../src/index.js";
import { ScopeView } from "../src/view.js";
import { FakeServer } from "./fake-server.js";
import { client, mutators, type Todo } from "./helpers.js";

describe("subscriptions", () => {
  it("run only when what their query read changed, and not on empty pulls", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "a" });
    server.other("todo/create", { id: "b", title: "b" });
    const c = client(server);
    await c.start();
    await c.pull();
    const lists: unknown[] = [];
    const singles: unknown[] = [];
    const counts: number[] = [];
    c.subscribe((view) => view.list("todo"), (list) => lists.push(list));
    c.subscribe((view) => view.get("todo", "a"), (todo) => singles.push(todo));
    c.subscribe((view) => view.list("todo").filter((t) => t.completed).length, (n) => counts.push(n));
    const done: unknown[] = [];
    c.subscribe((view) => view.list("todo").filter((t) => t.completed), (list) => done.push(list)); // a new array each run
    let runs = 0;
    c.subscribe(
      (view) => (runs++, view.get("todo", "a")),
      () => {},
    );
    for (let i = 0; i < 5; i++) await c.pull();
    expect([lists.length, singles.length, counts.length, done.length, runs]).toEqual([1, 1, 1, 1, 1]);

    server.other("todo/rename", { id: "b", title: "b2" });
    await c.pull();
    // The list changed; a, the count and the (element by element equal) done list did not, and the
    // query that read only a did not even run.
    expect([lists.length, singles.length, counts.length, done.length, runs]).toEqual([2, 1, 1, 1, 1]);

    server.offline = true; // the push must not answer before the assertions
    await c.mutate("todo/toggle", { id: "a" });
    expect([lists.length, singles.length, counts.length]).toEqual([3, 2, 2]);
    expect(counts.at(-1)).toBe(1);
  });

  it("hand out frozen values and fresh lists: a mutator or subscriber that edits in place cannot corrupt the base state", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a", title: "server" });
    server.other("todo/create", { id: "b", title: "other" });
    const inPlace = {
      ...mutators,
      "todo/rename": (tx: any, { id, title }: { id: string; title: string }) => {
        const todo = tx.get("todo", id) as Todo;
        todo.title = title; // throws: the value is frozen
        tx.put("todo", id, todo);
      },
    };
    const c = client(server, { mutators: inPlace });
    await c.start();
    await c.pull();
    const list = c.view().list("todo") as Todo[];
    expect(() => {
      list[0]!.title = "changed by a subscriber";
    }).toThrow(TypeError);
    list.reverse(); // the caller's own array
    expect(c.view().list("todo").map((t) => t.id)).toEqual(["a", "b"]);

    // The server refuses the rename (the todo is gone there); no pull arrives meanwhile.
    server.entities.get("_default")!.delete("a");
    server.scriptPath = "pull";
    server.script = Array(1000).fill(503);
    const renamed = await c.mutate("todo/rename", { id: "a", title: "mine" });
    expect(await renamed.confirmed).toMatchObject({ ok: false });
    expect(c.view().get("todo", "a")?.title).toBe("server");
  });
});

describe("the incremental list", () => {
  it("equals a sort of the rows after any mix of creates, updates and deletes", () => {
    const view = new ScopeView({});
    const reference = new Map<string, unknown>();
    let cursor = 0;
    let seed = 7;
    const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let round = 0; round < 200; round++) {
      const changes: Change[] = [];
      const size = round % 10 === 0 ? 100 : random(5) + 1; // now and then a page too big to patch
      for (let i = 0; i < size; i++) {
        const id = `id-${random(300)}`;
        cursor += 1;
        if (random(4) === 0) {
          changes.push({ cursor, scope: "s", entity: "todo", id, op: "delete", ts: "" });
          reference.delete(id);
        } else {
          const data = { id, v: cursor };
          changes.push({ cursor, scope: "s", entity: "todo", id, op: "update", data, ts: "" });
          reference.set(id, data);
        }
      }
      view.apply(changes, { cursor, clientSeq: 0 });
      const expected = [...reference.keys()].sort().map((id) => reference.get(id));
      expect(view.list("todo")).toEqual(expected);
    }
  });
});
