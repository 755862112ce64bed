// @vitest-environment happy-dom
// The React bindings under a real renderer (react-dom in happy-dom): what re-renders, when, and
// what the hooks hand out.
import { act, memo, useState, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import type { LiveQuery, Query } from "../src/index.js";
import { SyncProvider, useEntity, useMutate, useQuery, useSyncStatus, type SyncState } from "../src/react.js";
import { FakeServer, until } from "./fake-server.js";
import { client, type Client, type Entities, type Mutations, type Todo } from "./helpers.js";

// The test mutations and entities type the hooks, as an app's generated module does.
declare module "../src/react.js" {
  interface Register {
    mutations: Mutations;
    entities: Entities;
  }
}

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const roots: Root[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) act(() => root.unmount());
});

function mount(c: Client, tree: ReactNode): Root {
  const root = createRoot(document.createElement("div"));
  roots.push(root);
  act(() => root.render(<SyncProvider client={c}>{tree}</SyncProvider>));
  return root;
}

/** A started client whose server holds `titles` (ids t0, t1, …), pulled. */
async function seeded(titles: string[]): Promise<{ server: FakeServer; c: Client }> {
  const server = new FakeServer();
  titles.forEach((title, i) => server.other("todo/create", { id: `t${i}`, title }));
  const c = client(server);
  await c.start();
  await c.pull();
  return { server, c };
}

/** Runs a mutation as the user's click would: inside act, so that React renders what it changed. */
async function mutate<N extends keyof Mutations & string>(c: Client, name: N, args: Mutations[N]["args"]): Promise<void> {
  await act(async () => {
    await c.mutate(name, args);
  });
}

/** Counts, by name, the renders of the components that call it. */
function renderCounter(): { counts: Record<string, number>; rendered: (name: string) => void } {
  const counts: Record<string, number> = {};
  return { counts, rendered: (name) => void (counts[name] = (counts[name] ?? 0) + 1) };
}

describe("useQuery", () => {
  it("re-renders only the components whose query result changed, and hands out the same array otherwise", async () => {
    const { server, c } = await seeded(["apples", "bread", "cheese"]);
    server.offline = true; // the pushes must not answer (and re-render) between the assertions
    const { counts, rendered } = renderCounter();
    const results: Record<string, (readonly unknown[])[]> = { open: [], a: [] };
    function Open(): ReactNode {
      const open = useQuery((q: Client) => q.query("todo").where("completed", "=", false).orderBy("title"), []);
      rendered("open");
      results["open"]?.push(open);
      return <ul>{open.map((t) => <li key={t.id}>{t.title}</li>)}</ul>;
    }
    function StartsWithA(): ReactNode {
      const a = useQuery((q: Client) => q.query("todo").where("title", "startsWith", "a"), []);
      rendered("a");
      results["a"]?.push(a);
      return <p>{a.length}</p>;
    }
    let rerender = (): void => {};
    function Parent(): ReactNode {
      const [, setTick] = useState(0);
      rerender = () => setTick((n) => n + 1);
      return (
        <>
          <Open />
          <StartsWithA />
        </>
      );
    }
    mount(c, <Parent />);
    expect(counts).toEqual({ open: 1, a: 1 });
    expect(results["open"]?.[0]?.map((t) => (t as Todo).title)).toEqual(["apples", "bread", "cheese"]);

    // Another entity changes (bread is not in the "a" query): only Open renders again.
    await mutate(c, "todo/toggle", { id: "t1" });
    expect(counts).toEqual({ open: 2, a: 1 });
    expect(results["open"]?.at(-1)?.map((t) => (t as Todo).title)).toEqual(["apples", "cheese"]);

    // A render from above with nothing changed: the same result objects.
    act(() => rerender());
    expect(counts).toEqual({ open: 3, a: 2 });
    expect(results["open"]?.at(-1)).toBe(results["open"]?.at(-2));
    expect(results["a"]?.at(-1)).toBe(results["a"]?.at(-2));

    // A change in both results renders both.
    await mutate(c, "todo/rename", { id: "t0", title: "avocados" });
    expect(counts).toEqual({ open: 4, a: 3 });
    expect(results["a"]?.at(-1)?.map((t) => (t as Todo).title)).toEqual(["avocados"]);
  });

  it("keeps the live query while the key stays the same, follows a new key, and unsubscribes on unmount", async () => {
    const { c } = await seeded(["apples", "bread"]);
    let active = 0;
    const watches: string[] = [];
    const watch = c.watch.bind(c);
    // Counts the listeners of every live query the hooks take.
    c.watch = (<T,>(query: Query<T>): LiveQuery<T> => {
      watches.push(query.key);
      const live = watch(query);
      return {
        get result() {
          return live.result;
        },
        subscribe(listener: () => void) {
          active++;
          const off = live.subscribe(listener);
          return () => {
            active--;
            off();
          };
        },
      };
    }) as typeof c.watch;
    let setPrefix = (_: string): void => {};
    let setNoise = (_: number): void => {};
    const shown: string[][] = [];
    function Search(): ReactNode {
      const [prefix, set] = useState("a");
      const [noise, setN] = useState(0);
      setPrefix = set;
      setNoise = setN;
      // A new Query object on every render where `noise` changes, with the same key.
      const found = useQuery((q: Client) => q.query("todo").where("title", "startsWith", prefix), [prefix, noise]);
      shown.push(found.map((t) => t.title));
      return null;
    }
    const root = mount(c, <Search />);
    expect(active).toBe(1);
    act(() => setNoise(1));
    act(() => setNoise(2));
    expect(new Set(watches).size).toBe(1);
    expect(watches.length).toBe(1); // an equal key built anew reads the same live query
    act(() => setPrefix("b"));
    expect(shown.at(-1)).toEqual(["bread"]);
    expect(new Set(watches).size).toBe(2);
    expect(active).toBe(1); // the old key's listener is gone
    act(() => root.unmount());
    roots.splice(roots.indexOf(root), 1);
    expect(active).toBe(0);
  });
});

