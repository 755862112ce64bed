import { ALL, type Touched, type View } from "./view.js";

/** What a query read: whole entity types (`list`) and single entities (`get`). */
class Reads {
  readonly lists = new Set<string>();
  readonly gets = new Map<string, Set<string>>();

  touchedBy(touched: Touched): boolean {
    for (const [entity, ids] of touched) {
      if (this.lists.has(entity)) return true;
      const read = this.gets.get(entity);
      if (!read) continue;
      if (ids === ALL) return true;
      for (const id of ids) if (read.has(id)) return true;
    }
    return false;
  }
}

interface Subscription {
  scope: string;
  reads: Reads;
  run(): void;
}

/**
 * The subscriptions of a client. A query is re-run only when something it read changed, and its
 * callback runs only when the result differs (by identity, or element by element for arrays and
 * key by key for plain objects: the view hands out unchanged entities as the same objects).
 */
export class Subscriptions {
  readonly #all = new Set<Subscription>();

  add<T>(scope: string, view: () => View, query: (view: View) => T, callback: (value: T) => void): () => void {
    let last: { value: T } | undefined;
    const subscription: Subscription = {
      scope,
      reads: new Reads(),
      run: () => {
        const reads = new Reads();
        const value = query(tracking(view(), reads));
        subscription.reads = reads;
        if (last && same(last.value, value)) return;
        last = { value };
        callback(value);
      },
    };
    this.#all.add(subscription);
    subscription.run();
    return () => this.#all.delete(subscription);
  }

  changed(scope: string, touched: Touched): void {
    for (const subscription of [...this.#all]) {
      if (subscription.scope !== scope || !subscription.reads.touchedBy(touched)) continue;
      try {
        subscription.run();
      } catch (error) {
        console.error("sync-client: a subscription threw", error);
      }
    }
  }
}

function tracking(view: View, reads: Reads): View {
  return {
    get: (entity, id) => {
      let ids = reads.gets.get(entity);
      if (!ids) reads.gets.set(entity, (ids = new Set()));
      ids.add(id);
      return view.get(entity, id);
    },
    list: (entity) => {
      reads.lists.add(entity);
      return view.list(entity);
    },
  };
}

function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
    return true;
  }
  if (!plain(a) || !plain(b)) return false;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && Object.is(a[k], b[k]));
}

function plain(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype;
}
