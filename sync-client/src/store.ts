import type { Change, SnapshotData } from "./protocol.js";

/** A mutation waiting in the local queue, numbered with the client's next `client_seq`. */
export interface PendingMutation {
  seq: number;
  name: string;
  args: unknown;
  scope: string;
}

/** One entity of a scope, as the local store keeps it. */
export interface StoredEntity {
  scope: string;
  entity: string;
  id: string;
  data: unknown;
}

/** Who this client is to the server, and the `client_seq` its next mutation gets. */
export interface ClientMeta {
  clientId: string;
  nextSeq: number;
}

/**
 * Where a client keeps its state between runs: entities per scope, each scope's cursor, the
 * queue of mutations not yet confirmed, the client id and the next `client_seq`.
 *
 * Every method that writes is atomic: it is applied whole or not at all.
 */
export interface LocalStore {
  /** The client's id and next sequence number; creates them with `newId` on first use. */
  meta(newId: () => string): Promise<ClientMeta>;
  /** Numbers a mutation with the next `client_seq` and appends it to the queue, durably. */
  enqueue(mutation: Omit<PendingMutation, "seq">): Promise<PendingMutation>;
  /** The queue, in `client_seq` order. */
  pending(): Promise<PendingMutation[]>;
  /** Drops the given mutations from the queue. */
  remove(seqs: readonly number[]): Promise<void>;
  /** The scope's pull cursor; 0 where it never synced. */
  cursor(scope: string): Promise<number>;
  /** Every entity of the scope. */
  load(scope: string): Promise<StoredEntity[]>;
  /** Applies a page of the scope's changes, in order, and stores the cursor to pull from next. */
  applyChanges(scope: string, changes: readonly Change[], cursor: number): Promise<void>;
  /** Replaces the scope's entities with a snapshot's, and its cursor with the snapshot's. */
  replaceScope(scope: string, data: SnapshotData, cursor: number): Promise<void>;
  close(): void;
}

/**
 * A store in memory, for tests and for programs without IndexedDB. Pass the same instance to a
 * new client to simulate a reload.
 */
export class MemoryStore implements LocalStore {
  #meta: ClientMeta | undefined;
  #queue: PendingMutation[] = [];
  #cursors = new Map<string, number>();
  #entities = new Map<string, Map<string, StoredEntity>>();

  async meta(newId: () => string): Promise<ClientMeta> {
    this.#meta ??= { clientId: newId(), nextSeq: 1 };
    return { ...this.#meta };
  }

  async enqueue(mutation: Omit<PendingMutation, "seq">): Promise<PendingMutation> {
    if (!this.#meta) throw new Error("MemoryStore.enqueue before meta()");
    const pending = { ...mutation, args: structuredClone(mutation.args), seq: this.#meta.nextSeq };
    this.#meta.nextSeq += 1;
    this.#queue.push(pending);
    return { ...pending };
  }

  async pending(): Promise<PendingMutation[]> {
    return this.#queue.map((m) => ({ ...m }));
  }

  async remove(seqs: readonly number[]): Promise<void> {
    const gone = new Set(seqs);
    this.#queue = this.#queue.filter((m) => !gone.has(m.seq));
  }

  async cursor(scope: string): Promise<number> {
    return this.#cursors.get(scope) ?? 0;
  }

  async load(scope: string): Promise<StoredEntity[]> {
    return [...(this.#entities.get(scope)?.values() ?? [])].map((e) => ({ ...e }));
  }

  async applyChanges(scope: string, changes: readonly Change[], cursor: number): Promise<void> {
    let entities = this.#entities.get(scope);
    if (!entities) this.#entities.set(scope, (entities = new Map()));
    for (const change of changes) {
      const key = entityKey(change.entity, change.id);
      if (change.op === "delete") entities.delete(key);
      else entities.set(key, { scope, entity: change.entity, id: change.id, data: change.data });
    }
    this.#cursors.set(scope, cursor);
  }

  async replaceScope(scope: string, data: SnapshotData, cursor: number): Promise<void> {
    const entities = new Map<string, StoredEntity>();
    for (const [entity, rows] of Object.entries(data)) {
      for (const [id, value] of Object.entries(rows)) {
        entities.set(entityKey(entity, id), { scope, entity, id, data: value });
      }
    }
    this.#entities.set(scope, entities);
    this.#cursors.set(scope, cursor);
  }

  close(): void {}
}

function entityKey(entity: string, id: string): string {
  return `${entity}\u0000${id}`;
}
