// The todo web app: a list kept in IndexedDB by the sync client, usable offline and in several tabs.
import { IndexedDbStore, SyncClient, type LocalMutators, type SyncStatus } from "@syncengine/client";
import type { Entities, Mutations, Todo } from "./sync.gen";

/** Optimistic versions of the server's mutations (examples/todo/src/lib.rs). */
const mutators: LocalMutators<Mutations, Entities> = {
  "todo/create": (tx, { id, title }) => {
    if (id) tx.put("todo", id, { id, title, completed: false });
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
};

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing`);
  return found as T;
}

/** Ids sort by creation time: a timestamp, then randomness. */
function newId(): string {
  return `${Date.now().toString(36).padStart(9, "0")}-${crypto.randomUUID()}`;
}

/** One todo's row, kept across renders so that what the user is doing in it survives them. */
interface Row {
  li: HTMLLIElement;
  check: HTMLInputElement;
  title: HTMLSpanElement;
  rename: HTMLButtonElement;
  remove: HTMLButtonElement;
  todo: Readonly<Todo>;
  /** The rename box, while the user edits the title. */
  edit?: HTMLInputElement;
}

async function main(): Promise<void> {
  const store = await IndexedDbStore.open("todo");
  const client = new SyncClient<Mutations, Entities>({ store, mutators });
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
      if (save && value && value !== row.todo.title) void client.mutate("todo/rename", { id: row.todo.id, title: value });
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
    const rename = document.createElement("button");
    rename.type = "button";
    rename.className = "rename";
    rename.textContent = "✎";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "×";
    li.append(check, text, rename, remove);
    const row: Row = { li, check, title: text, rename, remove, todo };
    check.addEventListener("change", () => void client.mutate("todo/toggle", { id: row.todo.id }));
    text.addEventListener("dblclick", () => startEditing(row));
    rename.addEventListener("click", () => startEditing(row));
    remove.addEventListener("click", () => void client.mutate("todo/delete", { id: row.todo.id }));
    return row;
  };

  const update = (row: Row, todo: Readonly<Todo>): void => {
    row.todo = todo;
    row.li.classList.toggle("done", todo.completed);
    row.check.checked = todo.completed;
    row.check.setAttribute("aria-label", `"${todo.title}" done`);
    row.title.textContent = todo.title;
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
    for (const todo of todos) if (todo.completed) void client.mutate("todo/delete", { id: todo.id });
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = title.value.trim();
    if (!value) return;
    title.value = "";
    notice.textContent = "";
    void client.mutate("todo/create", { id: newId(), title: value });
  });

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch((error: unknown) => console.warn("no offline start:", error));
  }

  client.subscribe((view) => view.list("todo"), render);
  await client.start();
  showStatus(client.status);
  showPending(client.pendingCount);
  document.body.dataset["ready"] = "true";
}

main().catch((error: unknown) => {
  const notice = document.getElementById("notice");
  if (notice) notice.textContent = `The app failed to start: ${String(error)}`;
  console.error(error);
});
