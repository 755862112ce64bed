import type { AuthReason } from "./auth.js";
import type { LiveSocketFactory } from "./live.js";
import type { BackoffOptions, RetryEvent } from "./retry.js";
import type { SyncStatus } from "./status.js";
import type { Field } from "./query.js";
import type { LocalStore } from "./store.js";
import type { TabsOptions } from "./tabs.js";
import type { LocalTx } from "./view.js";

/** What the generated `Mutations` interface looks like: name → `{args, result}`. */
export type MutationMap<M> = { [N in keyof M]: { args: unknown; result: unknown } };
/** What the generated `Entities` interface looks like: entity type → data. */
export type EntityMap<E> = { [K in keyof E]: unknown };

export type AnyMutations = Record<string, { args: unknown; result: unknown }>;
export type AnyEntities = Record<string, unknown>;

/** Optimistic mutators, by mutation name: what each mutation does locally before the server says. */
export type LocalMutators<M extends MutationMap<M>, E extends EntityMap<E>> = {
  [N in keyof M]?: (tx: LocalTx<E>, args: M[N]["args"]) => void;
};

/** The server's verdict on one mutation; `duplicate`: it had been processed before (its answer was lost). */
export type MutationOutcome<R> =
  | { ok: true; value: R; duplicate: boolean }
  | { ok: false; code: string; error: string; duplicate: boolean };

/**
 * A queued mutation: durable once `mutate` has resolved. `confirmed` settles with the server's
 * verdict, or rejects with a `SyncClosedError` where the client is closed first (the mutation stays
 * queued and is pushed by the next start).
 */
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

/** Secondary indexes by entity type, each the fields it sorts by: `{ todo: [["completed", "title"]] }`. */
export type IndexOptions<E> = { [K in keyof E]?: readonly (readonly Field<E[K]>[])[] };

export interface SyncClientOptions<M extends MutationMap<M>, E extends EntityMap<E>> {
  /** The server's origin, e.g. `http://127.0.0.1:3000`; default: the page's. */
  url?: string;
  /** The sync routes' prefix (default `/_sync`). */
  prefix?: string;
  /**
   * The scopes this client syncs at first (default `["_default"]`); `addScope` and `removeScope`
   * change them. The first is the default scope of `view`, `subscribe` and `mutate`, also once removed.
   */
  scopes?: readonly string[];
  /** Where state lives between runs (default: a `MemoryStore`). Tabs coordinate by the store's name. */
  store?: LocalStore;
  mutators?: LocalMutators<M, E>;
  /**
   * Secondary indexes for `query`: a query whose equality filters and order match an index's
   * leading fields reads the index instead of scanning the entity type. They live in memory, built
   * as the scopes load and kept up to date by every change of the local view.
   */
  indexes?: IndexOptions<E>;
  /** Headers for every request (where both set `Authorization`, `auth`'s token wins). */
  headers?: () => Record<string, string> | Promise<Record<string, string>>;
  /**
   * The current bearer token (null or undefined: no credentials). Every push, pull and snapshot
   * carries it as `Authorization: Bearer <token>`, and the live channel's JOINs as `token`.
   *
   * It is called once, with `"initial"`, before the first request, and the token is kept: the
   * client asks again, with `"unauthorized"`, only after the server refused it (a 401, or a live
   * ERROR `unauthorized`), and retries with backoff, never in a tight loop. Requests refused
   * together make one call, and no second call starts while one is in flight. Where `auth` throws,
   * or its promise rejects, the request fails like a network failure: retried with backoff, with a
   * `retry` event, and the status `"error"` until a request succeeds.
   */
  auth?: (reason: AuthReason) => string | null | undefined | Promise<string | null | undefined>;
  onMutationFailed?: (failed: FailedMutation) => void;
  fetch?: typeof fetch;
  /** Opens the live channel; `null` turns it off (default: the global `WebSocket`). */
  webSocket?: LiveSocketFactory | null;
  /** How tabs sharing the store find each other (default: Web Locks and BroadcastChannel). */
  tabs?: TabsOptions;
  /** Failsafe pull period in ms (default 30 000). */
  pullIntervalMs?: number;
  /** Mutations per push (default 100). */
  pushBatchSize?: number;
  /** Changes per pull page (default 1000). */
  pullLimit?: number;
  /** Retry delays: attempt n waits between half and all of min(maxMs, initialMs·2^n). */
  backoff?: BackoffOptions;
  heartbeatMs?: number;
  /** How long `close()` waits for requests in flight before it aborts them (default 5000 ms). */
  closeTimeoutMs?: number;
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

export interface Events {
  status: SyncStatus;
  /** Scopes whose local data changed. */
  change: readonly string[];
  /** The number of mutations waiting for the server's answer. */
  pending: number;
  mutationFailed: FailedMutation;
  retry: RetryEvent;
  /** This tab became the one that pushes and pulls for every tab of the store. */
  leader: true;
  /**
   * The server refused to let this client read a scope (a 403 to its pull or snapshot, or a live
   * ERROR `forbidden`): it is no longer pulled nor JOINed, and its local data stays. Call
   * `removeScope` to drop it, or `addScope` to try again.
   */
  forbidden: { scope: string; code: string; error: string };
  /** The client closed: `reason` is `"closed"` for `close()`, or why the store closed under it. */
  closed: { reason: string };
}

/** Why a `confirmed` promise or a call failed: the client was closed. */
export class SyncClosedError extends Error {
  override name = "SyncClosedError";
  readonly code = "closed";
}
