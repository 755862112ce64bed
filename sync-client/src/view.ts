import type { Change } from "./protocol.js";
import { EMPTY_SCOPE, type PendingMutation, type ScopeState, type StoredEntity } from "./store.js";

/** A value the view hands out: frozen, so that no reader can change the local state through it. */
export type Frozen<T> = T extends object ? Readonly<T> : T;

/** The local data as the app sees it: the server's state with the pending mutations on top. */
export interface View<E = Record<string, unknown>> {
  get<K extends keyof E & string>(entity: K, id: string): Frozen<E[K]> | undefined;
  /** Every entity of a type, in id order: a new array, yours to sort. */
  list<K extends keyof E & string>(entity: K): Frozen<E[K]>[];
}

/** What an optimistic mutator may do to the local view. Values it reads are frozen: copy to edit. */
export interface LocalTx<E = Record<string, unknown>> extends View<E> {
  put<K extends keyof E & string>(entity: K, id: string, data: E[K]): void;
  delete<K extends keyof E & string>(entity: K, id: string): void;
}

export type Mutator = (tx: LocalTx<Record<string, unknown>>, args: unknown) => void;

/** Entity type → the ids that changed, or `ALL` where the whole type may have. */
export type Touched = Map<string, Set<string> | typeof ALL>;
export const ALL = "all";

const DELETED = Symbol("deleted");
type Overlay = Map<string, Map<string, unknown>>;

/** One entity type of the base: rows by id, and the list in id order, patched rather than re-sorted. */
class Table {
  readonly rows = new Map<string, unknown>();
  /** The ids of `#list`, in order. */
  #ids: string[] = [];
  #list: unknown[] | undefined;
  /** Ids set or deleted since `#list` was made. */
  readonly #dirty = new Set<string>();

  set(id: string, value: unknown): void {
    this.rows.set(id, value);
    if (this.#list) this.#dirty.add(id);
  }

  delete(id: string): void {
    if (this.rows.delete(id) && this.#list) this.#dirty.add(id);
  }

  /** The sorted ids of `list()`'s answer. */
  ids(): readonly string[] {
    this.list();
    return this.#ids;
  }

  list(): readonly unknown[] {
    if (this.#list && this.#dirty.size === 0) return this.#list;
    if (!this.#list || this.#dirty.size > 64) {
      this.#ids = [...this.rows.keys()].sort();
      this.#list = this.#ids.map((id) => this.rows.get(id));
    } else {
      // A copy: merged lists built on the previous one may still be cached.
      const list = this.#list.slice();
      for (const id of this.#dirty) patch(this.#ids, list, id, this.rows.has(id) ? this.rows.get(id) : DELETED);
      this.#list = list;
    }
    this.#dirty.clear();
    return this.#list;
  }
}

/** Sets (or, with DELETED, removes) `id` in the sorted `ids` and the list aligned with it. */
function patch(ids: string[], list: unknown[], id: string, value: unknown): void {
  let low = 0;
  let high = ids.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((ids[mid] as string) < id) low = mid + 1;
    else high = mid;
  }
  const present = ids[low] === id;
  if (value === DELETED) {
    if (present) {
      ids.splice(low, 1);
      list.splice(low, 1);
    }
  } else if (present) list[low] = value;
  else {
    ids.splice(low, 0, id);
    list.splice(low, 0, value);
  }
}

/**
 * One scope's local data: the base (the server's state at `state.cursor`) and the overlay, what the
 * pending mutations do on top of it when replayed by the local mutators. A mutation is replayed
 * while the server has not processed it (`state.clientSeq`) or its changes have not been pulled.
 * Changes accumulate in `touched` until `flush` hands them to the subscribers.
 */
export class ScopeView implements View<Record<string, unknown>> {
  state: ScopeState = EMPTY_SCOPE;
  #base = new Map<string, Table>();
  #overlay: Overlay = new Map();
  #overlayStale = false;
  #queued: PendingMutation[] = [];
  /** Confirmed mutations, replayed until the base holds their changes. */
  #settling: { mutation: PendingMutation; cursor: number; logId: string | undefined }[] = [];
  readonly #merged = new Map<string, Merged>();
  #touched: Touched = new Map();

  constructor(readonly mutators: Readonly<Record<string, Mutator | undefined>>) {}

  /** Replaces the base (a load or a snapshot). */
  reset(rows: readonly StoredEntity[], state: ScopeState): void {
    for (const entity of this.#base.keys()) this.#touchAll(entity);
    this.#base = new Map();
    for (const row of rows) {
      this.#table(row.entity).set(row.id, deepFreeze(row.data));
      this.#touchAll(row.entity);
    }
    this.#setState(state);
  }

  /**
   * Forgets the base and the confirmed mutations waiting for it: the scope is no longer synced, so
   * no pull will ever bring their changes. The queued mutations are still shown until answered.
   */
  drop(): void {
    this.#settling = [];
    this.reset([], EMPTY_SCOPE);
  }

  /** Applies a pulled page. */
  apply(changes: readonly Change[], state: ScopeState): void {
    for (const change of changes) {
      const table = this.#table(change.entity);
      if (change.op === "delete") table.delete(change.id);
      else table.set(change.id, deepFreeze(change.data));
      this.#touch(change.entity, change.id);
    }
    this.#setState(state);
  }

  /** The scope's pending mutations, in `client_seq` order. */
  setQueued(queued: readonly PendingMutation[]): void {
    this.#queued = [...queued];
    this.#overlayStale = true;
  }

  /** A mutation the server applied at `cursor` of log `logId`: shown until the base has it. */
  settle(mutation: PendingMutation, cursor: number, logId: string | undefined): void {
    this.#settling.push({ mutation, cursor, logId });
    this.#prune();
  }

  /** What changed since the last flush, or undefined. */
  flush(): Touched | undefined {
    this.#replay();
    if (this.#touched.size === 0) return undefined;
    const touched = this.#touched;
    this.#touched = new Map();
    return touched;
  }

  get(entity: string, id: string): unknown {
    this.#replay();
    const local = this.#overlay.get(entity);
    if (local?.has(id)) {
      const value = local.get(id);
      return value === DELETED ? undefined : value;
    }
    return this.#base.get(entity)?.rows.get(id);
  }

  /**
   * A new array on every call, which the caller may sort or change; its values are frozen. (A frozen
   * array would do too, but V8 runs slice, filter and every on one up to ten times slower.)
   */
  list(entity: string): unknown[] {
    return this.entries(entity).rows.slice();
  }

  /** The merged rows of a type in id order, with their ids: cached, not to be changed by the caller. */
  entries(entity: string): Merged {
    this.#replay();
    let merged = this.#merged.get(entity);
    if (!merged) {
      merged = merge(this.#base.get(entity), this.#overlay.get(entity));
      this.#merged.set(entity, merged);
    }
    return merged;
  }

  #setState(state: ScopeState): void {
    this.state = { ...state };
    this.#prune();
    this.#overlayStale = true;
  }

  #prune(): void {
    const { cursor, logId, clientSeq } = this.state;
    this.#settling = this.#settling.filter(
      (s) => s.mutation.seq > clientSeq && (s.cursor > cursor || (s.logId ?? logId) !== (logId ?? s.logId)),
    );
    this.#overlayStale = true;
  }

  #table(entity: string): Table {
    let table = this.#base.get(entity);
    if (!table) this.#base.set(entity, (table = new Table()));
    return table;
  }

  #touch(entity: string, id: string): void {
    this.#merged.delete(entity);
    let ids = this.#touched.get(entity);
    if (ids === ALL) return;
    if (!ids) this.#touched.set(entity, (ids = new Set()));
    ids.add(id);
  }

  #touchAll(entity: string): void {
    this.#merged.delete(entity);
    this.#touched.set(entity, ALL);
  }

