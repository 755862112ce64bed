import type { PendingMutation, StoredEntity } from "./store.js";
import type { Settled } from "./tabs.js";
import { ScopeView, type Mutator, type Touched } from "./view.js";

/**
 * Every scope's local view, and this tab's copy of the durable queue (the queue itself is in the
 * store, shared by the tabs). Changes reach `onChange` when a scope is flushed.
 */
export class LocalData {
  readonly #scopes = new Map<string, ScopeView>();
  #queue: PendingMutation[] = [];

  constructor(
    readonly mutators: Readonly<Record<string, Mutator | undefined>>,
    readonly onChange: (scope: string, touched: Touched) => void,
    readonly onPending: (count: number) => void,
    /** Whether the scope is pulled: only then is a confirmed mutation shown until its changes are. */
    readonly synced: (scope: string) => boolean,
  ) {}

  get pendingCount(): number {
    return this.#queue.length;
  }

  scope(name: string): ScopeView {
    let view = this.#scopes.get(name);
    if (!view) {
      view = new ScopeView(this.mutators);
      view.setQueued(this.#queue.filter((m) => m.scope === name));
      this.#scopes.set(name, view);
    }
    return view;
  }

  /** Replaces a scope's base (a load, a snapshot, another tab's writes) and flushes it. */
  reload(scope: string, rows: readonly StoredEntity[], state: ScopeView["state"]): void {
    this.scope(scope).reset(rows, state);
    this.flush(scope);
  }

  /** Forgets a scope's pulled data (it is no longer synced) and flushes it. */
  drop(scope: string): void {
    this.#scopes.get(scope)?.drop();
    this.flush(scope);
  }

  /** The durable queue as read from the store. */
  setQueue(queue: readonly PendingMutation[]): void {
    this.#queue = [...queue].sort((a, b) => a.seq - b.seq);
    this.#requeue();
  }

  queued(mutation: PendingMutation): void {
    if (this.#queue.some((m) => m.seq === mutation.seq)) return;
    this.#queue.push(mutation);
    this.#queue.sort((a, b) => a.seq - b.seq);
    this.#requeue();
  }

  /** Verdicts: the mutations leave the queue; those applied are shown until their changes are pulled. */
  settled(results: readonly Settled[]): void {
    for (const { mutation, ok, cursor, logId } of results) {
      if (ok && this.synced(mutation.scope)) this.scope(mutation.scope).settle(mutation, cursor, logId);
    }
    const done = new Set(results.map((r) => r.mutation.seq));
    this.#queue = this.#queue.filter((m) => !done.has(m.seq));
    this.#requeue();
  }

  flush(scope: string): void {
    const touched = this.#scopes.get(scope)?.flush();
    if (touched) this.onChange(scope, touched);
  }

  #requeue(): void {
    this.onPending(this.#queue.length);
    // A scope with queued mutations gets its view now, so that what they show is flushed to the
    // listeners (queries, indexes) rather than appearing unannounced when the view is first read.
    for (const mutation of this.#queue) this.scope(mutation.scope);
    for (const [name, view] of this.#scopes) {
      view.setQueued(this.#queue.filter((m) => m.scope === name));
      this.flush(name);
    }
  }
}
