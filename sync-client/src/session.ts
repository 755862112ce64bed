import type { SyncContext } from "./context.js";
import { LiveChannel, type LiveSocket } from "./live.js";
import type { LocalData } from "./local.js";
import { Puller } from "./puller.js";
import { Pusher } from "./pusher.js";
import { Retry, Sleeper, backoff } from "./retry.js";
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
 * and, while this tab leads, pushes, pulls and listens for pokes.
 */
export class Session implements SyncContext {
  clientId = "";
  closed = false;
  readonly ready: Promise<void>;
  readonly tabs: Tabs;
  readonly #transport: Transport;
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
  readonly #onOnline = (): void => this.wake();

  constructor(
    readonly options: SyncClientOptions<AnyMutations, AnyEntities>,
    readonly store: LocalStore,
    readonly data: LocalData,
    readonly scopes: readonly string[],
    readonly stats: SyncStats,
    readonly emit: <K extends keyof Events>(event: K, value: Events[K]) => void,
    /** The previous session's close: this one starts once the store is free. */
    after: Promise<void>,
  ) {
    this.#transport = new Transport(options);
    this.#pusher = new Pusher(this, Math.max(1, options.pushBatchSize ?? 100));
    this.#puller = new Puller(this, scopes, options.pullLimit ?? 1000);
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
    for (const scope of this.scopes) {
      const loaded = await this.store.load(scope);
      this.data.reload(scope, loaded.rows, loaded.state);
    }
    this.data.setQueue(await this.store.pending());
    if (this.closed) return;
    globalThis.addEventListener?.("online", this.#onOnline);
    await this.tabs.start();
    if (!this.tabs.leader) this.tabs.post({ type: "hello" });
    this.statusChanged();
  }

  /** This tab now pushes and pulls for every tab of the store. */
  #lead(): void {
    if (this.closed) return;
    this.emit("leader", true);
    this.tabs.post({ type: "leader" });
    this.#track(
      this.store.pending().then((queue) => {
        if (this.closed) return;
        this.data.setQueue(queue);
        this.#interval = setInterval(() => this.requestPull(this.scopes), this.options.pullIntervalMs ?? 30_000);
        this.#startLive();
        this.#pusher.kick();
        this.requestPull(this.scopes);
        // Pulls this tab asked of the previous leader are its own now.
        for (const done of this.#followerPulls.values()) void this.#puller.idle().then(done);
        this.#followerPulls.clear();
        this.statusChanged();
      }),
    );
  }

  // ---- what the pusher and puller use --------------------------------------------------------

  async post(path: string, body: unknown): Promise<Answer> {
    try {
      const answer = await this.#transport.post(path, body);
      this.#setReachable(true);
      return answer;
    } catch (error) {
      if (error instanceof NetworkError && !this.closed) this.#setReachable(false);
      throw error;
    }
  }

  retry(what: "push" | "pull"): Retry {
    return new Retry(what, this.options.backoff ?? {}, this.options.random ?? Math.random, this.#sleeper, (event) => {
      this.stats.retries += 1;
      this.emit("retry", event);
    });
  }

  async refresh(reason: string): Promise<boolean> {
    let refreshed = false;
    try {
      refreshed = (await this.options.onUnauthorized?.()) === true;
    } catch (error) {
      console.error("sync-client: onUnauthorized threw", error);
    }
    if (!refreshed) this.setError(reason);
    return refreshed;
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
      this.requestPull(this.scopes);
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
    this.requestPull(this.scopes);
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
    const timeout = setTimeout(() => this.#transport.abort(), this.options.closeTimeoutMs ?? 5000);
    await this.ready.catch(() => {});
    await Promise.allSettled([this.#pusher.idle(), this.#puller.idle(), ...this.#work]);
    clearTimeout(timeout);
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
        const view = this.data.scope(message.scope);
        if (view.state.cursor === message.from && view.state.logId === message.state.logId) {
          view.apply(message.changes, message.state);
          if (message.complete) this.data.flush(message.scope);
        } else if (view.state.cursor !== message.state.cursor || view.state.logId !== message.state.logId) {
          await this.#reload(message.scope);
        }
        return;
      }
      case "snapshot":
        await this.#reload(message.scope);
        return;
      case "status":
        this.#leaderStatus = message.status;
        this.statusChanged();
        return;
      case "hello":
        if (this.tabs.leader) this.tabs.post({ type: "status", status: this.#status });
        return;
      case "pull":
        if (!this.tabs.leader) return;
        this.requestPull(this.scopes);
        await this.#puller.idle();
        this.tabs.post({ type: "pulled-all", id: message.id });
        return;
      case "leader":
        // Pulls asked of the previous leader may be lost with it: ask the new one.
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
    if (!this.closed) this.data.reload(scope, loaded.rows, loaded.state);
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
      scopes: this.scopes,
      connect: factory,
      token: this.options.token,
      heartbeatMs: this.options.heartbeatMs ?? 25_000,
      backoff: (attempt) => backoff(this.options.backoff ?? {}, this.options.random ?? Math.random, attempt),
      onCursor: (scope, cursor, logId) => {
        this.stats.pokes += 1;
        const { state } = this.data.scope(scope);
        const replaced = logId !== undefined && state.logId !== undefined && logId !== state.logId;
        if (replaced || cursor > state.cursor) this.requestPull([scope]);
      },
      onOpen: () => {
        // The network is back: retry now what waits for a backoff delay.
        this.#sleeper.wake();
        this.#pusher.kick();
      },
      onClose: () => {},
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
