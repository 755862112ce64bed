import type { Change, SnapshotData } from "./protocol.js";
import { EMPTY_SCOPE, type ClientMeta, type LoadedScope, type LocalStore, type PendingMutation, type ScopeState, type StoredEntity } from "./store.js";

const VERSION = 1;
const META = "meta";
const QUEUE = "queue";
const ENTITIES = "entities";
const CLIENT_KEY = "client";
const stateKey = (scope: string): string => `scope:${scope}`;
/** Where version 0.1 of this client kept a scope's cursor (a bare number). */
const legacyCursorKey = (scope: string): string => `cursor:${scope}`;
/** Every key of a scope in `entities`: arrays sort after strings, so `[scope, []]` ends the range. */
const scopeRange = (scope: string): IDBKeyRange => IDBKeyRange.bound([scope], [scope, []]);

/**
 * The browser's store: one IndexedDB database per name, with the object stores `meta` (client id,
 * next `client_seq`, scope states), `queue` (pending mutations by `seq`) and `entities` (keyed
 * `[scope, entity, id]`). Each write is one IndexedDB transaction, so tabs can share the database.
 */
export class IndexedDbStore implements LocalStore {
  readonly name: string;
  onclose: ((reason: string) => void) | undefined;
  readonly #factory: IDBFactory;
  #db: IDBDatabase | undefined;

  private constructor(name: string, factory: IDBFactory, db: IDBDatabase) {
    this.name = name;
    this.#factory = factory;
    this.#watch(db);
  }

  /** Opens (creating if needed) the database `name`. */
  static async open(name = "sync-client", factory: IDBFactory = globalThis.indexedDB): Promise<IndexedDbStore> {
    if (!factory) throw new Error("IndexedDB is not available here; use MemoryStore");
    return new IndexedDbStore(name, factory, await openDatabase(name, factory));
  }

  /** Deletes the database `name`. */
  static async destroy(name = "sync-client", factory: IDBFactory = globalThis.indexedDB): Promise<void> {
    await requested(factory.deleteDatabase(name));
  }

