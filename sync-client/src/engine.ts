import {
  compareValues,
  comparator,
  matcher,
  sameRows,
  type Entry,
  type LiveQuery,
  type QueryHost,
  type QuerySpec,
} from "./query.js";
import { ALL, type Frozen, type Touched, type ScopeView } from "./view.js";

/** Entity type → indexes, each the fields it orders by. */
export type IndexDeclarations = Readonly<Record<string, readonly (readonly string[])[] | undefined>>;

/** The first position in `entries` where `before(entry)` is false (`entries` partitioned by it). */
function search(entries: readonly Entry[], before: (entry: Entry) => boolean): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (before(entries[mid] as Entry)) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * Entries kept sorted by a comparator that is total (its ties end in scope and id), with a map to
 * find an entry's row: one changed row is a binary search and a splice, never a re-sort.
 */
/** What a live query keeps of its matches: `entries` holds at least the rows its window shows. */
interface Matches {
  readonly entries: readonly Entry[];
  fill(entries: Entry[], ordered: boolean): void;
  set(scope: string, id: string, row: unknown): number;
  replaceScope(scope: string, fresh: Entry[]): void;
}

/** Pushes onto a max-heap (the greatest entry first) by `compare`. */
function heapPush(heap: Entry[], entry: Entry, compare: (a: Entry, b: Entry) => number): void {
  let at = heap.push(entry) - 1;
  while (at > 0) {
    const parent = (at - 1) >>> 1;
    if (compare(heap[parent] as Entry, entry) >= 0) break;
    heap[at] = heap[parent] as Entry;
    at = parent;
  }
  heap[at] = entry;
}

/** Replaces a max-heap's greatest entry with `entry`. */
function heapReplaceTop(heap: Entry[], entry: Entry, compare: (a: Entry, b: Entry) => number): void {
  let at = 0;
  for (;;) {
    const left = 2 * at + 1;
    if (left >= heap.length) break;
    const right = left + 1;
    const child = right < heap.length && compare(heap[right] as Entry, heap[left] as Entry) > 0 ? right : left;
    if (compare(heap[child] as Entry, entry) <= 0) break;
    heap[at] = heap[child] as Entry;
    at = child;
  }
  heap[at] = entry;
}

/** Splits `entries` into the `k` first by `compare` (unsorted) and the others: O(n log k). */
function select(entries: readonly Entry[], k: number, compare: (a: Entry, b: Entry) => number): [Entry[], Entry[]] {
  const heap: Entry[] = [];
  const rest: Entry[] = [];
  for (const entry of entries) {
    if (heap.length < k) heapPush(heap, entry, compare);
    else if (k > 0 && compare(entry, heap[0] as Entry) < 0) {
      rest.push(heap[0] as Entry);
      heapReplaceTop(heap, entry, compare);
    } else rest.push(entry);
  }
  return [heap, rest];
}

/**
 * The matches of a query with a limit, as a database's top-N sort keeps them: the first `cap` in
 * order, sorted (`entries`), and the others unsorted (`#rest`), each after every sorted one. The
 * first result needs only a selection, not a sort of every match; a change sorts in its row alone;
 * when removals leave fewer sorted rows than the window needs, the next ones are selected from
 * the rest.
 */
class Top implements Matches {
  entries: Entry[] = [];
  #rest: Entry[] = [];
  #maps: Map<string, Map<string, Entry>> | undefined;
  readonly #cap: number;

  constructor(
    readonly compare: (a: Entry, b: Entry) => number,
    readonly accepts: (row: unknown) => boolean,
    /** How many sorted rows the window needs (offset + limit). */
    readonly want: number,
  ) {
    // Room for as many removals again before a selection.
    this.#cap = 2 * want;
  }