describe("useEntity", () => {
  it("reads one entity of a scope, undefined while it is missing, and renders only when it changes", async () => {
    const { server, c } = await seeded(["apples", "bread"]);
    server.offline = true;
    const { counts, rendered } = renderCounter();
    const seen: (Todo | undefined)[] = [];
    function One({ id }: { id: string }): ReactNode {
      const todo: Todo | undefined = useEntity("todo", id);
      // @ts-expect-error: an unknown entity type fails the type check
      if (seen.length < 0) useEntity("todos", id);
      rendered(id);
      seen.push(todo);
      return <span>{todo?.title ?? "none"}</span>;
    }
    mount(
      c,
      <>
        <One id="t0" />
        <One id="t9" />
      </>,
    );
    expect(seen.map((t) => t?.title)).toEqual(["apples", undefined]);
    await mutate(c, "todo/rename", { id: "t1", title: "bagels" }); // neither reads t1
    expect(counts).toEqual({ t0: 1, t9: 1 });
    await mutate(c, "todo/toggle", { id: "t0" });
    expect(counts).toEqual({ t0: 2, t9: 1 });
    expect(seen.at(-1)?.completed).toBe(true);
    await mutate(c, "todo/create", { id: "t9", title: "cheese" });
    expect(counts).toEqual({ t0: 2, t9: 2 });
    expect(seen.at(-1)?.title).toBe("cheese");
    await mutate(c, "todo/delete", { id: "t9" });
    expect(seen.at(-1)).toBeUndefined();
  });

  it("reads the scope it is given", async () => {
    const server = new FakeServer();
    const c = client(server, { scopes: ["_default", "list:x"] });
    await c.start();
    server.offline = true;
    const seen: (string | undefined)[] = [];
    function InList(): ReactNode {
      seen.push(useEntity("todo", "a", { scope: "list:x" })?.title);
      return null;
    }
    mount(c, <InList />);
    await act(async () => {
      await c.mutate("todo/create", { id: "a", title: "elsewhere" });
    });
    expect(seen.at(-1)).toBeUndefined();
    await act(async () => {
      await c.mutate("todo/create", { id: "a", title: "in the list" }, { scope: "list:x" });
    });
    expect(seen.at(-1)).toBe("in the list");
  });
});

describe("useMutate", () => {
  it("is client.mutate, typed by the mutations, and the same function between renders", async () => {
    const { server, c } = await seeded([]);
    server.offline = true;
    const functions: unknown[] = [];
    let add = (_: string): Promise<unknown> => Promise.resolve();
    function Adder(): ReactNode {
      const mutate = useMutate(); // typed by Register
      functions.push(mutate);
      add = (title) => mutate("todo/create", { id: title, title });
      // @ts-expect-error: an argument of the wrong type fails the type check
      if (functions.length < 0) void mutate("todo/toggle", { id: 1 });
      // @ts-expect-error: so does an unknown mutation
      if (functions.length < 0) void mutate("todo/fly", {});
      const list = useQuery((q) => q.query("todo"), []);
      // @ts-expect-error: so does a misspelt field in a query built from the provider's client
      if (functions.length < 0) useQuery((q) => q.query("todo").where("titel", "=", "x"), []);
      return <p>{list.length}</p>;
    }
    const root = mount(c, <Adder />);
    await act(async () => {
      await add("milk");
    });
    expect(c.view().list("todo").map((t) => t.title)).toEqual(["milk"]);
    expect(c.pendingCount).toBe(1);
    expect(functions.length).toBe(2); // the list re-rendered
    expect(functions[1]).toBe(functions[0]);
    void root;
  });
});

