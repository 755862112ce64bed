import type { Change, SnapshotData } from "./protocol.js";
import type { ClientMeta, LocalStore, PendingMutation, StoredEntity } from "./store.js";

const VERSION = 1;
const META = "meta";
const QUEUE = "queue";
const ENTITIES = "entities";
const CLIENT_KEY = "client";
const cursorKey = (scope: string): string => `cursor:${scope}`;
/** Every key of a scope in `entities`: arrays sort after strings, so `[scope, []]` ends the range. */
const scopeRange = (scope: string): IDBKeyRange => IDBKeyRange.bound([scope], [scope, []]);

/**
 * The browser's store: one IndexedDB database per client name, with the object stores `meta`
 * (client id, next `client_seq`, cursors), `queue` (pending mutations by `seq`) and `entities`
 * (keyed `[scope, entity, id]`). Each write is one IndexedDB transaction.
 */
export class IndexedDbStore implements LocalStore {
  readonly #db: IDBDatabase;

  private constructor(db: IDBDatabase) {
    this.#db = db;
  }

  /** Opens (creating if needed) the database `name`. */
  static async open(name = "sync-client", factory: IDBFactory = globalThis.indexedDB): Promise<IndexedDbStore> {
    if (!factory) throw new Error("IndexedDB is not available here; use MemoryStore");
    const request = factory.open(name, VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(META)) db.createObjectStore(META);
      if (!db.objectStoreNames.contains(QUEUE)) db.createObjectStore(QUEUE, { keyPath: "seq" });
      if (!db.objectStoreNames.contains(ENTITIES)) {
        db.createObjectStore(ENTITIES, { keyPath: ["scope", "entity", "id"] });
      }
    };
    const db = await requested(request);
    // Another tab upgrading the schema: let it, this connection is closed.
    db.onversionchange = () => db.close();
    return new IndexedDbStore(db);
  }

  /** Deletes the database `name`. */
  static async destroy(name = "sync-client", factory: IDBFactory = globalThis.indexedDB): Promise<void> {
    await requested(factory.deleteDatabase(name));
  }

  async meta(newId: () => string): Promise<ClientMeta> {
    const tx = this.#db.transaction(META, "readwrite");
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
    const tx = this.#db.transaction([META, QUEUE], "readwrite");
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

  async pending(): Promise<PendingMutation[]> {
    const tx = this.#db.transaction(QUEUE, "readonly");
    return requested(tx.objectStore(QUEUE).getAll() as IDBRequest<PendingMutation[]>);
  }

  async remove(seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    const tx = this.#db.transaction(QUEUE, "readwrite");
    const queue = tx.objectStore(QUEUE);
    for (const seq of seqs) queue.delete(seq);
    await completed(tx);
  }

  async cursor(scope: string): Promise<number> {
    const tx = this.#db.transaction(META, "readonly");
    const cursor = await requested(tx.objectStore(META).get(cursorKey(scope)) as IDBRequest<number | undefined>);
    return cursor ?? 0;
  }

  async load(scope: string): Promise<StoredEntity[]> {
    const tx = this.#db.transaction(ENTITIES, "readonly");
    return requested(tx.objectStore(ENTITIES).getAll(scopeRange(scope)) as IDBRequest<StoredEntity[]>);
  }

  async applyChanges(scope: string, changes: readonly Change[], cursor: number): Promise<void> {
    const tx = this.#db.transaction([META, ENTITIES], "readwrite");
    const entities = tx.objectStore(ENTITIES);
    for (const change of changes) {
      if (change.op === "delete") entities.delete([scope, change.entity, change.id]);
      else entities.put({ scope, entity: change.entity, id: change.id, data: change.data });
    }
    tx.objectStore(META).put(cursor, cursorKey(scope));
    await completed(tx);
  }

  async replaceScope(scope: string, data: SnapshotData, cursor: number): Promise<void> {
    const tx = this.#db.transaction([META, ENTITIES], "readwrite");
    const entities = tx.objectStore(ENTITIES);
    entities.delete(scopeRange(scope));
    for (const [entity, rows] of Object.entries(data)) {
      for (const [id, value] of Object.entries(rows)) {
        entities.put({ scope, entity, id, data: value });
      }
    }
    tx.objectStore(META).put(cursor, cursorKey(scope));
    await completed(tx);
  }

  close(): void {
    this.#db.close();
  }
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