  async open(): Promise<void> {
    if (!this.#db) this.#watch(await openDatabase(this.name, this.#factory));
  }

  #watch(db: IDBDatabase): void {
    this.#db = db;
    const lost = (reason: string): void => {
      db.close();
      if (this.#db !== db) return;
      this.#db = undefined;
      this.onclose?.(reason);
    };
    // Another tab upgrades or deletes the database: let it, and tell the client.
    db.onversionchange = () => lost("versionchange");
    db.onclose = () => lost("the browser closed the database");
  }

  #transaction(stores: string | string[], mode: IDBTransactionMode): IDBTransaction {
    if (!this.#db) throw new Error(`the IndexedDB database ${this.name} is closed`);
    return this.#db.transaction(stores, mode);
  }

  async meta(newId: () => string): Promise<ClientMeta> {
    const tx = this.#transaction(META, "readwrite");
    const store = tx.objectStore(META);
    let meta: ClientMeta | undefined;
    store.get(CLIENT_KEY).onsuccess = (event) => {
      meta = (event.target as IDBRequest<ClientMeta | undefined>).result;
      if (!meta) {
        meta = { clientId: newId(), nextSeq: 1 };
        store.put(meta, CLIENT_KEY);
      }
    };
    await completed(tx);
    if (!meta) throw new Error("the client's meta record could not be read");
    return meta;
  }

  async enqueue(mutation: Omit<PendingMutation, "seq">): Promise<PendingMutation> {
    const tx = this.#transaction([META, QUEUE], "readwrite");
    const meta = tx.objectStore(META);
    let pending: PendingMutation | undefined;
    meta.get(CLIENT_KEY).onsuccess = (event) => {
      const current = (event.target as IDBRequest<ClientMeta | undefined>).result;
      if (!current) {
        tx.abort();
        return;
      }
      pending = { seq: current.nextSeq, name: mutation.name, args: mutation.args, scope: mutation.scope };
      tx.objectStore(QUEUE).add(pending);
      meta.put({ ...current, nextSeq: current.nextSeq + 1 }, CLIENT_KEY);
    };
    await completed(tx);
    if (!pending) throw new Error("enqueue before meta()");
    return pending;
  }

  async pending(limit?: number): Promise<PendingMutation[]> {
    const tx = this.#transaction(QUEUE, "readonly");
    return requested(tx.objectStore(QUEUE).getAll(null, limit) as IDBRequest<PendingMutation[]>);
  }

  async remove(seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    const tx = this.#transaction(QUEUE, "readwrite");
    const queue = tx.objectStore(QUEUE);
    for (const seq of seqs) queue.delete(seq);
    await completed(tx);
  }

  async load(scope: string): Promise<LoadedScope> {
    const tx = this.#transaction([META, ENTITIES], "readonly");
    let state = EMPTY_SCOPE;
    readState(tx.objectStore(META), scope, (found) => (state = found));
    const [rows] = await Promise.all([
      requested(tx.objectStore(ENTITIES).getAll(scopeRange(scope)) as IDBRequest<StoredEntity[]>),
      completed(tx),
    ]);
    return { state, rows };
  }

  async applyChanges(scope: string, from: number, changes: readonly Change[], state: ScopeState): Promise<boolean> {
    const tx = this.#transaction([META, ENTITIES], "readwrite");
    const meta = tx.objectStore(META);
    let applied = false;
    readState(meta, scope, (current) => {
      // Another tab pulled this scope meanwhile: its page wins, ours is dropped.
      if (current.cursor !== from) return;
      const entities = tx.objectStore(ENTITIES);
      for (const change of changes) {
        if (change.op === "delete") entities.delete([scope, change.entity, change.id]);
        else entities.put({ scope, entity: change.entity, id: change.id, data: change.data });
      }
      meta.put(state, stateKey(scope));
      applied = true;
    });
    await completed(tx);
    return applied;
  }

  async replaceScope(scope: string, data: SnapshotData, state: ScopeState): Promise<void> {
    const tx = this.#transaction([META, ENTITIES], "readwrite");
    const entities = tx.objectStore(ENTITIES);
    entities.delete(scopeRange(scope));
    for (const [entity, rows] of Object.entries(data)) {
      for (const [id, value] of Object.entries(rows)) {
        entities.put({ scope, entity, id, data: value });
      }
    }
    tx.objectStore(META).put(state, stateKey(scope));
    await completed(tx);
  }

  async dropScope(scope: string): Promise<void> {
    const tx = this.#transaction([META, ENTITIES], "readwrite");
    tx.objectStore(ENTITIES).delete(scopeRange(scope));
    const meta = tx.objectStore(META);
    meta.delete(stateKey(scope));
    meta.delete(legacyCursorKey(scope));
    await completed(tx);
  }

  async clear(): Promise<void> {
    const tx = this.#transaction([META, QUEUE, ENTITIES], "readwrite");
    for (const name of [META, QUEUE, ENTITIES]) tx.objectStore(name).clear();
    await completed(tx);
  }

  close(): void {
    const db = this.#db;
    this.#db = undefined;
    db?.close();
  }
}

/** Reads a scope's state inside `tx`, falling back to the cursor version 0.1 stored. */
function readState(meta: IDBObjectStore, scope: string, found: (state: ScopeState) => void): void {
  meta.get(stateKey(scope)).onsuccess = (event) => {
    const state = (event.target as IDBRequest<ScopeState | undefined>).result;
    if (state) return found(state);
    meta.get(legacyCursorKey(scope)).onsuccess = (legacy) => {
      const cursor = (legacy.target as IDBRequest<number | undefined>).result;
      found(cursor === undefined ? EMPTY_SCOPE : { cursor, clientSeq: 0 });
    };
  };
}

async function openDatabase(name: string, factory: IDBFactory): Promise<IDBDatabase> {
  const request = factory.open(name, VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    if (!db.objectStoreNames.contains(META)) db.createObjectStore(META);
    if (!db.objectStoreNames.contains(QUEUE)) db.createObjectStore(QUEUE, { keyPath: "seq" });
    if (!db.objectStoreNames.contains(ENTITIES)) {
      db.createObjectStore(ENTITIES, { keyPath: ["scope", "entity", "id"] });
    }
  };
  return requested(request);
}

function requested<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

function completed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}