describe("useSyncStatus", () => {
  it("follows the status and the pending count, with one object per state", async () => {
    const server = new FakeServer();
    const c = client(server);
    const states: SyncState[] = [];
    function Badge(): ReactNode {
      const state = useSyncStatus();
      states.push(state);
      return <span>{state.status}</span>;
    }
    mount(c, <Badge />);
    expect(states).toEqual([{ status: "offline", online: false, syncing: false, pending: 0 }]);
    await act(async () => {
      await c.start();
      await c.pull();
    });
    await act(() => until(() => c.status === "online"));
    expect(states.at(-1)).toEqual({ status: "online", online: true, syncing: false, pending: 0 });
    expect(states.map((s) => s.status)).toContain("syncing");
    expect(states.find((s) => s.status === "syncing")).toMatchObject({ online: true, syncing: true });

    server.offline = true;
    await act(async () => {
      await c.mutate("todo/create", { id: "a", title: "a" });
      await until(() => c.status === "offline");
    });
    expect(states.at(-1)).toEqual({ status: "offline", online: false, syncing: false, pending: 1 });

    const before = states.length;
    act(() => roots[0]?.render(<SyncProvider client={c}><Badge /></SyncProvider>));
    expect(states.length).toBe(before + 1);
    expect(states.at(-1)).toBe(states.at(-2)); // nothing changed: the same object

    server.offline = false;
    await act(async () => {
      c.wake();
      await until(() => c.pendingCount === 0 && c.status === "online");
    });
    expect(states.at(-1)).toEqual({ status: "online", online: true, syncing: false, pending: 0 });
  });
});

describe("re-render counts (issue 14, item 5)", () => {
  it("one changed todo of 1,000 re-renders only the components whose query result changed", async () => {
    const titles = Array.from({ length: 1000 }, (_, i) => `todo ${String(i).padStart(4, "0")}`);
    const { server, c } = await seeded(titles);
    server.offline = true;
    const { counts, rendered } = renderCounter();
    const Row = memo(function Row({ todo }: { todo: Todo }): ReactNode {
      rendered(todo.id);
      return <li>{todo.title}</li>;
    });
    function FirstOpen(): ReactNode {
      const open = useQuery((q: Client) => q.query("todo").where("completed", "=", false).orderBy("title").limit(50), []);
      rendered("list");
      return <ul>{open.map((t) => <Row key={t.id} todo={t} />)}</ul>;
    }
    function DoneCount(): ReactNode {
      rendered("done");
      return <p>{useQuery((q: Client) => q.query("todo").where("completed", "=", true), []).length}</p>;
    }
    function Unrelated(): ReactNode {
      rendered("unrelated");
      return <p>{useQuery((q: Client) => q.query("todo").where("title", "startsWith", "other"), []).length}</p>;
    }
    mount(
      c,
      <>
        <FirstOpen />
        <DoneCount />
        <Unrelated />
      </>,
    );
    const rows = (): number => Object.keys(counts).filter((k) => k.startsWith("t")).reduce((n, k) => n + (counts[k] ?? 0), 0);
    expect([counts["list"], counts["done"], counts["unrelated"], rows()]).toEqual([1, 1, 1, 50]);
    const reset = (): void => {
      for (const k of Object.keys(counts)) counts[k] = 0;
    };

    // A visible todo renamed in place: the list and that one row.
    reset();
    await mutate(c, "todo/rename", { id: "t10", title: "todo 0010 renamed" });
    expect([counts["list"], counts["done"], counts["unrelated"], rows(), counts["t10"]]).toEqual([1, 0, 0, 1, 1]);

    // A todo past the limit completed: only the count of completed ones.
    reset();
    await mutate(c, "todo/toggle", { id: "t500" });
    expect([counts["list"], counts["done"], counts["unrelated"], rows()]).toEqual([0, 1, 0, 0]);

    // A visible todo completed: the list, the count, and one row (the 51st, now shown).
    reset();
    await mutate(c, "todo/toggle", { id: "t3" });
    expect([counts["list"], counts["done"], counts["unrelated"], rows(), counts["t50"]]).toEqual([1, 1, 0, 1, 1]);
  });
});
