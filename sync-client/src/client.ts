import { LiveChannel, type LiveSocket, type LiveSocketFactory } from "./live.js";
import {
  DEFAULT_SCOPE,
  type Change,
  type ErrorBody,
  type MutationResult,
  type PullResponse,
  type PushResponse,
  type SnapshotResponse,
  type WireMutation,
} from "./protocol.js";
import { MemoryStore, type LocalStore, type PendingMutation } from "./store.js";

/** What the generated `Mutations` interface looks like: name → `{args, result}`. */
export type MutationMap<M> = { [N in keyof M]: { args: unknown; result: unknown } };
/** What the generated `Entities` interface looks like: entity type → data. */
export type EntityMap<E> = { [K in keyof E]: unknown };

type AnyMutations = Record<string, { args: unknown; result: unknown }>;
type AnyEntities = Record<string, unknown>;

/** The local data as the app sees it: the server's state with the pending mutations on top. */
export interface View<E extends EntityMap<E> = AnyEntities> {
  get<K extends keyof E & string>(entity: K, id: string): E[K] | undefined;
  /** Every entity of a type, in id order. */
  list<K extends keyof E & string>(entity: K): E[K][];
}

/** What an optimistic mutator may do to the local view. */
export interface LocalTx<E extends EntityMap<E> = AnyEntities> extends View<E> {
  put<K extends keyof E & string>(entity: K, id: string, data: E[K]): void;
  delete<K extends keyof E & string>(entity: K, id: string): void;
}

/** Optimistic mutators, by mutation name: what each mutation does locally before the server says. */
export type LocalMutators<M extends MutationMap<M>, E extends EntityMap<E>> = {
  [N in keyof M]?: (tx: LocalTx<E>, args: M[N]["args"]) => void;
};

/** The server's verdict on one mutation. */
export type MutationOutcome<R> =
  | { ok: true; value: R; duplicate: boolean }
  | { ok: false; code: string; error: string };

/** A queued mutation: durable once `mutate` has resolved; `confirmed` settles when the server answers. */
export interface Queued<R> {
  seq: number;
  confirmed: Promise<MutationOutcome<R>>;
}

/** A mutation the server refused for good; it was dropped from the queue. */
export interface FailedMutation {
  seq: number;
  name: string;
  args: unknown;
  scope: string;
  code: string;
  error: string;
}

export type SyncStatus = "online" | "offline" | "syncing" | "error";

export interface SyncClientOptions<M extends MutationMap<M>, E extends EntityMap<E>> {
  /** The server's origin, e.g. `http://127.0.0.1:3000`; default: the page's. */
  url?: string;
  /** The sync routes' prefix (default `/_sync`). */
  prefix?: string;
  /** The scopes this client syncs (default `["_default"]`); the first is the default scope. */
  scopes?: readonly string[];
  /** Where state lives between runs (default: a `MemoryStore`). */
  store?: LocalStore;
  mutators?: LocalMutators<M, E>;
  /** Headers for every request, e.g. `Authorization`. */
  headers?: () => Record<string, string> | Promise<Record<string, string>>;
  /** The token the live channel's JOIN carries. */
  token?: () => string | undefined | Promise<string | undefined>;
  /** Called on 401: refresh the credentials and answer true to retry now. */
  onUnauthorized?: () => boolean | Promise<boolean>;
  onMutationFailed?: (failed: FailedMutation) => void;
  fetch?: typeof fetch;
  /** Opens the live channel; `null` turns it off (default: the global `WebSocket`). */
  webSocket?: LiveSocketFactory | null;
  /** Failsafe pull period in ms (default 30 000). */
  pullIntervalMs?: number;
  /** Mutations per push (default 100). */
  pushBatchSize?: number;
  /** Changes per pull page (default 1000). */
  pullLimit?: number;
  /** Retry delays: attempt n waits between half and all of min(maxMs, initialMs·2^n). */
  backoff?: { initialMs?: number; maxMs?: number };
  heartbeatMs?: number;
  /** The jitter's source (default `Math.random`). */
  random?: () => number;
}

export interface SyncStats {
  pushes: number;
  pulls: number;
  snapshots: number;
  pokes: number;
  retries: number;
}

