export { SyncClient } from "./client.js";
export type {
  EntityMap,
  FailedMutation,
  LocalMutators,
  LocalTx,
  MutationMap,
  MutationOutcome,
  Queued,
  SyncClientOptions,
  SyncStats,
  SyncStatus,
  View,
} from "./client.js";
export { IndexedDbStore } from "./idb.js";
export { MemoryStore } from "./store.js";
export type { ClientMeta, LocalStore, PendingMutation, StoredEntity } from "./store.js";
export type { LiveSocket, LiveSocketFactory } from "./live.js";
export * from "./protocol.js";
