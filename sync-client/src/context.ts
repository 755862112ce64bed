import type { LocalData } from "./local.js";
import type { Retry } from "./retry.js";
import type { LocalStore } from "./store.js";
import type { Settled, Tabs } from "./tabs.js";
import type { Answer } from "./transport.js";
import type { SyncStats } from "./types.js";

/** What the pusher and the puller share with the session that runs them. */
export interface SyncContext {
  readonly clientId: string;
  readonly store: LocalStore;
  readonly data: LocalData;
  readonly tabs: Tabs;
  readonly stats: SyncStats;
  readonly closed: boolean;
  /** POSTs to the sync endpoint `path`; a `NetworkError` marks the server unreachable. */
  post(path: string, body: unknown): Promise<Answer>;
  retry(what: "push" | "pull"): Retry;
  /** Asks the app to refresh its credentials after a 401; false (and the status "error") where it cannot. */
  refresh(reason: string): Promise<boolean>;
  /** A failure retrying cannot fix by itself, shown as the status "error" until a request succeeds. */
  setError(error: string | undefined): void;
  statusChanged(): void;
  /** The server's verdicts on mutations this tab pushed. */
  settled(results: Settled[]): void;
  requestPull(scopes: Iterable<string>): void;
}
