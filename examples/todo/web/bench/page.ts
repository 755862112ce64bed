// The benchmark's page code, bundled by initial-sync.mjs: an initial sync with sync-client into a
// fresh IndexedDB database, and the baseline, a bare IndexedDB bulk put of the same rows.
import { IndexedDbStore, SyncClient } from "@syncengine/client";

interface Row {
  scope: string;
  entity: string;
  id: string;
  data: unknown;
}

/** Syncs the default scope from nothing; returns the milliseconds and the rows stored. */
async function initialSync(name: string): Promise<{ ms: number; rows: number }> {
  const start = performance.now();
  const store = await IndexedDbStore.open(name);
  const client = new SyncClient({ store, webSocket: null });
  await client.start();
  await client.pull();
  const ms = performance.now() - start;
  await client.close();
  const check = await IndexedDbStore.open(name);
  const rows = (await check.load("_default")).rows.length;
  check.close();
  return { ms, rows };
}

let rows: Row[] = [];

/** Fetches the snapshot once, outside any timing, and keeps its rows for the baseline. */
async function loadRows(): Promise<number> {
  const response = await fetch("/_sync/snapshot", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  const { data } = (await response.json()) as { data: Record<string, Record<string, unknown>> };
  rows = [];
  for (const [entity, byId] of Object.entries(data)) {
    for (const [id, value] of Object.entries(byId)) rows.push({ scope: "_default", entity, id, data: value });
  }
  return rows.length;
}

/** The baseline: the same rows, the same object store layout, one transaction of puts. */
async function bulkPut(name: string): Promise<{ ms: number; rows: number }> {
  const start = performance.now();
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () =>
      request.result.createObjectStore("entities", { keyPath: ["scope", "entity", "id"] });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const tx = db.transaction("entities", "readwrite");
  const store = tx.objectStore("entities");
  for (const row of rows) store.put(row);
  await new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
  const ms = performance.now() - start;
  const count = await new Promise<number>((resolve) => {
    const request = db.transaction("entities").objectStore("entities").count();
    request.onsuccess = () => resolve(request.result);
  });
  db.close();
  return { ms, rows: count };
}

async function destroy(name: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = () => resolve();
    request.onerror = () => reject(request.error);
  });
}

Object.assign(globalThis, { bench: { initialSync, loadRows, bulkPut, destroy } });
