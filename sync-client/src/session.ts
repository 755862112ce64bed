import { Credentials, type Bearer } from "./auth.js";
import type { SyncContext } from "./context.js";
import { LiveChannel, type LiveSocket } from "./live.js";
import { LocalData } from "./local.js";
import { Puller } from "./puller.js";
import { Pusher } from "./pusher.js";
import { Retry, Sleeper, backoff } from "./retry.js";
import { Scopes } from "./scopes.js";
import type { SyncStatus } from "./status.js";
import type { LocalStore, PendingMutation } from "./store.js";
import { Tabs, type Settled, type TabMessage } from "./tabs.js";
import { NetworkError, Transport, type Answer } from "./transport.js";
import { SyncClosedError, type AnyEntities, type AnyMutations, type Events, type FailedMutation, type MutationOutcome, type SyncClientOptions, type SyncStats } from "./types.js";

interface Waiting {
  resolve(outcome: MutationOutcome<unknown>): void;
  reject(error: Error): void;
}

/**
 * One run of a client, from `start()` to `close()`: loads the local state, joins the other tabs,
 * and, while this tab leads, pushes, pulls and listens for pokes, for its own scopes and those
 * the other tabs ask for.
 */
export class Session implements SyncContext {
  clientId = "";
  closed = false;
  /** This tab, as the other tabs know it. */
  readonly tab = newClientId();
  readonly ready: Promise<void>;
  readonly tabs: Tabs;
  readonly #transport: Transport;
  readonly #credentials: Credentials;
  readonly #scopes: Scopes;
  /**
   * The scopes this tab pulls only for other tabs, while it leads: their copy in memory is what
   * pulls start from, and is never shown to this tab's app.
   */
  readonly #foreign = new LocalData({}, () => {}, () => {}, () => false);
  /** What this tab JOINs and pulls as the leader, as of the last `#resync`. */
  #applied = new Set<string>();
  /** Whether this tab leads and its loops and live channel are set up (some time after the lock came). */
  #leading = false;
  readonly #sleeper = new Sleeper();
  readonly #pusher: Pusher;
  readonly #puller: Puller;
  readonly #waiting = new Map<number, Waiting>();
  readonly #followerPulls = new Map<string, () => void>();
  readonly #work = new Set<Promise<unknown>>();
  #inbox: Promise<void> = Promise.resolve();
  #live: LiveChannel | undefined;
  #interval: ReturnType<typeof setInterval> | undefined;
  #status: SyncStatus = "offline";
  #leaderStatus: SyncStatus = "syncing";
  #reachable = true;
  #error: string | undefined;
  #closing: Promise<void> | undefined;
  #abandon: () => void = () => {};
  readonly #abandoned = new Promise<never>((_, reject) => {
    this.#abandon = () => reject(new NetworkError("the client closed while waiting for auth"));
  });
  readonly #onOnline = (): void => this.wake();

  constructor(
    readonly options: SyncClientOptions<AnyMutations, AnyEntities>,
    readonly store: LocalStore,
    readonly data: LocalData,
    /** The client's own scopes, changed in place by `addScope` and `removeScope`. */
    own: string[],
    readonly stats: SyncStats,
    readonly emit: <K extends keyof Events>(event: K, value: Events[K]) => void,
    /** The previous session's close: this one starts once the store is free. */
    after: Promise<void>,
  ) {
    this.#transport = new Transport(options);
    this.#credentials = new Credentials(options.auth);
    this.#abandoned.catch(() => {}); // rejected at close, whether or not a request waits on it
    this.#scopes = new Scopes(own);
    this.#pusher = new Pusher(this, Math.max(1, options.pushBatchSize ?? 100));
    this.#puller = new Puller(this, options.pullLimit ?? 1000);
    this.tabs = new Tabs(store.name, options.tabs ?? {}, () => this.#lead(), (message) => {
      // One message at a time, in order: a queue read for "queued" must not overtake a later "settled".
      const handled = this.#track(this.#inbox.then(() => this.#hear(message)));
      this.#inbox = handled.catch(() => {});
    });
    this.ready = this.#start(after);
  }

  get status(): SyncStatus {
    return this.#status;
  }

  async #start(after: Promise<void>): Promise<void> {
    await after;
    await this.store.open?.();
    this.store.onclose = (reason) => void this.close(reason);
    this.clientId = (await this.store.meta(newClientId)).clientId;
    for (const scope of [...this.#scopes.own]) {
      const loaded = await this.store.load(scope);
      this.data.reload(scope, loaded.rows, loaded.state);
    }
    this.data.setQueue(await this.store.pending());
    if (this.closed) return;
    globalThis.addEventListener?.("online", this.#onOnline);
    await this.tabs.start();
    // The other tabs answer with their scopes, and the leader with its status.
    this.tabs.post({ type: "hello", tab: this.tab, scopes: [...this.#scopes.own] });
    this.statusChanged();
  }

  /** This tab now pushes and pulls for every tab of the store. */
  #lead(): void {
    if (this.closed) return;
    this.emit("leader", true);
    this.tabs.post({ type: "leader" });
    this.#track(
      this.store.pending().then(async (queue) => {
        if (this.closed) return;
        this.data.setQueue(queue);
        this.#interval = setInterval(() => this.requestPull(this.#scopes.synced()), this.options.pullIntervalMs ?? 30_000);
        this.#startLive();
        this.#pusher.kick();
        this.#leading = true;
        await this.#resync();
        // Pulls this tab asked of the previous leader are its own now.
        for (const done of this.#followerPulls.values()) void this.#puller.idle().then(done);
        this.#followerPulls.clear();
        this.statusChanged();
      }),
    );
  }

  // ---- what the pusher and puller use --------------------------------------------------------

  async post(path: string, body: unknown): Promise<Answer> {
    const bearer = await this.#bearer();
    try {
      const answer = await this.#transport.post(path, body, bearer.value);
      this.#setReachable(true);
      if (answer.status !== 401) this.#credentials.accepted(bearer);
      else if (this.#credentials.rejected(bearer)) this.setError(`${path}: the server refuses the credentials (401)`);
      return answer;
    } catch (error) {
      if (error instanceof NetworkError && !this.closed) this.#setReachable(false);
      throw error;
    }
  }

  /**
   * The token to send; where the app's `auth` throws, the status says so until a request succeeds.
   * A closing client stops waiting for one after `closeTimeoutMs`, as for requests in flight.
   */
  async #bearer(): Promise<Bearer> {
    try {
      return await Promise.race([this.#credentials.current(), this.#abandoned]);
    } catch (error) {
      if (!this.closed) this.setError(error instanceof Error ? error.message : String(error));
      throw error;
    }
  }

  local(scope: string): LocalData {
    return this.#scopes.owns(scope) ? this.data : this.#foreign;
  }

  syncs(scope: string): boolean {
    return this.#scopes.syncs(scope);
  }

  forbidden(scope: string, code: string, error: string): void {
    if (!this.#scopes.syncs(scope) || !this.#scopes.forbid(scope)) return;
    this.tabs.post({ type: "forbidden", scope, code, error });
    this.#refused(scope, code, error);
  }

  retry(what: "push" | "pull"): Retry {
    return new Retry(what, this.options.backoff ?? {}, this.options.random ?? Math.random, this.#sleeper, (event) => {
      this.stats.retries += 1;
      this.emit("retry", event);
    });
  }

  setError(error: string | undefined): void {
    this.#error = error;
    this.statusChanged();
  }

  statusChanged(): void {
    const status: SyncStatus = !this.tabs.leader
      ? this.#leaderStatus
      : this.#error
        ? "error"
        : !this.#reachable
          ? "offline"
          : this.#pusher.busy || this.#puller.busy || this.data.pendingCount > 0
            ? "syncing"
            : "online";
    if (status === this.#status) return;
    this.#status = status;
    if (this.tabs.leader) this.tabs.post({ type: "status", status });
    this.emit("status", status);
  }

  settled(results: Settled[]): void {
    this.#settled(results);
    this.tabs.post({ type: "settled", results });
  }

  requestPull(scopes: Iterable<string>): void {
    this.#puller.request(scopes);
  }

  // ---- what the client's facade calls -----------------------------------------------------------

  async mutate(name: string, args: unknown, scope: string): Promise<{ seq: number; confirmed: Promise<MutationOutcome<unknown>> }> {
    await this.ready;
    if (this.closed) throw new SyncClosedError("the client is closed");
    const pending = await this.#track(this.store.enqueue({ name, args, scope }));
    const confirmed = new Promise<MutationOutcome<unknown>>((resolve, reject) => this.#waiting.set(pending.seq, { resolve, reject }));
    // An app that ignores `confirmed` must not see an unhandled rejection when the client closes.
    confirmed.catch(() => {});
    this.data.queued(pending);
    this.tabs.post({ type: "queued" });
    this.#pusher.kick();
    this.statusChanged();
    return { seq: pending.seq, confirmed };
  }

  async pull(): Promise<void> {
    await this.ready;
    if (this.closed) return;
    if (this.tabs.leader) {
      this.requestPull(this.#scopes.synced());
      return this.#puller.idle();
    }
    const id = newClientId();
    const done = new Promise<void>((resolve) => this.#followerPulls.set(id, resolve));
    this.tabs.post({ type: "pull", id });
    return done;
  }

  wake(): void {
    this.#sleeper.wake();
    this.#live?.wake();
    this.#pusher.kick();
    this.requestPull(this.#scopes.synced());
  }

  /** See `SyncClient.addScope`. */
  async addScope(scope: string): Promise<void> {
    await this.ready;
    const scopes = this.#scopes;
    if (this.closed || (scopes.owns(scope) && !scopes.forbidden(scope))) return;
    const fresh = !scopes.owns(scope);
    scopes.add(scope);
    if (fresh) {
      // Where this tab pulled it for another tab, the app's copy starts from the store's.
      this.#foreign.drop(scope);
      await this.#track(this.#reload(scope));
    }
    this.#postScopes({ retry: [scope] });
    await this.#resync();
  }

  /** See `SyncClient.removeScope`. */
  async removeScope(scope: string): Promise<void> {
    await this.ready;
    if (this.closed || !this.#scopes.owns(scope)) return;
    this.#scopes.remove(scope);
    this.#postScopes({ removed: [scope] });
    this.data.drop(scope);
    await this.#resync();
    await this.#removed([scope]);
    // Another tab still syncs it, through this one: pulls go on from the store's copy.
    if (this.#applied.has(scope)) await this.#track(this.#reload(scope));
  }

  /** Stops the loops once their requests in flight are answered (or aborted after `closeTimeoutMs`). */
  close(reason = "closed"): Promise<void> {
    this.#closing ??= this.#close(reason);
    return this.#closing;
  }

  async #close(reason: string): Promise<void> {
    this.closed = true;
    clearInterval(this.#interval);
    this.#live?.stop();
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#sleeper.stop();
    const timeout = setTimeout(() => {
      this.#transport.abort();
      this.#abandon();
    }, this.options.closeTimeoutMs ?? 5000);
    await this.ready.catch(() => {});
    await Promise.allSettled([this.#pusher.idle(), this.#puller.idle(), ...this.#work]);
    clearTimeout(timeout);
    // This tab asks for no scope any more: the leader stops syncing those only it wanted.
    this.tabs.post({ type: "scopes", tab: this.tab, scopes: [], retry: [], removed: [] });
    this.tabs.stop();
    for (const [seq, waiting] of this.#waiting) {
      waiting.reject(new SyncClosedError(`the client closed (${reason}) before the server answered mutation ${seq}; it stays queued`));
    }
    this.#waiting.clear();
    for (const done of this.#followerPulls.values()) done();
    this.#followerPulls.clear();
    this.store.onclose = undefined;
    this.store.close();
    this.emit("closed", { reason });
  }

  // ---- the other tabs ------------------------------------------------------------------------

  async #hear(message: TabMessage): Promise<void> {
    if (this.closed) return;
    await this.ready;
    switch (message.type) {
      case "queued":
        this.data.setQueue(await this.store.pending());
        this.#pusher.kick();
        this.statusChanged();
        return;
      case "settled":
        this.#settled(message.results);
        return;
      case "pulled": {
        const data = this.#held(message.scope);
        if (!data) return;
        const view = data.scope(message.scope);
        if (view.state.cursor === message.from && view.state.logId === message.state.logId) {
          view.apply(message.changes, message.state);
          if (message.complete) data.flush(message.scope);
        } else if (view.state.cursor !== message.state.cursor || view.state.logId !== message.state.logId) {
          await this.#reload(message.scope);
        }
        return;
      }
      case "snapshot":
        if (this.#held(message.scope)) await this.#reload(message.scope);
        return;
      case "status":
        this.#leaderStatus = message.status;
        this.statusChanged();
        return;
      case "hello":
        this.#postScopes({});
        if (this.tabs.leader) this.tabs.post({ type: "status", status: this.#status });
        // A tab of an older version says hello without its scopes.
        if (Array.isArray(message.scopes)) this.#scopes.setTab(message.tab, message.scopes);
        await this.#resync();
        return;
      case "scopes":
        this.#scopes.setTab(message.tab, message.scopes, message.retry);
        await this.#resync();
        await this.#removed(message.removed);
        return;
      case "forbidden":
        if (!this.#scopes.syncs(message.scope) || !this.#scopes.forbid(message.scope)) return;
        this.#refused(message.scope, message.code, message.error);
        return;
      case "pull":
        if (!this.tabs.leader) return;
        this.requestPull(this.#scopes.synced());
        await this.#puller.idle();
        this.tabs.post({ type: "pulled-all", id: message.id });
        return;
      case "leader":
        // What was asked of the previous leader may be lost with it: ask the new one.
        this.#postScopes({});
        for (const id of this.#followerPulls.keys()) this.tabs.post({ type: "pull", id });
        return;
      case "pulled-all":
        this.#followerPulls.get(message.id)?.();
        this.#followerPulls.delete(message.id);
        return;
    }
  }

  async #reload(scope: string): Promise<void> {
    const loaded = await this.store.load(scope);
    if (!this.closed) this.local(scope).reload(scope, loaded.rows, loaded.state);
  }

  /** Where this tab keeps the scope's data in memory; undefined where it does not sync it. */
  #held(scope: string): LocalData | undefined {
    if (this.#scopes.owns(scope)) return this.data;
    return this.#applied.has(scope) ? this.#foreign : undefined;
  }

  /** Tells the other tabs this tab's scopes, and which its app just added again or removed. */
  #postScopes({ retry = [], removed = [] }: { retry?: string[]; removed?: string[] }): void {
    this.tabs.post({ type: "scopes", tab: this.tab, scopes: [...this.#scopes.own], retry, removed });
  }

  /**
   * While this tab leads: JOINs and pulls the scopes it newly syncs (another tab's, loaded from the
   * store first), and LEAVEs and stops pulling those it no longer does (removed, refused).
   */
  async #resync(): Promise<void> {
    if (this.closed || !this.#leading) return;
    const now = new Set(this.#scopes.synced());
    const added = [...now].filter((scope) => !this.#applied.has(scope));
    const removed = [...this.#applied].filter((scope) => !now.has(scope));
    this.#applied = now;
    this.#live?.leave(removed);
    this.#puller.forget(removed);
    for (const scope of removed) if (!this.#scopes.owns(scope)) this.#foreign.drop(scope);
    for (const scope of added) if (!this.#scopes.owns(scope)) await this.#track(this.#reload(scope));
    const still = added.filter((scope) => this.#applied.has(scope));
    this.#live?.join(still);
    this.requestPull(still);
  }

  /**
   * Scopes a tab's app removed: the leader, whose knowledge of the tabs' scopes is the one that
   * decides what is pulled, deletes the store's copy of those no tab syncs any more. (A follower
   * may not have heard yet of a tab that just added one.) A tab that closes removes nothing: its
   * data is there for its next start.
   */
  async #removed(scopes: readonly string[]): Promise<void> {
    if (!this.tabs.leader) return;
    for (const scope of scopes) {
      if (!this.#scopes.owns(scope) && !this.#scopes.elsewhere(scope)) await this.#track(this.store.dropScope(scope));
    }
  }

  /** The server refused a scope: it is no longer pulled nor JOINed; its data stays. */
  #refused(scope: string, code: string, error: string): void {
    if (this.#scopes.owns(scope)) this.emit("forbidden", { scope, code, error });
    void this.#track(this.#resync());
  }

  /** Verdicts, whichever tab pushed: the view, this tab's promises and the failure events. */
  #settled(results: readonly Settled[]): void {
    this.data.settled(results);
    for (const result of results) {
      const { mutation } = result;
      const waiting = this.#waiting.get(mutation.seq);
      this.#waiting.delete(mutation.seq);
      if (result.ok) {
        waiting?.resolve({ ok: true, value: result.value, duplicate: result.duplicate });
        continue;
      }
      const failed = failure(mutation, result);
      waiting?.resolve({ ok: false, code: failed.code, error: failed.error, duplicate: result.duplicate });
      try {
        this.options.onMutationFailed?.(failed);
      } catch (error) {
        console.error("sync-client: onMutationFailed threw", error);
      }
      this.emit("mutationFailed", failed);
    }
    this.statusChanged();
  }

  #setReachable(reachable: boolean): void {
    this.#reachable = reachable;
    this.statusChanged();
  }

  /** Keeps track of work `close` must wait for; errors after close are expected and quiet. */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#work.add(work);
    const forget = (): void => void this.#work.delete(work);
    work.then(forget, (error: unknown) => {
      forget();
      if (!this.closed) console.error("sync-client:", error);
    });
    return work;
  }

  #startLive(): void {
    const factory =
      this.options.webSocket === null
        ? undefined
        : (this.options.webSocket ??
          (typeof globalThis.WebSocket === "function"
            ? (url: string) => new globalThis.WebSocket(url) as unknown as LiveSocket
            : undefined));
    if (!factory) return;
    const url = new URL(this.#transport.endpoint("live"), globalThis.location?.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.#live = new LiveChannel({
      url: url.toString(),
      connect: factory,
      credentials: this.#credentials,
      heartbeatMs: this.options.heartbeatMs ?? 25_000,
      backoff: (attempt) => backoff(this.options.backoff ?? {}, this.options.random ?? Math.random, attempt),
      onCursor: (scope, cursor, logId) => {
        this.stats.pokes += 1;
        const { state } = this.local(scope).scope(scope);
        const replaced = logId !== undefined && state.logId !== undefined && logId !== state.logId;
        if (replaced || cursor > state.cursor) this.requestPull([scope]);
      },
      onOpen: () => {
        // The network is back: retry now what waits for a backoff delay.
        this.#sleeper.wake();
        this.#pusher.kick();
      },
      onClose: () => {},
      onForbidden: (scopes, code, error) => {
        for (const scope of scopes) this.forbidden(scope, code, error);
      },
      onError: (code, error) => console.warn(`sync-client: live channel error ${code}: ${error}`),
    });
    this.#live.start();
  }
}

function failure(mutation: PendingMutation, result: Settled): FailedMutation {
  return {
    seq: mutation.seq,
    name: mutation.name,
    args: mutation.args,
    scope: mutation.scope,
    code: result.code ?? "failed",
    error: result.error ?? "the server refused the mutation",
  };
}

export function newClientId(): string {
  const crypto = globalThis.crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  return Array.from({ length: 4 }, () => Math.random().toString(16).slice(2, 10)).join("-");
}