interface Events {
  status: SyncStatus;
  change: readonly string[];
  mutationFailed: FailedMutation;
  retry: { what: "push" | "pull"; attempt: number; delayMs: number; reason: string };
}

type Listener<T> = (value: T) => void;

/** A failure that retrying can fix: the network, or the server's 5xx. */
class TransientError extends Error {}
/** A failure that retrying cannot fix (until something changes, e.g. credentials). */
class PermanentError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

interface HttpAnswer {
  status: number;
  body: unknown;
}

const DELETED = Symbol("deleted");
type Overlay = Map<string, Map<string, unknown>>;

/**
 * The sync client: keeps a local copy of its scopes, queues mutations durably, pushes them in order
 * with retries, pulls the server's changes (on pokes, after pushes and every 30 s), and tells
 * subscribers when the local data changes.
 *
 * Type it with the generated definitions: `new SyncClient<Mutations, Entities>({...})`.
 */
export class SyncClient<M extends MutationMap<M> = AnyMutations, E extends EntityMap<E> = AnyEntities> {
  readonly stats: SyncStats = { pushes: 0, pulls: 0, snapshots: 0, pokes: 0, retries: 0 };
  readonly scopes: readonly string[];

  readonly #store: LocalStore;
  readonly #options: SyncClientOptions<M, E>;
  readonly #fetch: typeof fetch;
  readonly #base = new Map<string, Map<string, Map<string, unknown>>>();
  readonly #cursors = new Map<string, number>();
  #queue: PendingMutation[] = [];
  /** Confirmed mutations, still shown until a pull reaches their cursor. */
  #settling: { mutation: PendingMutation; cursor: number }[] = [];
  readonly #views = new Map<string, View<E>>();
  readonly #waiting = new Map<number, (outcome: MutationOutcome<unknown>) => void>();
  readonly #listeners: { [K in keyof Events]: Set<Listener<Events[K]>> } = {
    status: new Set(),
    change: new Set(),
    mutationFailed: new Set(),
    retry: new Set(),
  };
  #clientId = "";
  #ready: Promise<void> | undefined;
  #stopped = false;
  #status: SyncStatus = "offline";
  #reachable = true;
  #error: string | undefined;
  #pushing = false;
  #pulling = false;
  readonly #wantPull = new Set<string>();
  #pullIdle: (() => void)[] = [];
  readonly #sleepers = new Set<() => void>();
  #interval: ReturnType<typeof setInterval> | undefined;
  #live: LiveChannel | undefined;
  readonly #onOnline = (): void => this.wake();

  constructor(options: SyncClientOptions<M, E> = {}) {
    this.#options = options;
    this.#store = options.store ?? new MemoryStore();
    this.scopes = options.scopes?.length ? [...options.scopes] : [DEFAULT_SCOPE];
    const f = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => f(input, init);
  }

  /** This client's id, as sent with every mutation (known once `start` resolved). */
  get clientId(): string {
    return this.#clientId;
  }

  get status(): SyncStatus {
    return this.#status;
  }

  /** Mutations not yet confirmed by the server. */
  get pendingCount(): number {
    return this.#queue.length;
  }

  /** The scope's pull cursor. */
  cursor(scope: string = this.scopes[0] ?? DEFAULT_SCOPE): number {
    return this.#cursors.get(scope) ?? 0;
  }

  /** Loads the local state, then starts pushing, pulling and listening for pokes. */
  start(): Promise<void> {
    this.#ready ??= this.#start();
    return this.#ready;
  }

  async #start(): Promise<void> {
    const meta = await this.#store.meta(newClientId);
    this.#clientId = meta.clientId;
    for (const scope of this.scopes) {
      this.#cursors.set(scope, await this.#store.cursor(scope));
      const entities = new Map<string, Map<string, unknown>>();
      for (const row of await this.#store.load(scope)) {
        let rows = entities.get(row.entity);
        if (!rows) entities.set(row.entity, (rows = new Map()));
        rows.set(row.id, row.data);
      }
      this.#base.set(scope, entities);
    }
    this.#queue = await this.#store.pending();
    this.#changed(this.scopes);
    if (this.#stopped) return;
    this.#updateStatus();
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#interval = setInterval(() => this.#requestPull(this.scopes), this.#options.pullIntervalMs ?? 30_000);
    this.#startLive();
    this.#kickPush();
    this.#requestPull(this.scopes);
  }

  /** Stops every loop and timer and closes the store. Queued mutations stay queued. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#interval);
    this.#live?.stop();
    globalThis.removeEventListener?.("online", this.#onOnline);
    for (const wake of this.#sleepers) wake();
    this.#store.close();
  }

  /** Retries now whatever waits for a backoff delay, e.g. when the network is back. */
  wake(): void {
    for (const wake of [...this.#sleepers]) wake();
    this.#live?.wake();
    this.#kickPush();
    this.#requestPull(this.scopes);
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
    if (!this.#ready) throw new Error("call start() before mutate()");
    await this.#ready;
    const scope = options.scope ?? this.scopes[0] ?? DEFAULT_SCOPE;
    const pending = await this.#store.enqueue({ name, args, scope });
    const confirmed = new Promise<MutationOutcome<M[N]["result"]>>((resolve) => {
      this.#waiting.set(pending.seq, resolve as (outcome: MutationOutcome<unknown>) => void);
    });
    this.#queue.push(pending);
    this.#changed([scope]);
    this.#kickPush();
    return { seq: pending.seq, confirmed };
  }

  /** Pulls every scope now; resolves when the pull loop is idle again. */
  pull(): Promise<void> {
    const idle = new Promise<void>((resolve) => this.#pullIdle.push(resolve));
    this.#requestPull(this.scopes);
    return idle;
  }

  /** The local view of a scope: the server's state with pending mutations applied on top. */
  view(scope: string = this.scopes[0] ?? DEFAULT_SCOPE): View<E> {
    let view = this.#views.get(scope);
    if (!view) {
      view = this.#computeView(scope);
      this.#views.set(scope, view);
    }
    return view;
  }

  /**
   * Calls `callback` with `query(view)` now and after every local change of the scope (where the
   * query's result is a new value). Returns the unsubscribe function.
   */
  subscribe<T>(
    query: (view: View<E>) => T,
    callback: (value: T) => void,
    options: { scope?: string } = {},
  ): () => void {
    const scope = options.scope ?? this.scopes[0] ?? DEFAULT_SCOPE;
    let last: { value: T } | undefined;
    const run = (): void => {
      const value = query(this.view(scope));
      if (last && Object.is(last.value, value)) return;
      last = { value };
      callback(value);
    };
    const listener = (scopes: readonly string[]): void => {
      if (scopes.includes(scope)) run();
    };
    this.#listeners.change.add(listener);
    run();
    return () => this.#listeners.change.delete(listener);
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

  #changed(scopes: readonly string[]): void {
    for (const scope of scopes) this.#views.delete(scope);
    this.#emit("change", scopes);
  }

  #updateStatus(): void {
    const status: SyncStatus = this.#error
      ? "error"
      : !this.#reachable
        ? "offline"
        : this.#pushing || this.#pulling || this.#queue.length > 0
          ? "syncing"
          : "online";
    if (status !== this.#status) {
      this.#status = status;
      this.#emit("status", status);
    }
  }

  #setReachable(reachable: boolean): void {
    this.#reachable = reachable;
    this.#updateStatus();
  }

  // ---- the view ---------------------------------------------------------------------------

  #computeView(scope: string): View<E> {
    const base = this.#base.get(scope) ?? new Map<string, Map<string, unknown>>();
    const overlay: Overlay = new Map();
    const get = (entity: string, id: string): unknown => {
      const local = overlay.get(entity);
      if (local?.has(id)) {
        const value = local.get(id);
        return value === DELETED ? undefined : value;
      }
      return base.get(entity)?.get(id);
    };
    const list = (entity: string): unknown[] => {
      const local = overlay.get(entity);
      const ids = new Set(base.get(entity)?.keys() ?? []);
      for (const id of local?.keys() ?? []) ids.add(id);
      const out: unknown[] = [];
      for (const id of [...ids].sort()) {
        const value = get(entity, id);
        if (value !== undefined) out.push(value);
      }
      return out;
    };
    const write = (entity: string, id: string, value: unknown): void => {
      let local = overlay.get(entity);
      if (!local) overlay.set(entity, (local = new Map()));
      local.set(id, value);
    };
    const tx = {
      get,
      list,
      put: (entity: string, id: string, data: unknown) => write(entity, id, structuredClone(data)),
      delete: (entity: string, id: string) => write(entity, id, DELETED),
    } as unknown as LocalTx<E>;
    const mutators = (this.#options.mutators ?? {}) as Record<string, ((tx: LocalTx<E>, args: unknown) => void) | undefined>;
    const replay = [...this.#settling.map((s) => s.mutation), ...this.#queue].filter((m) => m.scope === scope);
    for (const mutation of replay) {
      const mutator = mutators[mutation.name];
      if (!mutator) continue;
      try {
        mutator(tx, mutation.args);
      } catch (error) {
        // The server decides; a local mutator that throws only has no local effect.
        console.warn(`sync-client: local mutator ${mutation.name} threw`, error);
      }
    }
    if (overlay.size === 0) {
      // Nothing pending: read the base directly.
      return {
        get: (entity, id) => base.get(entity)?.get(id) as never,
        list: (entity) => [...(base.get(entity)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v) as never,
      };
    }
    return tx;
  }

  // ---- HTTP -----------------------------------------------------------------------------

  #endpoint(path: string): string {
    const prefix = this.#options.prefix ?? "/_sync";
    const origin = this.#options.url ?? globalThis.location?.origin ?? "";
    return `${origin}${prefix}/${path}`;
  }

  async #post(path: string, body: unknown): Promise<HttpAnswer> {
    const headers = { "content-type": "application/json", ...(await this.#options.headers?.()) };
    let response: Response;
    try {
      response = await this.#fetch(this.#endpoint(path), { method: "POST", headers, body: JSON.stringify(body) });
    } catch (error) {
      this.#setReachable(false);
      throw new TransientError(`network error: ${String(error)}`);
    }
    let json: unknown = null;
    try {
      json = await response.json();
    } catch (error) {
      if (response.ok) {
        this.#setReachable(false);
        throw new TransientError(`the answer was cut: ${String(error)}`);
      }
    }
    this.#setReachable(true);
    return { status: response.status, body: json };
  }

  /** Retries after 401 where the app refreshed the credentials; otherwise a permanent error. */
  async #unauthorized(answer: HttpAnswer): Promise<void> {
    if (await this.#options.onUnauthorized?.()) return;
    throw permanent(answer);
  }

  #backoff(attempt: number): number {
    const initial = this.#options.backoff?.initialMs ?? 500;
    const max = this.#options.backoff?.maxMs ?? 30_000;
    const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
    const random = this.#options.random ?? Math.random;
    return ceiling / 2 + random() * (ceiling / 2);
  }

  /** Waits for attempt `attempt`'s backoff; `wake()` cuts it short. */
  async #retryLater(what: "push" | "pull", attempt: number, reason: string): Promise<void> {
    const delayMs = this.#backoff(attempt);
    this.stats.retries += 1;
    this.#emit("retry", { what, attempt, delayMs, reason });
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, delayMs);
      this.#sleepers.add(wake);
    });
  }

  // ---- push -------------------------------------------------------------------------------

  #kickPush(): void {
    if (this.#pushing || this.#stopped || !this.#ready) return;
    void this.#pushLoop();
  }

  async #pushLoop(): Promise<void> {
    this.#pushing = true;
    this.#updateStatus();
    const batchSize = Math.max(1, this.#options.pushBatchSize ?? 100);
    let limit = batchSize;
    let attempt = 0;
    try {
      while (!this.#stopped && this.#queue.length > 0) {
        const batch = this.#queue.slice(0, limit);
        const mutations: WireMutation[] = batch.map((m) => ({
          name: m.name,
          args: m.args,
          client_id: this.#clientId,
          client_seq: m.seq,
          scope: m.scope,
        }));
        let answer: HttpAnswer;
        try {
          answer = await this.#post("push", { mutations });
        } catch (error) {
          await this.#retryLater("push", attempt++, String(error));
          continue;
        }
        this.stats.pushes += 1;
        const { status } = answer;
        if (status === 200) {
          attempt = 0;
          limit = batchSize;
          this.#error = undefined;
          await this.#settle(batch, (answer.body as PushResponse).results);
          continue;
        }
        if (status >= 500) {
          await this.#retryLater("push", attempt++, `HTTP ${status}`);
          continue;
        }
        if (status === 401) {
          try {
            await this.#unauthorized(answer);
          } catch (error) {
            this.#error = String(error);
            this.#updateStatus();
            await this.#retryLater("push", attempt++, "unauthorized");
          }
          continue;
        }
        // Any other 4xx refuses the whole push. Find the mutation it is about by pushing one at a time,
        // then report that one and drop it.
        if (batch.length > 1) {
          limit = 1;
          continue;
        }
        const [refused] = batch;
        if (refused) {
          const body = errorBody(answer);
          await this.#settle(batch, [{ ok: false, cursor: 0, code: body.code, error: body.error }]);
        }
      }
    } finally {
      this.#pushing = false;
      this.#updateStatus();
    }
  }

  /** Applies a push's results: confirmations and failures leave the queue, durably. */
  async #settle(batch: readonly PendingMutation[], results: readonly MutationResult[]): Promise<void> {
    const answered = batch.slice(0, results.length);
    await this.#store.remove(answered.map((m) => m.seq));
    const done = new Set(answered.map((m) => m.seq));
    this.#queue = this.#queue.filter((m) => !done.has(m.seq));
    const scopes = new Set<string>();
    answered.forEach((mutation, i) => {
      const result = results[i];
      if (!result) return;
      scopes.add(mutation.scope);
      const resolve = this.#waiting.get(mutation.seq);
      this.#waiting.delete(mutation.seq);
      if (result.ok) {
        if (result.cursor > (this.#cursors.get(mutation.scope) ?? 0)) {
          this.#settling.push({ mutation, cursor: result.cursor });
        }
        resolve?.({ ok: true, value: result.value, duplicate: result.duplicate === true });
      } else {
        const failed: FailedMutation = {
          seq: mutation.seq,
          name: mutation.name,
          args: mutation.args,
          scope: mutation.scope,
          code: result.code ?? "failed",
          error: result.error ?? "the server refused the mutation",
        };
        resolve?.({ ok: false, code: failed.code, error: failed.error });
        try {
          this.#options.onMutationFailed?.(failed);
        } catch (error) {
          console.error("sync-client: onMutationFailed threw", error);
        }
        this.#emit("mutationFailed", failed);
      }
    });
    this.#changed([...scopes]);
    this.#requestPull([...scopes]);
  }

  // ---- pull -------------------------------------------------------------------------------

  #requestPull(scopes: readonly string[]): void {
    if (this.#stopped || !this.#ready) return;
    for (const scope of scopes) if (this.scopes.includes(scope)) this.#wantPull.add(scope);
    if (!this.#pulling) void this.#pullLoop();
  }

  async #pullLoop(): Promise<void> {
    this.#pulling = true;
    this.#updateStatus();
    let attempt = 0;
    try {
      while (!this.#stopped && this.#wantPull.size > 0) {
        const [scope] = this.#wantPull;
        if (scope === undefined) break;
        this.#wantPull.delete(scope);
        try {
          await this.#pullScope(scope);
          attempt = 0;
          this.#error = undefined;
        } catch (error) {
          this.#wantPull.add(scope);
          if (!(error instanceof TransientError)) {
            this.#error = String(error);
            this.#updateStatus();
          }
          await this.#retryLater("pull", attempt++, String(error));
        }
      }
    } finally {
      this.#pulling = false;
      this.#updateStatus();
      const idle = this.#pullIdle;
      this.#pullIdle = [];
      for (const resolve of idle) resolve();
    }
  }

  async #pullScope(scope: string): Promise<void> {
    let snapshots = 0;
    if ((this.#cursors.get(scope) ?? 0) === 0) {
      await this.#snapshot(scope);
      snapshots += 1;
    }
    for (;;) {
      const cursor = this.#cursors.get(scope) ?? 0;
      const answer = await this.#post("pull", { scope, cursor, limit: this.#options.pullLimit ?? 1000 });
      this.stats.pulls += 1;
      if (answer.status === 410) {
        if (snapshots >= 3) throw new TransientError("the server keeps refusing the snapshot's cursor");
        await this.#snapshot(scope);
        snapshots += 1;
        continue;
      }
      if (answer.status === 401) {
        await this.#unauthorized(answer);
        continue;
      }
      if (answer.status >= 500) throw new TransientError(`pull: HTTP ${answer.status}`);
      if (answer.status !== 200) throw permanent(answer);
      const page = answer.body as PullResponse;
      await this.#store.applyChanges(scope, page.changes, page.cursor);
      this.#applyToBase(scope, page.changes);
      this.#advance(scope, page.cursor);
      if (!page.has_more || page.changes.length === 0) return;
    }
  }

  async #snapshot(scope: string): Promise<void> {
    for (;;) {
      const answer = await this.#post("snapshot", { scope });
      if (answer.status === 401) {
        await this.#unauthorized(answer);
        continue;
      }
      if (answer.status >= 500) throw new TransientError(`snapshot: HTTP ${answer.status}`);
      if (answer.status !== 200) throw permanent(answer);
      this.stats.snapshots += 1;
      const snapshot = answer.body as SnapshotResponse;
      await this.#store.replaceScope(scope, snapshot.data, snapshot.cursor);
      const entities = new Map<string, Map<string, unknown>>();
      for (const [entity, rows] of Object.entries(snapshot.data)) {
        entities.set(entity, new Map(Object.entries(rows)));
      }
      this.#base.set(scope, entities);
      this.#advance(scope, snapshot.cursor);
      return;
    }
  }

  #applyToBase(scope: string, changes: readonly Change[]): void {
    let entities = this.#base.get(scope);
    if (!entities) this.#base.set(scope, (entities = new Map()));
    for (const change of changes) {
      let rows = entities.get(change.entity);
      if (!rows) entities.set(change.entity, (rows = new Map()));
      if (change.op === "delete") rows.delete(change.id);
      else rows.set(change.id, change.data);
    }
  }

  #advance(scope: string, cursor: number): void {
    this.#cursors.set(scope, cursor);
    this.#settling = this.#settling.filter((s) => s.mutation.scope !== scope || s.cursor > cursor);
    this.#changed([scope]);
  }

  // ---- live -------------------------------------------------------------------------------

  #startLive(): void {
    const factory =
      this.#options.webSocket === null
        ? undefined
        : (this.#options.webSocket ??
          (typeof globalThis.WebSocket === "function"
            ? (url: string) => new globalThis.WebSocket(url) as unknown as LiveSocket
            : undefined));
    if (!factory) return;
    const http = this.#endpoint("live");
    const base = globalThis.location?.href;
    const url = new URL(http, base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.#live = new LiveChannel({
      url: url.toString(),
      scopes: this.scopes,
      connect: factory,
      token: this.#options.token,
      heartbeatMs: this.#options.heartbeatMs ?? 25_000,
      backoff: (attempt) => this.#backoff(attempt),
      onCursor: (scope, cursor) => {
        this.stats.pokes += 1;
        if (cursor > (this.#cursors.get(scope) ?? 0)) this.#requestPull([scope]);
      },
      onOpen: () => {
        // The network is back: retry now what waits for a backoff delay.
        for (const wake of [...this.#sleepers]) wake();
        this.#kickPush();
      },
      onClose: () => {},
      onError: (code, error) => console.warn(`sync-client: live channel error ${code}: ${error}`),
    });
    this.#live.start();
  }
}

function errorBody(answer: HttpAnswer): ErrorBody {
  const body = answer.body as Partial<ErrorBody> | null;
  return {
    code: typeof body?.code === "string" ? body.code : `http_${answer.status}`,
    error: typeof body?.error === "string" ? body.error : `HTTP ${answer.status}`,
  };
}

function permanent(answer: HttpAnswer): PermanentError {
  const body = errorBody(answer);
  return new PermanentError(`${body.code}: ${body.error}`, answer.status, body.code);
}

function newClientId(): string {
  const crypto = globalThis.crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  return Array.from({ length: 4 }, () => Math.random().toString(16).slice(2, 10)).join("-");
}