  fill(entries: Entry[], ordered: boolean): void {
    this.#maps = undefined;
    if (entries.length <= this.#cap || ordered) {
      if (!ordered) entries.sort(this.compare);
      this.entries = entries.slice(0, this.#cap);
      this.#rest = entries.length > this.#cap ? entries.slice(this.#cap) : [];
      return;
    }
    const [first, rest] = select(entries, this.#cap, this.compare);
    this.entries = first.sort(this.compare);
    this.#rest = rest;
  }

  #byScope(): Map<string, Map<string, Entry>> {
    if (this.#maps) return this.#maps;
    const maps = new Map<string, Map<string, Entry>>();
    for (const list of [this.entries, this.#rest]) {
      for (const entry of list) {
        let ids = maps.get(entry.scope);
        if (!ids) maps.set(entry.scope, (ids = new Map()));
        ids.set(entry.id, entry);
      }
    }
    return (this.#maps = maps);
  }

  /** Whether `entry` belongs after every sorted entry (in the rest, where there is one). */
  #after(entry: Entry): boolean {
    const last = this.entries[this.entries.length - 1];
    return last === undefined || this.compare(entry, last) > 0;
  }

  set(scope: string, id: string, row: unknown): number {
    const byScope = this.#byScope();
    let ids = byScope.get(scope);
    const old = ids?.get(id);
    if (old?.row === row) return -1;
    let changed = Infinity;
    if (old) {
      ids?.delete(id);
      if (this.#rest.length > 0 && this.#after(old)) {
        const at = this.#rest.indexOf(old);
        const last = this.#rest.pop() as Entry;
        if (last !== old) this.#rest[at] = last;
      } else {
        const at = search(this.entries, (e) => this.compare(e, old) < 0);
        this.entries.splice(at, 1);
        changed = at;
      }
    }
    if (row !== undefined && this.accepts(row)) {
      const entry: Entry = { scope, id, row };
      if (!ids) byScope.set(scope, (ids = new Map()));
      ids.set(id, entry);
      if (this.#rest.length > 0 && this.#after(entry)) this.#rest.push(entry);
      else {
        const at = search(this.entries, (e) => this.compare(e, entry) < 0);
        this.entries.splice(at, 0, entry);
        changed = Math.min(changed, at);
        if (this.entries.length > this.#cap) this.#rest.push(this.entries.pop() as Entry);
      }
    }
    if (this.entries.length < this.want && this.#rest.length > 0) {
      changed = Math.min(changed, this.entries.length);
      const [next, rest] = select(this.#rest, this.#cap - this.entries.length, this.compare);
      for (const entry of next.sort(this.compare)) this.entries.push(entry);
      this.#rest = rest;
    }
    return changed === Infinity ? -1 : changed;
  }

  replaceScope(scope: string, fresh: Entry[]): void {
    const kept = [...this.entries, ...this.#rest].filter((e) => e.scope !== scope);
    for (const entry of fresh) kept.push(entry);
    this.fill(kept, false);
  }
}

class Sorted implements Matches {
  entries: Entry[] = [];
  /** Each scope's entries by id; made at the first change, not for the first result. */
  #maps: Map<string, Map<string, Entry>> | undefined;

  constructor(
    readonly compare: (a: Entry, b: Entry) => number,
    readonly accepts: (row: unknown) => boolean,
  ) {}

  #position(entry: Entry): number {
    return search(this.entries, (e) => this.compare(e, entry) < 0);
  }

  /** The entries by scope and id. */
  #byScope(): Map<string, Map<string, Entry>> {
    if (this.#maps) return this.#maps;
    const maps = new Map<string, Map<string, Entry>>();
    for (const entry of this.entries) {
      let ids = maps.get(entry.scope);
      if (!ids) maps.set(entry.scope, (ids = new Map()));
      ids.set(entry.id, entry);
    }
    return (this.#maps = maps);
  }

  /**
   * Sets (undefined: removes) the row of (scope, id); keeps it only where `accepts` does. Returns
   * the lowest position that changed, or -1.
   */
  set(scope: string, id: string, row: unknown): number {
    const byScope = this.#byScope();
    let ids = byScope.get(scope);
    const old = ids?.get(id);
    if (old?.row === row) return -1;
    if (old && row !== undefined && this.accepts(row)) return this.#move(old, { scope, id, row }, ids as Map<string, Entry>);
    let changed = Infinity;
    if (old) {
      const at = this.#position(old);
      this.entries.splice(at, 1);
      ids?.delete(id);
      changed = at;
    }
    if (row !== undefined && this.accepts(row)) {
      const entry: Entry = { scope, id, row };
      const at = this.#position(entry);
      this.entries.splice(at, 0, entry);
      if (!ids) byScope.set(scope, (ids = new Map()));
      ids.set(id, entry);
      changed = Math.min(changed, at);
    }
    return changed === Infinity ? -1 : changed;
  }

  /**
   * Replaces `old` with `entry`: the entries between the two positions shift by one, in place
   * (two splices of a large array would each move its whole tail). Returns the lowest position.
   */
  #move(old: Entry, entry: Entry, ids: Map<string, Entry>): number {
    const entries = this.entries;
    const from = this.#position(old);
    // The position among the entries with `old` still in them.
    const to = this.#position(entry);
    ids.set(entry.id, entry);
    if (to > from) {
      for (let k = from; k < to - 1; k++) entries[k] = entries[k + 1] as Entry;
      entries[to - 1] = entry;
      return from;
    }
    for (let k = from; k > to; k--) entries[k] = entries[k - 1] as Entry;
    entries[to] = entry;
    return to;
  }

  /** Starts with these entries (accepted already; `ordered`: sorted already). */
  fill(entries: Entry[], ordered: boolean): void {
    if (!ordered) entries.sort(this.compare);
    this.entries = entries;
    this.#maps = undefined;
  }

  /** Replaces every entry of a scope with `fresh` (accepted already, in any order). */
  replaceScope(scope: string, fresh: Entry[]): void {
    fresh.sort(this.compare);
    const byScope = this.#byScope();
    const kept = byScope.has(scope) ? this.entries.filter((e) => e.scope !== scope) : this.entries;
    byScope.delete(scope);
    if (fresh.length === 0) {
      this.entries = kept;
      return;
    }
    const ids = new Map<string, Entry>();
    for (const entry of fresh) ids.set(entry.id, entry);
    byScope.set(scope, ids);
    // Merges the two sorted runs.
    const merged: Entry[] = new Array<Entry>(kept.length + fresh.length);
    let i = 0;
    let j = 0;
    let k = 0;
    while (i < kept.length && j < fresh.length) {
      merged[k++] = this.compare(kept[i] as Entry, fresh[j] as Entry) <= 0 ? (kept[i++] as Entry) : (fresh[j++] as Entry);
    }
    while (i < kept.length) merged[k++] = kept[i++] as Entry;
    while (j < fresh.length) merged[k++] = fresh[j++] as Entry;
    this.entries = merged;
  }
}

/**
 * A secondary index: one entity type's rows of every scope in the local data, sorted by its fields
 * (ascending), then scope and id. It lives in memory, built as the scopes load and kept under every
 * change the view reports (pulls, optimistic writes and their replays, snapshots, drops).
 */
class Index {
  readonly sorted: Sorted;

  constructor(
    readonly entity: string,
    readonly fields: readonly string[],
  ) {
    this.sorted = new Sorted(
      comparator(fields.map((field) => ({ field, direction: "asc" }))),
      () => true,
    );
  }

  changed(scope: string, ids: Set<string> | typeof ALL, view: ScopeView): void {
    if (ids === ALL) {
      const { ids: all, rows } = view.entries(this.entity);
      this.sorted.replaceScope(
        scope,
        rows.map((row, i) => ({ scope, id: all[i] as string, row })),
      );
    } else for (const id of ids) this.sorted.set(scope, id, view.get(this.entity, id));
  }

  /** The positions of the entries whose leading fields equal `prefix`. */
  range(prefix: readonly unknown[]): [number, number] {
    const entries = this.sorted.entries;
    const cmp = (entry: Entry): number => {
      const row = (entry.row ?? {}) as Record<string, unknown>;
      for (let i = 0; i < prefix.length; i++) {
        const c = compareValues(row[this.fields[i] as string], prefix[i]);
        if (c !== 0) return c;
      }
      return 0;
    };
    return [search(entries, (e) => cmp(e) < 0), search(entries, (e) => cmp(e) <= 0)];
  }
}

/** How a query reads its rows: an index's range (in the query's order or not), or a scan. */
interface Plan {
  index: Index;
  prefix: unknown[];
  /** Whether the range is in the query's order already. */
  ordered: boolean;
}

/** The client's queries: runs them, keeps the watched ones and the indexes up to date. */
export class QueryEngine implements QueryHost {
  readonly #indexes = new Map<string, Index[]>();
  /** The live queries by key, while referenced; the active ones (with listeners) are held by `#active`. */
  readonly #live = new Map<string, WeakRef<Live<unknown>>>();
  readonly #active = new Set<Live<unknown>>();
  readonly #registry = new FinalizationRegistry<string>((key) => {
    if (this.#live.get(key)?.deref() === undefined) this.#live.delete(key);
  });
  /** Counts the changes: a live query without listeners recomputes when it moved. */
  version = 0;

  constructor(
    readonly view: (scope: string) => ScopeView,
    /** The client's scopes now: the union a query without `scopes` reads. */
    readonly clientScopes: () => readonly string[],
    declarations: IndexDeclarations,
  ) {
    for (const [entity, indexes] of Object.entries(declarations)) {
      if (indexes === undefined) continue;
      if (!Array.isArray(indexes)) throw new TypeError(`indexes.${entity} must be an array of field lists`);
      for (const fields of indexes) {
        if (!Array.isArray(fields) || fields.length === 0 || fields.some((f) => typeof f !== "string")) {
          throw new TypeError(`indexes.${entity}: each index must be a non-empty array of field names`);
        }
        let list = this.#indexes.get(entity);
        if (!list) this.#indexes.set(entity, (list = []));
        list.push(new Index(entity, [...fields]));
      }
    }
  }

  /** The scopes a spec reads now, sorted. */
  scopesOf(spec: QuerySpec): readonly string[] {
    return spec.scopes ?? [...new Set(this.clientScopes())].sort();
  }

  /** A scope's local data changed (its view flushed): the indexes, then the live queries follow. */
  changed(scope: string, touched: Touched): void {
    this.version += 1;
    for (const [entity, ids] of touched) {
      for (const index of this.#indexes.get(entity) ?? []) index.changed(scope, ids, this.view(scope));
    }
    for (const live of [...this.#active]) live.changed(scope, touched);
  }

  /** The client's scopes changed: the live queries over them follow. */
  scopesChanged(): void {
    this.version += 1;
    for (const live of [...this.#active]) live.changed(undefined, new Map());
  }

  #plan(spec: QuerySpec): Plan | undefined {
    let best: Plan | undefined;
    let bestScore = 0;
    for (const index of this.#indexes.get(spec.entity) ?? []) {
      const prefix: unknown[] = [];
      for (const field of index.fields) {
        const condition = spec.conditions.find((c) => c.field === field && c.op === "=");
        if (!condition) break;
        prefix.push(condition.value);
      }
      const rest = index.fields.slice(prefix.length);
      const ordered = spec.order.length === rest.length && spec.order.every((o, i) => o.direction === "asc" && o.field === rest[i]);
      const score = (ordered ? 1000 : 0) + prefix.length;
      if (score > bestScore) {
        best = { index, prefix, ordered };
        bestScore = score;
      }
    }
    return best;
  }

  /**
   * The rows of `scopes` that match, as entries, and whether they are in the query's order. With
   * `enough`, a read in order stops once it has that many.
   */
  candidates(spec: QuerySpec, scopes: readonly string[], enough = Infinity): { entries: Entry[]; ordered: boolean } {
    const accepted = matcher(spec);
    const plan = this.#plan(spec);
    const entries: Entry[] = [];
    if (plan) {
      const [from, to] = plan.index.range(plan.prefix);
      const all = plan.index.sorted.entries;
      const wanted = scopes.length === 1 ? undefined : new Set(scopes);
      const only = scopes[0];
      const stop = plan.ordered ? enough : Infinity;
      for (let i = from; i < to && entries.length < stop; i++) {
        const entry = all[i] as Entry;
        if ((wanted ? wanted.has(entry.scope) : entry.scope === only) && accepted(entry.row)) entries.push(entry);
      }
      return { entries, ordered: plan.ordered };
    }
    for (const scope of scopes) {
      const { ids, rows } = this.view(scope).entries(spec.entity);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i];
        if (accepted(row)) entries.push({ scope, id: ids[i] as string, row });
      }
    }
    // Scopes in order, each in id order: already the order of a query without orderBy.
    return { entries, ordered: spec.order.length === 0 };
  }

  run(spec: QuerySpec): readonly unknown[] {
    const want = spec.offset + spec.limit;
    const { entries, ordered } = this.candidates(spec, this.scopesOf(spec), want);
    if (ordered) return window(entries, spec);
    const compare = comparator(spec.order);
    // With a limit, only the rows it lets through are sorted.
    const first = want < entries.length ? select(entries, want, compare)[0] : entries;
    return window(first.sort(compare), spec);
  }

  watch<T>(spec: QuerySpec, key: string): LiveQuery<T> {
    const known = this.#live.get(key)?.deref();
    if (known) return known as unknown as LiveQuery<T>;
    const live = new Live<unknown>(this, spec);
    this.#live.set(key, new WeakRef(live));
    this.#registry.register(live, key);
    return live as unknown as LiveQuery<T>;
  }

  activate(live: Live<unknown>): void {
    this.#active.add(live);
  }

  deactivate(live: Live<unknown>): void {
    this.#active.delete(live);
  }
}

/** The rows of a sorted list of entries that the offset and limit let through: a new frozen array. */
function window(entries: readonly Entry[], spec: QuerySpec): readonly unknown[] {
  const end = Math.min(entries.length, spec.offset + spec.limit);
  const rows: unknown[] = [];
  for (let i = spec.offset; i < end; i++) rows.push((entries[i] as Entry).row);
  return Object.freeze(rows);
}

/**
 * A watched query. With listeners, it keeps its matches (every one sorted, or with a limit a
 * top-N) and applies each changed row alone (a binary search and a splice); it reads again only a
 * scope whose whole type may have changed (a load, a snapshot, a drop) or that joined or left the
 * query. Without listeners, it holds only its last result and recomputes it when read after a
 * change.
 */
class Live<T> implements LiveQuery<T> {
  readonly #listeners = new Set<() => void>();
  #result: readonly unknown[] = Object.freeze([]);
  /** The engine's version `#result` was computed at, while inactive. */
  #version = -1;
  #sorted: Matches | undefined;
  /** The scopes `#sorted` holds. */
  #scopes = new Set<string>();

  constructor(
    readonly engine: QueryEngine,
    readonly spec: QuerySpec,
  ) {}

  get result(): readonly Frozen<T>[] {
    if (!this.#sorted && this.#version !== this.engine.version) {
      this.#version = this.engine.version;
      this.#set(this.engine.run(this.spec));
    }
    return this.#result as readonly Frozen<T>[];
  }

  subscribe(listener: () => void): () => void {
    if (typeof listener !== "function") throw new TypeError("subscribe(listener): the listener must be a function");
    if (this.#listeners.size === 0) this.#activate();
    const wrapped = (): void => listener();
    this.#listeners.add(wrapped);
    return () => {
      if (!this.#listeners.delete(wrapped) || this.#listeners.size > 0) return;
      this.#sorted = undefined;
      this.#scopes = new Set();
      this.#version = this.engine.version;
      this.engine.deactivate(this as Live<unknown>);
    };
  }

  #activate(): void {
    const { engine, spec } = this;
    const compare = comparator(spec.order);
    const want = spec.offset + spec.limit;
    const sorted: Matches = want === Infinity ? new Sorted(compare, matcher(spec)) : new Top(compare, matcher(spec), want);
    const scopes = engine.scopesOf(spec);
    const { entries, ordered } = engine.candidates(spec, scopes);
    sorted.fill(entries, ordered);
    this.#sorted = sorted;
    this.#scopes = new Set(scopes);
    this.#set(window(sorted.entries, spec));
    engine.activate(this as Live<unknown>);
  }

  /** Applies a scope's changes (or, with `scope` undefined, only the change of the client's scopes). */
  changed(scope: string | undefined, touched: Touched): void {
    const sorted = this.#sorted;
    if (!sorted) return;
    const { engine, spec } = this;
    const end = spec.offset + spec.limit;
    let dirty = false;
    if (spec.scopes === undefined) {
      const now = new Set(engine.clientScopes());
      for (const left of this.#scopes) {
        if (now.has(left)) continue;
        sorted.replaceScope(left, []);
        dirty = true;
      }
      for (const joined of now) {
        if (this.#scopes.has(joined)) continue;
        sorted.replaceScope(joined, engine.candidates(spec, [joined]).entries);
        dirty = true;
      }
      this.#scopes = now;
    }
    const ids = scope === undefined ? undefined : touched.get(spec.entity);
    if (scope !== undefined && ids !== undefined && this.#scopes.has(scope)) {
      if (ids === ALL) {
        sorted.replaceScope(scope, engine.candidates(spec, [scope]).entries);
        dirty = true;
      } else {
        const view = engine.view(scope);
        for (const id of ids) {
          const at = sorted.set(scope, id, view.get(spec.entity, id));
          if (at >= 0 && at < end) dirty = true;
        }
      }
    }
    if (dirty && this.#set(window(sorted.entries, spec))) this.#notify();
  }

  /** Takes `rows` as the result where they differ from it; returns whether they did. */
  #set(rows: readonly unknown[]): boolean {
    if (sameRows(rows, this.#result)) return false;
    this.#result = rows;
    return true;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        console.error("sync-client: a live query listener threw", error);
      }
    }
  }
}
