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

/** Where a scope's local copy stands in the server's log. */
export interface ScopeState {
  /** The cursor to pull from; 0 where the scope never synced. */
  cursor: number;
  /** The log the cursor belongs to (PROTOCOL 1.1; absent with a version-1 server). */
  logId?: string | undefined;
  /**
   * The highest `client_seq` of this client the server had processed in the state the copy is
   * at (1.1): those mutations are in the copy and must not be replayed over it. 0 where unknown.
   */
  clientSeq: number;
}

/** A scope's entities and state, read together. */
export interface LoadedScope {
  state: ScopeState;
  rows: StoredEntity[];
}

export const EMPTY_SCOPE: ScopeState = { cursor: 0, clientSeq: 0 };

/**
 * Where a client keeps its state between runs: entities per scope, each scope's state, the queue of
 * mutations not yet confirmed, the client id and the next `client_seq`.
 *
 * Every method that writes is atomic: it is applied whole or not at all. Several clients (tabs) may
 * share one store: `enqueue` numbers and appends in one step, and `applyChanges` refuses a page
 * pulled from a cursor the scope has moved away from.
 */
export interface LocalStore {
  /** Identifies the database among an origin's tabs: clients of stores of one name coordinate. */
  readonly name?: string | undefined;
  /** Opens the store again after `close` (for a client started again). */
  open?(): Promise<void>;
  /** The client's id and next sequence number; creates them with `newId` on first use. */
  meta(newId: () => string): Promise<ClientMeta>;
  /** Numbers a mutation with the next `client_seq` and appends it to the queue, durably. */
  enqueue(mutation: Omit<PendingMutation, "seq">): Promise<PendingMutation>;
  /** The queue's first `limit` mutations (default: all), in `client_seq` order. */
  pending(limit?: number): Promise<PendingMutation[]>;
  /** Drops the given mutations from the queue. */
  remove(seqs: readonly number[]): Promise<void>;
  /** Every entity of the scope, with its state. */
  load(scope: string): Promise<LoadedScope>;
  /**
   * Applies a page of the scope's changes, pulled from cursor `from`, and stores the scope's new
   * state; does nothing and answers false where the scope's cursor is no longer `from`.
   */
  applyChanges(scope: string, from: number, changes: readonly Change[], state: ScopeState): Promise<boolean>;
  /** Replaces the scope's entities and state with a snapshot's. */
  replaceScope(scope: string, data: SnapshotData, state: ScopeState): Promise<void>;
  /** Deletes the scope's entities and state (the client stops syncing it); the queue stays. */
  dropScope(scope: string): Promise<void>;
  /** Deletes everything: entities, states, queue and client id (a user logs out). */
  clear(): Promise<void>;
  close(): void;
  /** Set by the client: the store closed itself, e.g. because another tab upgrades the database. */
  onclose?: ((reason: string) => void) | undefined;
}

/**
 * A store in memory, for tests and for programs without IndexedDB. Pass the same instance to a
 * new client to simulate a reload; give it a name to let the clients sharing it coordinate like tabs.
 */
export class MemoryStore implements LocalStore {
  readonly name: string | undefined;
  onclose: ((reason: string) => void) | undefined;
  #meta: ClientMeta | undefined;
  #queue: PendingMutation[] = [];
  #states = new Map<string, ScopeState>();
  #entities = new Map<string, Map<string, StoredEntity>>();

  constructor(name?: string) {
    this.name = name;
  }

  async meta(newId: () => string): Promise<ClientMeta> {
    this.#meta ??= { clientId: newId(), nextSeq: 1 };
    return { ...this.#meta };
  }

  async enqueue(mutation: Omit<PendingMutation, "seq">): Promise<PendingMutation> {
    if (!this.#meta) throw new Error("MemoryStore.enqueue before meta()");
    const pending = { ...mutation, args: structuredClone(mutation.args), seq: this.#meta.nextSeq };
    this.#meta.nextSeq += 1;
    this.#queue.push(pending);
    return structuredClone(pending);
  }

  async pending(limit?: number): Promise<PendingMutation[]> {
    return structuredClone(this.#queue.slice(0, limit));
  }

  async remove(seqs: readonly number[]): Promise<void> {
    const gone = new Set(seqs);
    this.#queue = this.#queue.filter((m) => !gone.has(m.seq));
  }

  async load(scope: string): Promise<LoadedScope> {
    const rows = [...(this.#entities.get(scope)?.values() ?? [])];
    return structuredClone({ state: this.#states.get(scope) ?? EMPTY_SCOPE, rows });
  }

  async applyChanges(scope: string, from: number, changes: readonly Change[], state: ScopeState): Promise<boolean> {
    if ((this.#states.get(scope)?.cursor ?? 0) !== from) return false;
    let entities = this.#entities.get(scope);
    if (!entities) this.#entities.set(scope, (entities = new Map()));
    for (const change of changes) {
      const key = entityKey(change.entity, change.id);
      if (change.op === "delete") entities.delete(key);
      else entities.set(key, structuredClone({ scope, entity: change.entity, id: change.id, data: change.data }));
    }
    this.#states.set(scope, { ...state });
    return true;
  }

  async replaceScope(scope: string, data: SnapshotData, state: ScopeState): Promise<void> {
    const entities = new Map<string, StoredEntity>();
    for (const [entity, rows] of Object.entries(data)) {
      for (const [id, value] of Object.entries(rows)) {
        entities.set(entityKey(entity, id), structuredClone({ scope, entity, id, data: value }));
      }
    }
    this.#entities.set(scope, entities);
    this.#states.set(scope, { ...state });
  }

  async dropScope(scope: string): Promise<void> {
    this.#entities.delete(scope);
    this.#states.delete(scope);
  }

  async clear(): Promise<void> {
    this.#meta = undefined;
    this.#queue = [];
    this.#states.clear();
    this.#entities.clear();
  }

  close(): void {}
}

function entityKey(entity: string, id: string): string {
  return `${entity}\u0000${id}`;
}
