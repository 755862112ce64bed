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
  readonly tabs: Tabs;
  readonly stats: SyncStats;
  readonly closed: boolean;
  /**
   * POSTs to the sync endpoint `path` with the bearer token; a `NetworkError` marks the server
   * unreachable, and a 401 has the next request ask the app for a fresh token.
   */
  post(path: string, body: unknown): Promise<Answer>;
  retry(what: "push" | "pull"): Retry;
  /** Where the scope's data is in memory: the app's, or what this tab pulls for the other tabs. */
  local(scope: string): LocalData;
  /** Whether the scope is pulled: some tab's app holds it and the server did not refuse it. */
  syncs(scope: string): boolean;
  /** The server refused to let the client read the scope (a 403): stop syncing it, tell the app. */
  forbidden(scope: string, code: string, error: string): void;
  /** A failure retrying cannot fix by itself, shown as the status "error" until a request succeeds. */
  setError(error: string | undefined): void;
  statusChanged(): void;
  /** The server's verdicts on mutations this tab pushed. */
  settled(results: Settled[]): void;
  requestPull(scopes: Iterable<string>): void;
}