  /** Recomputes the overlay where its inputs changed, keeping unchanged values' identity. */
  #replay(): void {
    if (!this.#overlayStale) return;
    this.#overlayStale = false;
    const { clientSeq } = this.state;
    const replay = [...this.#settling.map((s) => s.mutation), ...this.#queued.filter((m) => m.seq > clientSeq)];
    replay.sort((a, b) => a.seq - b.seq);
    const overlay: Overlay = new Map();
    const get = (entity: string, id: string): unknown => {
      const local = overlay.get(entity);
      if (local?.has(id)) {
        const value = local.get(id);
        return value === DELETED ? undefined : value;
      }
      return this.#base.get(entity)?.rows.get(id);
    };
    const write = (entity: string, id: string, value: unknown): void => {
      let local = overlay.get(entity);
      if (!local) overlay.set(entity, (local = new Map()));
      local.set(id, value);
    };
    const tx: LocalTx<Record<string, unknown>> = {
      get,
      list: (entity) => merge(this.#base.get(entity), overlay.get(entity)).rows.slice(),
      put: (entity, id, data) => write(entity, id, deepFreeze(structuredClone(data))),
      delete: (entity, id) => write(entity, id, DELETED),
    };
    for (const mutation of replay) {
      const mutator = this.mutators[mutation.name];
      if (!mutator) continue;
      try {
        mutator(tx, mutation.args);
      } catch (error) {
        // The server decides; a local mutator that throws only has no local effect.
        console.warn(`sync-client: local mutator ${mutation.name} threw (values are frozen: copy before editing)`, error);
      }
    }
    const old = this.#overlay;
    for (const entity of new Set([...old.keys(), ...overlay.keys()])) {
      const before = old.get(entity);
      const after = overlay.get(entity);
      for (const id of new Set([...(before?.keys() ?? []), ...(after?.keys() ?? [])])) {
        const was = before?.get(id);
        const is = after?.get(id);
        if (before?.has(id) && after?.has(id) && equal(was, is)) after.set(id, was);
        else this.#touch(entity, id);
      }
    }
    this.#overlay = overlay;
  }
}

/** One entity type's merged rows in id order, and their ids (aligned). */
export interface Merged {
  readonly ids: readonly string[];
  readonly rows: readonly unknown[];
}

/** The base's list of a type with the overlay's entries of that type on top; callers copy it. */
function merge(table: Table | undefined, local: Map<string, unknown> | undefined): Merged {
  const rows = table?.list() ?? [];
  const ids = table?.ids() ?? [];
  if (!local || local.size === 0) return { ids, rows };
  const patchedIds = [...ids];
  const list = rows.slice();
  for (const [id, value] of local) patch(patchedIds, list, id, value);
  return { ids: patchedIds, rows: list };
}

/** Freezes a JSON value and everything in it, so that no reader can change the local state. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/** Structural equality of JSON values (and DELETED). */
export function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
