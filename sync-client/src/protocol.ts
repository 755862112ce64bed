// The wire types of PROTOCOL.md (version 1.1) are generated from the Rust server's own types, in
// wire.gen.ts; this module re-exports them with the client's own helpers. Fields a version-1
// server leaves out are optional. Cursors are u64 on the wire; this client keeps them as
// JavaScript numbers, exact up to 2^53 − 1.
import type { Mutation, SnapshotResponse } from "./wire.gen.js";

export type * from "./wire.gen.js";

/** A mutation as this client pushes it: with its client, sequence number and scope always set. */
export type WireMutation = Mutation & { [K in "client_id" | "client_seq" | "scope"]: NonNullable<Mutation[K]> };

/** A scope's whole data: entity type → id → data. */
export type SnapshotData = SnapshotResponse["data"];

/** Live channel message types, as PROTOCOL.md numbers them. */
export const LiveType = {
  JOIN: 1,
  LEAVE: 2,
  HEARTBEAT: 4,
  REPLY: 5,
  ERROR: 8,
  POKE: 11,
} as const;

/** The scope a request without one uses. */
export const DEFAULT_SCOPE = "_default";
