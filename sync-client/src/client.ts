import { QueryEngine, type IndexDeclarations } from "./engine.js";
import { LocalData } from "./local.js";
import { DEFAULT_SCOPE } from "./protocol.js";
import { Session } from "./session.js";
import type { SyncStatus } from "./status.js";
import { EMPTY_SCOPE, MemoryStore, type LocalStore } from "./store.js";
import { QueryBuilder, type LiveQuery, type Query } from "./query.js";
import { Subscriptions } from "./subscriptions.js";
import type { AnyEntities, AnyMutations, EntityMap, Events, MutationMap, Queued, SyncClientOptions, SyncStats } from "./types.js";
import type { Mutator, View } from "./view.js";

type Listener<T> = (value: T) => void;

/**
 * The sync client: keeps a local copy of its scopes, queues mutations durably, pushes them in order
 * with retries, pulls the server's changes (on pokes, after pushes and every 30 s), and tells
 * subscribers when what they read changed. Tabs sharing a store share its queue and data: one of
 * them pushes and pulls, the others follow.
 *
 * Type it with the generated definitions: `new SyncClient<Mutations, Entities>({...})`.
 */
export class SyncClient<M extends MutationMap<M> = AnyMutations, E extends EntityMap<E> = AnyEntities> {
  readonly stats: SyncStats = { pushes: 0, pulls: 0, snapshots: 0, pokes: 0, retries: 0 };

