// The todo web app, in React with the sync client's bindings: lists kept in IndexedDB by the sync
// client, usable offline and in several tabs.
//
// Against `todo --auth none` it is one open list (the `_default` scope). Against `--auth demo` (the
// default) it asks for a name, signs in at `POST /auth/demo`, and shows the user's own list
// (`user:NAME`) and the shared lists they belong to (`list:ID`), which their own scope names.
import { IndexedDbStore, SyncClient, type LocalMutators } from "@syncengine/client";
import { SyncProvider, useMutate, useQuery, useSyncClient, useSyncStatus } from "@syncengine/client/react";
import { memo, useCallback, useEffect, useLayoutEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";
import type { Entities, Membership, Mutations, Todo } from "./sync.gen";

declare module "@syncengine/client/react" {
  interface Register {
    mutations: Mutations;
    entities: Entities;
  }
}

type Client = SyncClient<Mutations, Entities>;
type Mode = "none" | "demo";
const MODE_KEY = "todo.auth";
const USER_KEY = "todo.user";
const TOKEN_KEY = "todo.token";

/** Ids sort by creation time: a timestamp, then randomness. */
function newId(): string {
  return `${Date.now().toString(36).padStart(9, "0")}-${crypto.randomUUID()}`;
}

/** Optimistic versions of the server's mutations (examples/todo/src/lib.rs). */
function mutators(user: string | undefined): LocalMutators<Mutations, Entities> {
  return {
    "todo/create": (tx, { id, title }) => {
      if (id) tx.put("todo", id, { id, title, completed: false, ...(user ? { created_by: user } : {}) });
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
    "list/share": (tx, { name }) => tx.put("member", name, { id: name }),
    "list/unshare": (tx, { name }) => tx.delete("member", name),
  };
}

/** How the server authenticates: asked once online, remembered for an offline start. */
async function authMode(): Promise<Mode> {
  try {
    const response = await fetch("/auth");
    const { mode } = (await response.json()) as { mode?: string };
    const known: Mode = mode === "demo" ? "demo" : "none";
    localStorage.setItem(MODE_KEY, known);
    return known;
  } catch {
    return localStorage.getItem(MODE_KEY) === "demo" ? "demo" : "none";
  }
}

/** A demo token for `name`, from the server. */
async function signIn(name: string): Promise<string> {
  const response = await fetch("/auth/demo", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  const body = (await response.json()) as { token?: string; error?: string };
  if (!response.ok || !body.token) throw new Error(body.error ?? `sign-in answered ${response.status}`);
  localStorage.setItem(TOKEN_KEY, body.token);
  return body.token;
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

function Header(): ReactNode {
  const { status } = useSyncStatus();
  return (
    <header>
      <h1>todo</h1>
      <span id="status" data-status={status}>
        {status}
      </span>
    </header>
  );
}

/** The sign-in form, before there is a client (the database is the user's). */
function SignIn({ signedIn }: { signedIn: (name: string) => void }): ReactNode {
  const [notice, setNotice] = useState("");
  const submit = (event: FormEvent<HTMLFormElement>): void => {
    event.preventDefault();
    const name = String(new FormData(event.currentTarget).get("name") ?? "").trim();
    signIn(name)
      .then(() => {
        localStorage.setItem(USER_KEY, name);
        signedIn(name);
      })
      .catch((error: unknown) => setNotice(`Cannot sign in: ${message(error)}`));
  };
  return (
    <>
      <header>
        <h1>todo</h1>
        <span id="status" data-status="offline">
          signed out
        </span>
      </header>
      <section id="account">
        <form id="signin" onSubmit={submit}>
          <label htmlFor="name">Your name</label>
          <input id="name" name="name" pattern="[a-z0-9_\-]{1,32}" title="1 to 32 of a-z, 0-9, _ and -" autoComplete="username" required autoFocus />
          <button type="submit">Sign in</button>
        </form>
      </section>
      <p id="notice" role="status">
        {notice}
      </p>
    </>
  );
}

type Filter = "all" | "active" | "completed";
type Sort = "created" | "title";
type Mutate = <N extends keyof Mutations & string>(name: N, args: Mutations[N]["args"]) => void;

/**
 * The signed-in or open app. `own` is the user's own scope (`_default` when open); `current` the
 * scope whose todos show.
 */
function App({ user, own }: { user: string | undefined; own: string }): ReactNode {
  const client = useSyncClient();
  const mutateIn = useMutate();
  const [current, setCurrent] = useState(own);
  const [notice, setNotice] = useState("");
  const [started, setStarted] = useState(false);

  // Starts the client in the browser, once the first render is on screen; marks the page ready
  // (for the end-to-end tests) in the render that shows the loaded data.
  useEffect(() => {
    client.start().then(
      () => setStarted(true),
      (error: unknown) => setNotice(`The app failed to start: ${message(error)}`),
    );
  }, [client]);
  useEffect(() => {
    if (started) document.body.dataset["ready"] = "true";
  }, [started]);

  useEffect(() => {
    const offFailed = client.on("mutationFailed", (failed) => setNotice(`The server refused ${failed.name}: ${failed.error}`));
    const offClosed = client.on("closed", ({ reason }) => {
      if (reason !== "closed") setNotice(`The app stopped syncing (${reason}): reload the page.`);
    });
    return () => {
      offFailed();
      offClosed();
    };
  }, [client]);

  const mutate: Mutate = useCallback(
    (name, args) => {
      setNotice("");
      void mutateIn(name, args, { scope: current });
    },
    [mutateIn, current],
  );

  return (
    <>
      <Header />
      {user && <Lists user={user} own={own} current={current} select={setCurrent} notify={setNotice} />}
      <main id="app">
        <NewTodo mutate={mutate} />
        <p id="notice" role="status">
          {notice}
        </p>
        <Todos scope={current} showAuthor={current !== own} mutate={mutate} />
        <Pending />
      </main>
    </>
  );
}

function NewTodo({ mutate }: { mutate: Mutate }): ReactNode {
  const [title, setTitle] = useState("");
  const submit = (event: FormEvent): void => {
    event.preventDefault();
    const value = title.trim();
    if (!value) return;
    setTitle("");
    mutate("todo/create", { id: newId(), title: value });
  };
  return (
    <form id="new" onSubmit={submit}>
      <label htmlFor="title" className="visually-hidden">
        New todo
      </label>
      <input id="title" name="title" placeholder="What needs doing?" autoComplete="off" required value={title} onChange={(e) => setTitle(e.target.value)} />
      <button type="submit">Add</button>
    </form>
  );
}

function Pending(): ReactNode {
  const { pending } = useSyncStatus();
  return (
    <p>
      <small>
        <span id="pending">{pending}</span> change(s) waiting to sync
      </small>
    </p>
  );
}

const FILTERS: readonly Filter[] = ["all", "active", "completed"];

/** One scope's todos: the filter and sort are live queries, the count another over the scope. */
function Todos({ scope, showAuthor, mutate }: { scope: string; showAuthor: boolean; mutate: Mutate }): ReactNode {
  const [filter, setFilter] = useState<Filter>("all");
  const [sort, setSort] = useState<Sort>("created");
  const all = useQuery((c) => c.query("todo", { scopes: [scope] }), [scope]);
  const open = useQuery((c) => c.query("todo", { scopes: [scope] }).where("completed", "=", false), [scope]);
  const shown = useQuery(
    (c) => {
      let query = c.query("todo", { scopes: [scope] });
      if (filter !== "all") query = query.where("completed", "=", filter === "completed");
      // Ids sort by creation time (newId), and a query without an order is in id order.
      return sort === "title" ? query.orderBy("title") : query;
    },
    [scope, filter, sort],
  );
  const clear = (): void => {
    for (const todo of all) if (todo.completed) mutate("todo/delete", { id: todo.id });
  };
  return (
    <>
      <div id="view">
        <span role="group" aria-label="Show" id="filters">
          {FILTERS.map((name) => (
            <button key={name} type="button" data-filter={name} aria-pressed={filter === name} onClick={() => setFilter(name)}>
              {name}
            </button>
          ))}
        </span>
        <label>
          Sort by{" "}
          <select id="sort" value={sort} onChange={(e) => setSort(e.target.value === "title" ? "title" : "created")}>
            <option value="created">creation</option>
            <option value="title">title</option>
          </select>
        </label>
      </div>
      <p id="empty" hidden={all.length > 0}>
        Nothing to do yet: add a todo above.
      </p>
      <ul id="todos" aria-label="Todos">
        {shown.map((todo) => (
          <Row key={todo.id} todo={todo} showAuthor={showAuthor} mutate={mutate} />
        ))}
      </ul>
      <footer>
        <span id="count" aria-live="polite">
          {all.length === 0 ? "" : `${open.length} of ${all.length} left`}
        </span>
        <button id="clear-completed" type="button" hidden={open.length === all.length} onClick={clear}>
          Clear completed
        </button>
      </footer>
    </>
  );
}

/**
 * One todo. Memoized on the todo object, which the query hands out anew only when it changed: one
 * changed todo renders one row. Its rename box is its own state, so re-renders keep what is typed.
 */
const Row = memo(function Row({ todo, showAuthor, mutate }: { todo: Readonly<Todo>; showAuthor: boolean; mutate: Mutate }): ReactNode {
  const [editing, setEditing] = useState(false);
  /** Whether the box is open, read by handlers that run after it closed (a blur as it goes). */
  const open = useRef(false);
  /** Whether closing the box returns the focus to the rename button (the keyboard path). */
  const refocus = useRef(false);
  const renameButton = useRef<HTMLButtonElement>(null);
  useLayoutEffect(() => {
    if (editing || !refocus.current) return;
    refocus.current = false;
    renameButton.current?.focus();
  }, [editing]);
  const edit = (): void => {
    open.current = true;
    setEditing(true);
  };
  const finish = (save: boolean, value: string, byKey: boolean): void => {
    if (!open.current) return;
    open.current = false;
    refocus.current = byKey;
    setEditing(false);
    const title = value.trim();
    if (save && title && title !== todo.title) mutate("todo/rename", { id: todo.id, title });
  };
  return (
    <li data-id={todo.id} className={todo.completed ? "done" : undefined}>
      <input type="checkbox" className="toggle" checked={todo.completed} aria-label={`"${todo.title}" done`} onChange={() => mutate("todo/toggle", { id: todo.id })} />
      {editing ? (
        <input
          className="edit"
          defaultValue={todo.title}
          aria-label={`New title for "${todo.title}"`}
          ref={(input) => {
            if (input && document.activeElement !== input) {
              input.focus();
              input.select();
            }
          }}
          onKeyDown={(event) => {
            if (event.key !== "Enter" && event.key !== "Escape") return;
            // Else the key's default action lands on the rename button, which gets the focus back.
            event.preventDefault();
            finish(event.key === "Enter", event.currentTarget.value, true);
          }}
          onBlur={(event) => finish(true, event.currentTarget.value, false)}
        />
      ) : (
        <span className="title" title="double-click to rename" onDoubleClick={edit}>
          {todo.title}
        </span>
      )}
      <span className="by">{todo.created_by && showAuthor ? `by ${todo.created_by}` : ""}</span>
      <button type="button" className="rename" ref={renameButton} aria-label={`Rename "${todo.title}"`} onClick={edit}>
        ✎
      </button>
      <button type="button" className="delete" aria-label={`Delete "${todo.title}"`} onClick={() => mutate("todo/delete", { id: todo.id })}>
        ×
      </button>
    </li>
  );
});

/**
 * The signed-in part: who is signed in, the lists (the user's own, then the shared ones their scope
 * names), creating and sharing lists.
 */
function Lists(props: { user: string; own: string; current: string; select: (scope: string) => void; notify: (text: string) => void }): ReactNode {
  const { user, own, current, select, notify } = props;
  const client = useSyncClient();
  const mutate = useMutate();
  const shared = useQuery((c) => c.query("membership", { scopes: [own] }), [own]);
  const synced = useRef(new Set<string>());

  // The user's scope names the shared lists they belong to: sync exactly those.
  useEffect(() => {
    const now = new Set(shared.map((m) => m.id));
    for (const scope of now) if (!synced.current.has(scope)) void client.addScope(scope);
    for (const scope of synced.current) if (!now.has(scope)) void client.removeScope(scope);
    synced.current = now;
    if (current !== own && !now.has(current)) select(own);
  }, [client, shared, current, own, select]);

  useEffect(
    () =>
      client.on("forbidden", ({ scope }) => {
        if (scope === own) return;
        notify("You no longer have access to that list.");
        void client.removeScope(scope);
        if (current === scope) select(own);
      }),
    [client, own, current, select, notify],
  );

  const [listTitle, setListTitle] = useState("");
  const createList = (event: FormEvent): void => {
    event.preventDefault();
    const title = listTitle.trim();
    if (!title) return;
    setListTitle("");
    void mutate("list/create", { title }, { scope: `list:${newId()}` });
  };
  const signOut = (): void => {
    localStorage.removeItem(USER_KEY);
    localStorage.removeItem(TOKEN_KEY);
    void client.close().then(() => location.reload());
  };
  const membership = shared.find((m) => m.id === current);
  const choice = (scope: string, label: string): ReactNode => (
    <li key={scope}>
      <button type="button" data-scope={scope} aria-current={scope === current} onClick={() => select(scope)}>
        {label}
      </button>
    </li>
  );
  return (
    <>
      <section id="account">
        <p id="whoami">
          Signed in as <strong id="me">{user}</strong>{" "}
          <button id="signout" type="button" onClick={signOut}>
            Sign out
          </button>
        </p>
      </section>
      <nav id="lists" aria-label="Lists">
        <ul id="list-picker">{[choice(own, "My todos"), ...shared.map((m) => choice(m.id, m.title))]}</ul>
        <form id="new-list" onSubmit={createList}>
          <label htmlFor="list-title" className="visually-hidden">
            New shared list
          </label>
          <input id="list-title" placeholder="New shared list" autoComplete="off" required value={listTitle} onChange={(e) => setListTitle(e.target.value)} />
          <button type="submit">Create list</button>
        </form>
      </nav>
      {membership && <Sharing key={membership.id} user={user} membership={membership} />}
    </>
  );
}

/** Who a shared list is shared with; its owner may add and remove members. */
function Sharing({ user, membership }: { user: string; membership: Readonly<Membership> }): ReactNode {
  const mutate = useMutate();
  const members = useQuery((c) => c.query("member", { scopes: [membership.id] }), [membership.id]);
  const [name, setName] = useState("");
  const owner = membership.owner === user;
  const share = (event: FormEvent): void => {
    event.preventDefault();
    const value = name.trim();
    if (!value) return;
    setName("");
    void mutate("list/share", { name: value }, { scope: membership.id });
  };
  return (
    <section id="sharing">
      <p>
        Shared by <strong id="list-owner">{owner ? "you" : membership.owner}</strong> with:
      </p>
      <ul id="members" aria-label="Members">
        {members.map((member) => (
          <li key={member.id}>
            {member.id}
            {owner && member.id !== user && (
              <>
                {" "}
                <button
                  type="button"
                  className="unshare"
                  aria-label={`Stop sharing with ${member.id}`}
                  onClick={() => void mutate("list/unshare", { name: member.id }, { scope: membership.id })}
                >
                  remove
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      {owner && (
        <form id="share" onSubmit={share}>
          <label htmlFor="share-name" className="visually-hidden">
            Share with
          </label>
          <input id="share-name" placeholder="Share with (a name)" pattern="[a-z0-9_\-]{1,32}" autoComplete="off" required value={name} onChange={(e) => setName(e.target.value)} />
          <button type="submit">Share</button>
        </form>
      )}
    </section>
  );
}

/** Opens the user's database and renders the app over a client that syncs their scope. */
async function run(root: Root, user: string | undefined): Promise<void> {
  const own = user ? `user:${user}` : "_default";
  // One database per user: signing out and in as another never mixes their data.
  const store = await IndexedDbStore.open(user ? `todo:${user}` : "todo");
  const client: Client = new SyncClient<Mutations, Entities>({
    store,
    scopes: [own],
    mutators: mutators(user),
    ...(user
      ? {
          auth: async (reason: "initial" | "unauthorized") =>
            reason === "initial" ? (localStorage.getItem(TOKEN_KEY) ?? signIn(user)) : signIn(user),
        }
      : {}),
  });
  // For the end-to-end tests and the curious.
  (globalThis as { todo?: unknown }).todo = client;
  root.render(
    <SyncProvider client={client}>
      <App user={user} own={own} />
    </SyncProvider>,
  );
}

async function main(root: Root): Promise<void> {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch((error: unknown) => console.warn("no offline start:", error));
  }
  const mode = await authMode();
  const user = mode === "demo" ? localStorage.getItem(USER_KEY) : undefined;
  if (mode === "demo" && !user) {
    root.render(<SignIn signedIn={(name) => void run(root, name).catch((error: unknown) => failed(root, error))} />);
    return;
  }
  await run(root, user ?? undefined);
}

function failed(root: Root, error: unknown): void {
  console.error(error);
  root.render(
    <p id="notice" role="status">
      The app failed to start: {String(error)}
    </p>,
  );
}

const container = document.getElementById("root");
if (!container) throw new Error("#root is missing");
const root = createRoot(container);
main(root).catch((error: unknown) => failed(root, error));
