// The wire types of docs/protocol.md. Cursors are u64 on the wire; this client keeps them as
// JavaScript numbers, exact up to 2^53 − 1.

/** A mutation as pushed. */
export interface WireMutation {
  name: string;
  args: unknown;
  client_id: string;
  client_seq: number;
  scope: string;
}

/** One entity's new state, or its deletion, at a position of the log. */
export interface Change {
  cursor: number;
  scope: string;
  entity: string;
  id: string;
  op: "create" | "update" | "delete";
  data?: unknown;
  ts: string;
}

/** The answer to one pushed mutation. */
export interface MutationResult {
  ok: boolean;
  cursor: number;
  error?: string;
  code?: string;
  changes?: Change[];
  duplicate?: true;
  value?: unknown;
}

export interface PushResponse {
  results: MutationResult[];
  cursor: number;
}

export interface PullResponse {
  changes: Change[];
  cursor: number;
  has_more: boolean;
}

/** A scope's whole data: entity type → id → data. */
export type SnapshotData = Record<string, Record<string, unknown>>;

export interface SnapshotResponse {
  data: SnapshotData;
  cursor: number;
}

/** The body of every non-2xx answer. */
export interface ErrorBody {
  error: string;
  code: string;
}

/** Live channel message types, as docs/protocol.md numbers them. */
export const LiveType = {
  JOIN: 1,
  LEAVE: 2,
  HEARTBEAT: 4,
  REPLY: 5,
  ERROR: 8,
  POKE: 11,
} as const;

export interface LiveEnvelope {
  type: number;
  ref: number;
  payload: Record<string, unknown>;
}

/** The scope a request without one uses. */
export const DEFAULT_SCOPE = "_default";