  readonly #options: SyncClientOptions<M, E>;
  readonly #store: LocalStore;
  /** This client's scopes, in order; the session changes them in place. */
  readonly #scopes: string[];
  readonly #defaultScope: string;
  readonly #data: LocalData;
  readonly #subscriptions = new Subscriptions();
  readonly #queries: QueryEngine;
  readonly #listeners: { [K in keyof Events]: Set<Listener<Events[K]>> } = {
    status: new Set(),
    change: new Set(),
    mutationFailed: new Set(),
    retry: new Set(),
    pending: new Set(),
    leader: new Set(),
    forbidden: new Set(),
    closed: new Set(),
  };
  #session: Session | undefined;

  constructor(options: SyncClientOptions<M, E> = {}) {
    this.#options = options;
    this.#store = options.store ?? new MemoryStore();
    this.#scopes = options.scopes?.length ? [...new Set(options.scopes)] : [DEFAULT_SCOPE];
    this.#defaultScope = this.#scopes[0] ?? DEFAULT_SCOPE;
    const mutators = (options.mutators ?? {}) as unknown as Record<string, Mutator | undefined>;
    this.#data = new LocalData(
      mutators,
      (scope, touched) => {
        this.#queries.changed(scope, touched);
        this.#subscriptions.changed(scope, touched);
        this.#emit("change", [scope]);
      },
      (count) => this.#emit("pending", count),
      (scope) => this.#scopes.includes(scope),
    );
    this.#queries = new QueryEngine(
      (scope) => this.#data.scope(scope),
      () => this.#scopes,
      (options.indexes ?? {}) as IndexDeclarations,
    );
  }

  /** The scopes this client syncs, in the order they were added. */
  get scopes(): readonly string[] {
    return [...this.#scopes];
  }

  /** This client's id, as sent with every mutation (known once `start` resolved). */
  get clientId(): string {
    return this.#session?.clientId ?? "";
  }

  get status(): SyncStatus {
    return this.#session?.status ?? "offline";
  }

  /** Whether this tab is the one that pushes and pulls for the tabs sharing its store. */
  get leader(): boolean {
    return this.#session?.tabs.leader ?? false;
  }

  /** Mutations not yet answered by the server, from every tab sharing the store. */
  get pendingCount(): number {
    return this.#data.pendingCount;
  }

  /** The scope's pull cursor. */
  cursor(scope: string = this.#defaultScope): number {
    return this.#data.scope(scope).state.cursor;
  }

  /** Loads the local state, then pushes, pulls and listens for pokes (or follows the tab that does). */
  start(): Promise<void> {
    if (!this.#session || this.#session.closed) {
      this.#session = new Session(
        this.#options as unknown as SyncClientOptions<AnyMutations, AnyEntities>,
        this.#store,
        this.#data,
        this.#scopes,
        this.stats,
        (event, value) => this.#emit(event, value),
        this.#session?.close() ?? Promise.resolve(),
      );
    }
    return this.#session.ready;
  }

  /**
   * Stops every loop once the requests in flight are answered, rejects the `confirmed` promises of
   * mutations still queued with a `SyncClosedError` (they stay queued), and closes the store. The
   * client can be started again.
   */
  async close(): Promise<void> {
    await this.#session?.close();
  }

  /** Closes the client and deletes its local data: queue, entities and client id (a user logs out). */
  async clear(): Promise<void> {
    await this.close();
    await this.#store.open?.();
    await this.#store.clear();
    this.#store.close();
    for (const scope of this.#scopes) this.#data.reload(scope, [], EMPTY_SCOPE);
    this.#data.setQueue([]);
  }

  /**
   * Syncs one more scope: loads its local data, pulls it (a snapshot where it never synced), JOINs
   * it on the live channel and pulls it with the others from then on. Resolves once its local data
   * is in the view; `pull()` waits for the server's. A scope already synced is left as it is,
   * unless the server refused it (the `forbidden` event): then it is tried again. Before `start`,
   * it only joins the scopes `start` syncs.
   */
  async addScope(scope: string): Promise<void> {
    try {
      if (this.#session && !this.#session.closed) return await this.#session.addScope(scope);
      if (!this.#scopes.includes(scope)) this.#scopes.push(scope);
    } finally {
      this.#queries.scopesChanged();
    }
  }

  /**
   * Stops syncing a scope: LEAVEs it on the live channel, stops pulling it, and deletes its rows
   * and cursor from the view, whose subscribers re-run, and from the store. (The leading tab does
   * that, unless another tab of the store still syncs the scope: in a tab that does not lead, the
   * store forgets it a moment later.) Mutations still queued for it stay queued and are pushed: the
   * server decides (a 403 drops them, reported by `mutationFailed`); until answered they show in
   * its view. A scope not synced is left as it is.
   */
  async removeScope(scope: string): Promise<void> {
    try {
      if (this.#session && !this.#session.closed) return await this.#session.removeScope(scope);
      const at = this.#scopes.indexOf(scope);
      if (at < 0) return;
      this.#scopes.splice(at, 1);
      await this.#store.open?.();
      await this.#store.dropScope(scope);
      this.#store.close();
      this.#data.drop(scope);
    } finally {
      this.#queries.scopesChanged();
    }
  }

  /** Retries now whatever waits for a backoff delay, e.g. when the network is back. */
  wake(): void {
    this.#session?.wake();
  }

  /**
   * Queues a mutation. When the returned promise resolves, the mutation is in the persistent queue
   * and, where a local mutator is registered, applied to the local view.
   */
  async mutate<N extends keyof M & string>(
    name: N,
    args: M[N]["args"],
    options: { scope?: string } = {},
  ): Promise<Queued<M[N]["result"]>> {
    if (!this.#session) throw new Error("call start() before mutate()");
    return this.#session.mutate(name, args, options.scope ?? this.#defaultScope) as Promise<Queued<M[N]["result"]>>;
  }

  /** Pulls every scope now (through the leading tab); resolves when the pull is done. */
  async pull(): Promise<void> {
    await this.#session?.pull();
  }

  /** The local view of a scope: the server's state with pending mutations applied on top. */
  view(scope: string = this.#defaultScope): View<E> {
    return this.#data.scope(scope) as unknown as View<E>;
  }

  /**
   * Calls `callback` with `query(view)` now and whenever something the query read changed and its
   * result differs. Values are frozen. Returns the unsubscribe function.
   */
  subscribe<T>(query: (view: View<E>) => T, callback: (value: T) => void, options: { scope?: string } = {}): () => void {
    const scope = options.scope ?? this.#defaultScope;
    return this.#subscriptions.add(scope, () => this.#data.scope(scope), query as (view: View) => T, callback);
  }

  /**
   * A query over one entity type's local data (pending optimistic writes included), across the
   * client's scopes (whichever they are when it runs), or only the scopes given. Build it with
   * `where`, `filter`, `orderBy`, `limit` and `offset`; `run()` answers it now, `watch` keeps it live.
   */
  query<K extends keyof E & string>(entity: K, options: { scopes?: readonly string[] } = {}): Query<E[K]> {
    return QueryBuilder.create<E[K]>(this.#queries, entity, options.scopes);
  }

  /**
   * The live query of `query`: its result, kept up to date incrementally while it has listeners.
   * Equal queries (by `key`) share one live query while it is in use.
   */
  watch<T>(query: Query<T>): LiveQuery<T> {
    if (!(query instanceof QueryBuilder) || query.host !== this.#queries) {
      throw new TypeError("watch(query): the query must come from this client's query()");
    }
    return this.#queries.watch<T>(query.spec, query.key);
  }

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  #emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of [...this.#listeners[event]]) {
      try {
        listener(value);
      } catch (error) {
        console.error(`sync-client: a ${event} listener threw`, error);
      }
    }
  }
}
