// The React bindings under a server-side render (react-dom/server in Node): the hooks give their
// defined server values, and nothing touches IndexedDB or the client's store.
import type { ReactNode } from "react";
import { renderToString } from "react-dom/server";
import { afterEach, expect, it } from "vitest";
import { SyncClient, type LocalStore } from "../src/index.js";
import { SyncProvider, useEntity, useMutate, useQuery, useSyncStatus } from "../src/react.js";
import type { Entities, Mutations } from "./helpers.js";

afterEach(() => {
  delete (globalThis as { indexedDB?: unknown }).indexedDB;
});

it("renders the server snapshots without touching IndexedDB or the store", () => {
  const touched: string[] = [];
  Object.defineProperty(globalThis, "indexedDB", {
    configurable: true,
    get() {
      touched.push("indexedDB");
      return undefined;
    },
  });
  // A store that records every call: the provider must not start the client.
  const store = new Proxy({} as LocalStore, {
    get(_, name) {
      touched.push(`store.${String(name)}`);
      return () => Promise.reject(new Error("not on the server"));
    },
  });
  const client = new SyncClient<Mutations, Entities>({ store, webSocket: null });

  function Page(): ReactNode {
    const open = useQuery((c: SyncClient<Mutations, Entities>) => c.query("todo").where("completed", "=", false).orderBy("title").limit(50), []);
    const todo = useEntity("todo", "a");
    const mutate = useMutate<Mutations>();
    const { status, online, syncing, pending } = useSyncStatus();
    return (
      <p>
        {`${open.length} open, ${todo === undefined ? "no todo" : "a todo"}, ${typeof mutate}, ${status} ${online} ${syncing} ${pending}`}
      </p>
    );
  }
  const html = renderToString(
    <SyncProvider client={client}>
      <Page />
    </SyncProvider>,
  );
  expect(html).toBe("<p>0 open, no todo, function, offline false false 0</p>");
  expect(touched).toEqual([]);
});

it("says what is wrong when a hook has no provider above it", () => {
  function Orphan(): ReactNode {
    useSyncStatus();
    return null;
  }
  expect(() => renderToString(<Orphan />)).toThrow(/no <SyncProvider/);
});
