// The todo web app: lists kept in IndexedDB by the sync client, usable offline and in several tabs.
//
// Against `todo --auth none` it is one open list (the `_default` scope). Against `--auth demo` (the
// default) it asks for a name, signs in at `POST /auth/demo`, and shows the user's own list
// (`user:NAME`) and the shared lists they belong to (`list:ID`), which their own scope names.
import { IndexedDbStore, SyncClient, type LocalMutators, type SyncStatus } from "@syncengine/client";
import type { Entities, Member, Membership, Mutations, Todo } from "./sync.gen";

type Mode = "none" | "demo";
const MODE_KEY = "todo.auth";
const USER_KEY = "todo.user";
const TOKEN_KEY = "todo.token";

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing`);
  return found as T;
}

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

/** The name the user signs in with: remembered, or asked for. */
function askName(): Promise<string> {
  const form = element<HTMLFormElement>("signin");
  const input = element<HTMLInputElement>("name");
  const notice = element<HTMLParagraphElement>("notice");
  element("account").hidden = false;
  element("app").hidden = true;
  input.focus();
  return new Promise((resolve) => {
    const submit = (event: Event): void => {
      event.preventDefault();
      const name = input.value.trim();
      signIn(name)
        .then(() => {
          form.removeEventListener("submit", submit);
          localStorage.setItem(USER_KEY, name);
          resolve(name);
        })
        .catch((error: unknown) => {
          notice.textContent = `Cannot sign in: ${error instanceof Error ? error.message : String(error)}`;
        });
    };
    form.addEventListener("submit", submit);
  });
}

/** One todo's row, kept across renders so that what the user is doing in it survives them. */
interface Row {
  li: HTMLLIElement;
  check: HTMLInputElement;
  title: HTMLSpanElement;
  by: HTMLSpanElement;
  rename: HTMLButtonElement;
  remove: HTMLButtonElement;
  todo: Readonly<Todo>;
  /** The rename box, while the user edits the title. */
  edit?: HTMLInputElement;
}

async function main(): Promise<void> {
  const mode = await authMode();
  const user = mode === "demo" ? (localStorage.getItem(USER_KEY) ?? (await askName())) : undefined;
  const own = user ? `user:${user}` : "_default";

  // One database per user: signing out and in as another never mixes their data.
  const store = await IndexedDbStore.open(user ? `todo:${user}` : "todo");
  const client = new SyncClient<Mutations, Entities>({
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

  const list = element<HTMLUListElement>("todos");
  const status = element<HTMLSpanElement>("status");
  const pending = element<HTMLSpanElement>("pending");
  const notice = element<HTMLParagraphElement>("notice");
  const empty = element<HTMLParagraphElement>("empty");
  const count = element<HTMLSpanElement>("count");
  const clear = element<HTMLButtonElement>("clear-completed");
  const form = element<HTMLFormElement>("new");
  const title = element<HTMLInputElement>("title");
  const rows = new Map<string, Row>();
  let todos: readonly Readonly<Todo>[] = [];
  /** The scope whose todos are shown. */
  let current = own;

  const showStatus = (value: SyncStatus): void => {
    status.dataset["status"] = value;
    status.textContent = value;
  };
  const showPending = (n: number): void => {
    pending.textContent = String(n);
  };
  client.on("status", showStatus);
  client.on("pending", showPending);
  client.on("mutationFailed", (failed) => {
    notice.textContent = `The server refused ${failed.name}: ${failed.error}`;
  });
  client.on("closed", ({ reason }) => {
    if (reason !== "closed") notice.textContent = `The app stopped syncing (${reason}): reload the page.`;
  });

  const mutate = <N extends keyof Mutations>(name: N, args: Mutations[N]["args"]): void => {
    notice.textContent = "";
    void client.mutate(name, args, { scope: current });
  };

  const startEditing = (row: Row): void => {
    if (row.edit) return;
    const input = document.createElement("input");
    input.className = "edit";
    input.value = row.todo.title;
    input.setAttribute("aria-label", `New title for "${row.todo.title}"`);
    const finish = (save: boolean): void => {
      if (row.edit !== input) return;
      row.edit = undefined;
      const value = input.value.trim();
      if (save && value && value !== row.todo.title) mutate("todo/rename", { id: row.todo.id, title: value });
      input.replaceWith(row.title);
      row.rename.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== "Escape") return;
      // Else the key's default action lands on the rename button, which gets the focus back.
      event.preventDefault();
      finish(event.key === "Enter");
    });
    input.addEventListener("blur", () => finish(true));
    row.edit = input;
    row.title.replaceWith(input);
    input.focus();
    input.select();
  };

  const newRow = (todo: Readonly<Todo>): Row => {
    const li = document.createElement("li");
    li.dataset["id"] = todo.id;
    const check = document.createElement("input");
    check.type = "checkbox";
    check.className = "toggle";
    const text = document.createElement("span");
    text.className = "title";
    text.title = "double-click to rename";
    const by = document.createElement("span");
    by.className = "by";
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "rename";
    rename.textContent = "✎";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "×";
    li.append(check, text, by, rename, remove);
    const row: Row = { li, check, title: text, by, rename, remove, todo };
    check.addEventListener("change", () => mutate("todo/toggle", { id: row.todo.id }));
    text.addEventListener("dblclick", () => startEditing(row));
    rename.addEventListener("click", () => startEditing(row));
    remove.addEventListener("click", () => mutate("todo/delete", { id: row.todo.id }));
    return row;
  };

  const update = (row: Row, todo: Readonly<Todo>): void => {
    row.todo = todo;
    row.li.classList.toggle("done", todo.completed);
    row.check.checked = todo.completed;
    row.check.setAttribute("aria-label", `"${todo.title}" done`);
    row.title.textContent = todo.title;
    row.by.textContent = todo.created_by && current !== own ? `by ${todo.created_by}` : "";
    row.rename.setAttribute("aria-label", `Rename "${todo.title}"`);
    row.remove.setAttribute("aria-label", `Delete "${todo.title}"`);
  };

  /** Keyed: rows are created, updated, moved and removed, never rebuilt, so a rename box survives. */
  const render = (next: readonly Readonly<Todo>[]): void => {
    todos = next;
    const seen = new Set<string>();
    let previous: Element | null = null;
    for (const todo of next) {
      seen.add(todo.id);
      let row = rows.get(todo.id);
      if (!row) rows.set(todo.id, (row = newRow(todo)));
      if (row.todo !== todo || !row.li.isConnected) update(row, todo);
      const expected: Element | null = previous ? previous.nextElementSibling : list.firstElementChild;
      if (expected !== row.li) list.insertBefore(row.li, expected);
      previous = row.li;
    }
    for (const [id, row] of rows) {
      if (seen.has(id)) continue;
      row.li.remove();
      rows.delete(id);
    }
    const open = next.filter((t) => !t.completed).length;
    empty.hidden = next.length > 0;
    count.textContent = next.length === 0 ? "" : `${open} of ${next.length} left`;
    clear.hidden = open === next.length;
  };

  clear.addEventListener("click", () => {
    for (const todo of todos) if (todo.completed) mutate("todo/delete", { id: todo.id });
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = title.value.trim();
    if (!value) return;
    title.value = "";
    mutate("todo/create", { id: newId(), title: value });
  });

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch((error: unknown) => console.warn("no offline start:", error));
  }

  let unsubscribe = client.subscribe((view) => view.list("todo"), render, { scope: current });
  if (user) lists(client, user, own, (scope) => {
    current = scope;
    unsubscribe();
    for (const row of rows.values()) row.li.remove();
    rows.clear();
    unsubscribe = client.subscribe((view) => view.list("todo"), render, { scope });
  });
  await client.start();
  showStatus(client.status);
  showPending(client.pendingCount);
  document.body.dataset["ready"] = "true";
}

/**
 * The signed-in part: who is signed in, the lists (the user's own, then the shared ones their scope
 * names), creating and sharing lists. `show` switches the todos shown to another scope.
 */
function lists(
  client: SyncClient<Mutations, Entities>,
  user: string,
  own: string,
  show: (scope: string) => void,
): void {
  const picker = element<HTMLUListElement>("list-picker");
  const sharing = element<HTMLElement>("sharing");
  const owner = element<HTMLElement>("list-owner");
  const members = element<HTMLUListElement>("members");
  const share = element<HTMLFormElement>("share");
  const shareName = element<HTMLInputElement>("share-name");
  const notice = element<HTMLParagraphElement>("notice");
  element("account").hidden = false;
  element("signin").hidden = true;
  element("whoami").hidden = false;
  element("me").textContent = user;
  element("lists").hidden = false;
  element("app").hidden = false;
  element<HTMLButtonElement>("signout").addEventListener("click", () => {
    localStorage.removeItem(USER_KEY);
    localStorage.removeItem(TOKEN_KEY);
    void client.close().then(() => location.reload());
  });

  let current = own;
  let shared: readonly Readonly<Membership>[] = [];
  let unsubscribeMembers: (() => void) | undefined;

  const select = (scope: string): void => {
    current = scope;
    show(scope);
    renderPicker();
    unsubscribeMembers?.();
    unsubscribeMembers = undefined;
    const membership = shared.find((m) => m.id === scope);
    sharing.hidden = !membership;
    if (!membership) return;
    owner.textContent = membership.owner === user ? "you" : membership.owner;
    share.hidden = membership.owner !== user;
    unsubscribeMembers = client.subscribe((view) => view.list("member"), (list) => renderMembers(list, membership), { scope });
  };

  const renderMembers = (list: readonly Readonly<Member>[], membership: Readonly<Membership>): void => {
    members.replaceChildren(
      ...list.map((member) => {
        const li = document.createElement("li");
        li.textContent = member.id;
        if (membership.owner === user && member.id !== user) {
          const remove = document.createElement("button");
          remove.type = "button";
          remove.className = "unshare";
          remove.textContent = "remove";
          remove.setAttribute("aria-label", `Stop sharing with ${member.id}`);
          remove.addEventListener("click", () => void client.mutate("list/unshare", { name: member.id }, { scope: membership.id }));
          li.append(" ", remove);
        }
        return li;
      }),
    );
  };

  const renderPicker = (): void => {
    const button = (scope: string, label: string): HTMLLIElement => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset["scope"] = scope;
      b.textContent = label;
      b.setAttribute("aria-current", String(scope === current));
      b.addEventListener("click", () => select(scope));
      li.append(b);
      return li;
    };
    picker.replaceChildren(button(own, "My todos"), ...shared.map((m) => button(m.id, m.title)));
  };

  // The user's scope names the shared lists they belong to: sync exactly those.
  client.subscribe(
    (view) => view.list("membership"),
    (next) => {
      const before = new Set(shared.map((m) => m.id));
      shared = next;
      const now = new Set(next.map((m) => m.id));
      for (const scope of now) if (!before.has(scope)) void client.addScope(scope);
      for (const scope of before) if (!now.has(scope)) void client.removeScope(scope);
      if (current !== own && !now.has(current)) select(own);
      else renderPicker();
    },
    { scope: own },
  );
  client.on("forbidden", ({ scope }) => {
    if (scope === own) return;
    notice.textContent = "You no longer have access to that list.";
    void client.removeScope(scope);
    if (current === scope) select(own);
  });

  element<HTMLFormElement>("new-list").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = element<HTMLInputElement>("list-title");
    const title = input.value.trim();
    if (!title) return;
    input.value = "";
    void client.mutate("list/create", { title }, { scope: `list:${newId()}` });
  });
  share.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = shareName.value.trim();
    if (!name) return;
    shareName.value = "";
    void client.mutate("list/share", { name }, { scope: current });
  });
  renderPicker();
}

main().catch((error: unknown) => {
  const notice = document.getElementById("notice");
  if (notice) notice.textContent = `The app failed to start: ${String(error)}`;
  console.error(error);
});
