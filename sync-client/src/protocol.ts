// The wire types of PROTOCOL.md (version 1.1), written by hand: the Rust crate does not generate
// them yet. Fields marked 1.1 are absent in a version-1 server's answers. Cursors are u64 on the
// wire; this client keeps them as JavaScript numbers, exact up to 2^53 − 1.

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
  /** 1.1: the log's identity. */
  log_id?: string;
}

export interface PullRequest {
  scope: string;
  cursor: number;
  limit: number;
  /** 1.1: the log the cursor belongs to; another log answers 410 `log_replaced`. */
  log_id?: string;
  /** 1.1: asks for `client_seq` in the answer. */
  client_id?: string;
}

export interface PullResponse {
  changes: Change[];
  cursor: number;
  has_more: boolean;
  /** 1.1 */
  log_id?: string;
  /** 1.1: the highest `client_seq` of the request's `client_id` the server has processed. */
  client_seq?: number;
}

/** A scope's whole data: entity type → id → data. */
export type SnapshotData = Record<string, Record<string, unknown>>;

export interface SnapshotRequest {
  scope: string;
  /** 1.1 */
  client_id?: string;
  /** 1.1: the `[entity, id]` after which the page starts. */
  after?: [string, string];
  /** 1.1: at most this many entities per page. */
  limit?: number;
}

export interface SnapshotResponse {
  data: SnapshotData;
  cursor: number;
  /** 1.1 */
  log_id?: string;
  /** 1.1 */
  client_seq?: number;
  /** 1.1: further pages follow; `next` is the `after` of the next one. */
  has_more?: boolean;
  next?: [string, string];
}

/** The body of every non-2xx answer. */
export interface ErrorBody {
  error: string;
  code: string;
}

/** Live channel message types, as PROTOCOL.md numbers them. */
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
