// The todo web app: a list kept in IndexedDB by sync-client, usable offline.
import { IndexedDbStore, SyncClient, type LocalMutators, type SyncStatus } from "sync-client";
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

async function main(): Promise<void> {
  const store = await IndexedDbStore.open("todo");
  const client = new SyncClient<Mutations, Entities>({ store, mutators });
  // For the end-to-end tests and the curious.
  (globalThis as { todo?: unknown }).todo = client;

  const list = element<HTMLUListElement>("todos");
  const status = element<HTMLSpanElement>("status");
  const pending = element<HTMLSpanElement>("pending");
  const notice = element<HTMLParagraphElement>("notice");
  const form = element<HTMLFormElement>("new");
  const title = element<HTMLInputElement>("title");
  let editing: string | undefined;

  const showStatus = (value: SyncStatus): void => {
    status.dataset["status"] = value;
    status.textContent = value;
  };
  client.on("status", showStatus);
  client.on("mutationFailed", (failed) => {
    notice.textContent = `The server refused ${failed.name}: ${failed.error}`;
  });

  const render = (todos: Todo[]): void => {
    pending.textContent = String(client.pendingCount);
    list.replaceChildren(...todos.map(row));
  };

  const row = (todo: Todo): HTMLLIElement => {
    const li = document.createElement("li");
    li.dataset["id"] = todo.id;
    li.className = todo.completed ? "done" : "";
    const check = document.createElement("input");
    check.type = "checkbox";
    check.className = "toggle";
    check.checked = todo.completed;
    check.addEventListener("change", () => void client.mutate("todo/toggle", { id: todo.id }));
    li.append(check);
    if (editing === todo.id) {
      const input = document.createElement("input");
      input.className = "edit";
      input.value = todo.title;
      const commit = (): void => {
        editing = undefined;
        const value = input.value.trim();
        if (value && value !== todo.title) void client.mutate("todo/rename", { id: todo.id, title: value });
        else render(client.view().list("todo"));
      };
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") commit();
        if (event.key === "Escape") {
          editing = undefined;
          render(client.view().list("todo"));
        }
      });
      input.addEventListener("blur", () => editing === todo.id && commit());
      li.append(input);
      queueMicrotask(() => input.focus());
    } else {
      const text = document.createElement("span");
      text.className = "title";
      text.textContent = todo.title;
      text.title = "double-click to rename";
      text.addEventListener("dblclick", () => {
        editing = todo.id;
        render(client.view().list("todo"));
      });
      li.append(text);
    }
    const remove = document.createElement("button");
    remove.className = "delete";
    remove.textContent = "×";
    remove.title = "delete";
    remove.addEventListener("click", () => void client.mutate("todo/delete", { id: todo.id }));
    li.append(remove);
    return li;
  };

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
  document.body.dataset["ready"] = "true";
}

main().catch((error: unknown) => {
  const notice = document.getElementById("notice");
  if (notice) notice.textContent = `The app failed to start: ${String(error)}`;
  console.error(error);
});
