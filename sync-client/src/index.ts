export { SyncClient } from "./client.js";
export { SyncClosedError } from "./types.js";
export type {
  EntityMap,
  Events,
  FailedMutation,
  IndexOptions,
  LocalMutators,
  MutationMap,
  MutationOutcome,
  Queued,
  SyncClientOptions,
  SyncStats,
} from "./types.js";
export type { SyncStatus } from "./status.js";
export type { AuthReason } from "./auth.js";
export type { Frozen, LocalTx, View } from "./view.js";
export type { ComparisonOp, Direction, Field, FieldValue, LiveQuery, Query, StringField } from "./query.js";
export type { RetryEvent, BackoffOptions } from "./retry.js";
export type { ChannelLike, LockManagerLike, TabsOptions } from "./tabs.js";
export { IndexedDbStore } from "./idb.js";
export { MemoryStore } from "./store.js";
export type { ClientMeta, LoadedScope, LocalStore, PendingMutation, ScopeState, StoredEntity } from "./store.js";
export type { LiveSocket, LiveSocketFactory } from "./live.js";
export * from "./protocol.js";
