export type SyncStatus = "online" | "offline" | "syncing" | "error";
