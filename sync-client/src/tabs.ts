import type { Change } from "./protocol.js";
import type { PendingMutation, ScopeState } from "./store.js";
import type { SyncStatus } from "./status.js";

/** The part of the Web Locks API (`navigator.locks`) the client uses. */
export interface LockManagerLike {
  /** With `ifAvailable`, `callback` gets `null` where another holds the lock. */
  request(name: string, options: { signal?: AbortSignal; ifAvailable?: boolean }, callback: (lock: unknown) => Promise<void>): Promise<unknown>;
}

/** The part of `BroadcastChannel` the client uses. */
export interface ChannelLike {
  onmessage: ((event: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

export interface TabsOptions {
  /** Default: `navigator.locks`; `null`: every tab pushes and pulls. */
  locks?: LockManagerLike | null;
  /** Default: `BroadcastChannel`; `null`: tabs do not hear each other. */
  channel?: ((name: string) => ChannelLike) | null;
}

/** A verdict on one mutation, as one tab tells the others. */
export interface Settled {
  mutation: PendingMutation;
  ok: boolean;
  cursor: number;
  logId: string | undefined;
  value?: unknown;
  duplicate: boolean;
  code?: string;
  error?: string;
}

/** What tabs tell each other. */
export type TabMessage =
  | { type: "queued" }
  | { type: "settled"; results: Settled[] }
  | { type: "pulled"; scope: string; from: number; changes: Change[]; state: ScopeState; complete: boolean }
  | { type: "snapshot"; scope: string }
  | { type: "status"; status: SyncStatus }
  | { type: "pull"; id: string }
  | { type: "pulled-all"; id: string }
  /** A tab started, with its scopes; every tab answers with its own ("scopes"). */
  | { type: "hello"; tab: string; scopes: string[] }
  /**
   * A tab's own scopes, which the leader syncs for it (none: it closed); `retry`: added again,
   * though refused; `removed`: removed by its app, to be deleted from the store unless another tab syncs them.
   */
  | { type: "scopes"; tab: string; scopes: string[]; retry: string[]; removed: string[] }
  /** The leader was refused a scope (403, ERROR `forbidden`) and no longer syncs it. */
  | { type: "forbidden"; scope: string; code: string; error: string }
  | { type: "leader" };

/**
 * The tabs of one origin that share a database: one at a time holds the Web Lock named after it and
 * pushes and pulls (the leader); the others follow through a BroadcastChannel. A closing tab's lock
 * passes to the next. Without Web Locks every tab leads, which is safe: pushes read the durable queue
 * in order and a pulled page is stored only onto the cursor it was pulled from. Without a channel the
 * tabs cannot follow each other, so each leads too.
 */
export class Tabs {
  #leader = false;
  #stopped = false;
  #channel: ChannelLike | undefined;
  #abort: AbortController | undefined;
  #release: (() => void) | undefined;

  constructor(
    readonly name: string | undefined,
    readonly options: TabsOptions,
    readonly onLeader: () => void,
    readonly onMessage: (message: TabMessage) => void,
  ) {}

  get leader(): boolean {
    return this.#leader;
  }

  /** Resolves once this tab knows whether it leads: it took the lock, or another tab holds it. */
  async start(): Promise<void> {
    const channel =
      this.options.channel === null
        ? undefined
        : (this.options.channel ??
          (typeof globalThis.BroadcastChannel === "function"
            ? (name: string) => new BroadcastChannel(name) as unknown as ChannelLike
            : undefined));
    const locks =
      this.options.locks === null
        ? undefined
        : (this.options.locks ?? (globalThis.navigator as unknown as { locks?: LockManagerLike } | undefined)?.locks);
    if (this.name !== undefined && channel) {
      this.#channel = channel(`sync-client:${this.name}`);
      this.#channel.onmessage = (event) => this.onMessage(event.data as TabMessage);
    }
    if (this.name === undefined || !this.#channel || !locks) {
      this.#lead();
      return;
    }
    const name = `sync-client:${this.name}`;
    const hold = (): Promise<void> =>
      this.#stopped
        ? Promise.resolve()
        : new Promise<void>((release) => {
            this.#release = release;
            this.#lead();
          });
    const took = await new Promise<boolean>((resolve) => {
      locks
        .request(name, { ifAvailable: true }, (lock) => {
          resolve(lock !== null);
          return lock === null ? Promise.resolve() : hold();
        })
        .catch(() => resolve(false));
    });
    if (took || this.#stopped) return;
    // Another tab leads: wait in line for the lock, which comes when it closes.
    this.#abort = new AbortController();
    locks.request(name, { signal: this.#abort.signal }, hold).catch(() => {
      // Aborted by stop() while waiting for the lock.
    });
  }

  #lead(): void {
    this.#leader = true;
    this.onLeader();
  }

  post(message: TabMessage): void {
    try {
      this.#channel?.postMessage(message);
    } catch (error) {
      console.warn("sync-client: cannot tell the other tabs", error);
    }
  }

  /** Leaves the channel and hands the lock to the next tab. */
  stop(): void {
    this.#stopped = true;
    this.#leader = false;
    this.#abort?.abort();
    this.#release?.();
    if (this.#channel) this.#channel.onmessage = null;
    this.#channel?.close();
  }
}
