import type { SyncContext } from "./context.js";
import type { Change, PullRequest, SnapshotData, SnapshotRequest } from "./protocol.js";
import type { ScopeState } from "./store.js";
import type { ScopeView } from "./view.js";
import { judge, NetworkError, type Verdict } from "./transport.js";

/** A pull or snapshot answer other than the data: why, and how to go on. */
class PullFailure extends Error {
  constructor(readonly verdict: Exclude<Verdict, { kind: "ok" }>) {
    super(verdict.kind === "transient" ? verdict.reason : `${verdict.kind}: ${verdict.code}`);
  }
}

/**
 * Pulls the scopes asked for, one at a time, page by page, taking a snapshot where the scope never
 * synced or the server answers 410 (its log was trimmed or replaced; the queue is kept). A page is
 * stored, then shown; the subscribers hear of a pull once its last page is in, so that no mutation
 * the server processed is replayed over pulled data that holds it. A scope answered 403 is not
 * pulled again (no retry can change the server's mind) until it is added again; a scope removed
 * meanwhile is left as it is.
 */
export class Puller {
  readonly #wanted = new Set<string>();
  #running: Promise<void> | undefined;

  constructor(
    readonly context: SyncContext,
    readonly limit: number,
  ) {}

  get busy(): boolean {
    return this.#running !== undefined;
  }

  request(scopes: Iterable<string>): void {
    const { context } = this;
    if (context.closed || !context.tabs.leader) return;
    for (const scope of scopes) if (context.syncs(scope)) this.#wanted.add(scope);
    if (this.#running || this.#wanted.size === 0) return;
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      // A request between the loop's last look and here.
      this.request([]);
      context.statusChanged();
    });
    context.statusChanged();
  }

  /** No longer pulls these scopes (removed, refused); a pull of one in flight stores nothing more. */
  forget(scopes: Iterable<string>): void {
    for (const scope of scopes) this.#wanted.delete(scope);
  }

  /** Resolves when no pull is in flight or wanted. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #loop(): Promise<void> {
    const { context } = this;
    const retry = context.retry("pull");
    while (!context.closed && this.#wanted.size > 0) {
      const [scope] = this.#wanted;
      if (scope === undefined) break;
      this.#wanted.delete(scope);
      try {
        await this.#pullScope(scope);
        retry.succeeded();
        context.setError(undefined);
      } catch (error) {
        context.local(scope).flush(scope);
        if (context.closed) return;
        if (error instanceof PullFailure && error.verdict.kind === "forbidden") {
          context.forbidden(scope, error.verdict.code, error.verdict.error);
          continue;
        }
        if (context.syncs(scope)) this.#wanted.add(scope);
        let atLeastMs: number | undefined;
        if (error instanceof PullFailure) {
          const { verdict } = error;
          // After a 401 the next attempt carries a fresh token (see SyncContext.post).
          if (verdict.kind === "transient") atLeastMs = verdict.retryAfterMs;
          else if (verdict.kind !== "unauthorized") context.setError(`pull: ${verdict.code}: ${"error" in verdict ? verdict.error : ""}`);
        } else if (!(error instanceof NetworkError)) {
          console.warn("sync-client: pull failed", error);
        }
        await retry.failed(String(error), atLeastMs);
      }
    }
  }

  async #pullScope(scope: string): Promise<void> {
    const { context } = this;
    // Looked up each time: the scope may pass between the app's copy and the other tabs'.
    const view = (): ScopeView => context.local(scope).scope(scope);
    let snapshots = 0;
    // Never synced (a version-1 server gives no log id, so cursor 0 is all it tells).
    if (view().state.cursor === 0 && view().state.logId === undefined) {
      await this.#snapshot(scope);
      snapshots += 1;
    }
    for (;;) {
      if (!context.syncs(scope)) return;
      const from = view().state;
      const request: PullRequest = { scope, cursor: from.cursor, limit: this.limit, client_id: context.clientId };
      if (from.logId !== undefined) request.log_id = from.logId;
      const verdict = judge(await context.post("pull", request));
      context.stats.pulls += 1;
      if (verdict.kind === "gone") {
        if (snapshots >= 3) throw new PullFailure({ kind: "transient", reason: "the server keeps refusing the snapshot's cursor" });
        await this.#snapshot(scope);
        snapshots += 1;
        continue;
      }
      if (verdict.kind !== "ok") throw new PullFailure(verdict);
      // Removed or refused meanwhile: store nothing more of it.
      if (!context.syncs(scope)) return;
      const { changes, cursor, has_more, log_id, client_seq } = verdict.body;
      if (!Array.isArray(changes) || typeof cursor !== "number") {
        throw new PullFailure({ kind: "transient", reason: "pull: HTTP 200 without this protocol's page" });
      }
      const complete = has_more !== true || changes.length === 0;
      const state: ScopeState = {
        cursor,
        logId: typeof log_id === "string" ? log_id : from.logId,
        // Only a last page vouches that every processed mutation's changes are in (PROTOCOL 1.1).
        clientSeq: complete && typeof client_seq === "number" ? client_seq : from.clientSeq,
      };
      if (!(await context.store.applyChanges(scope, from.cursor, changes as Change[], state))) {
        // Another tab moved this scope on meanwhile: start again from what it stored.
        await this.#reload(scope);
        continue;
      }
      // A view whose state is another object than the one pulled from has moved meanwhile.
      if (view().state === from) view().apply(changes as Change[], state);
      else await this.#reload(scope);
      context.tabs.post({ type: "pulled", scope, from: from.cursor, changes: changes as Change[], state, complete });
      if (complete) {
        context.local(scope).flush(scope);
        return;
      }
    }
  }

  /** Takes a snapshot, in pages where the server pages it, and stores it as of its first page's cursor. */
  async #snapshot(scope: string): Promise<void> {
    const { context } = this;
    let data: SnapshotData = {};
    let first: ScopeState | undefined;
    let after: [string, string] | undefined;
    for (;;) {
      const request: SnapshotRequest = { scope, client_id: context.clientId };
      if (after) request.after = after;
      const verdict = judge(await context.post("snapshot", request));
      if (verdict.kind !== "ok") throw new PullFailure(verdict.kind === "gone" ? { kind: "transient", reason: `snapshot: ${verdict.code}` } : verdict);
      const page = verdict.body;
      if (!isData(page["data"]) || typeof page["cursor"] !== "number") {
        throw new PullFailure({ kind: "transient", reason: "snapshot: HTTP 200 without this protocol's data" });
      }
      const logId = typeof page["log_id"] === "string" ? page["log_id"] : undefined;
      if (first && logId !== first.logId) {
        // The log was replaced between two pages: start over.
        data = {};
        first = undefined;
        after = undefined;
        continue;
      }
      if (!first) {
        first = { cursor: page["cursor"], logId, clientSeq: typeof page["client_seq"] === "number" ? page["client_seq"] : 0 };
        data = page["data"];
      } else {
        for (const [entity, rows] of Object.entries(page["data"])) Object.assign((data[entity] ??= {}), rows);
      }
      if (page["has_more"] !== true) break;
      const next = page["next"];
      if (!Array.isArray(next) || next.length !== 2) {
        throw new PullFailure({ kind: "transient", reason: "snapshot: has_more without next" });
      }
      after = [String(next[0]), String(next[1])];
    }
    context.stats.snapshots += 1;
    if (!context.syncs(scope)) return;
    await context.store.replaceScope(scope, data, first);
    const rows = Object.entries(data).flatMap(([entity, byId]) =>
      Object.entries(byId).map(([id, value]) => ({ scope, entity, id, data: value })),
    );
    if (context.syncs(scope)) context.local(scope).scope(scope).reset(rows, first);
    context.tabs.post({ type: "snapshot", scope });
  }

  async #reload(scope: string): Promise<void> {
    const loaded = await this.context.store.load(scope);
    this.context.local(scope).reload(scope, loaded.rows, loaded.state);
  }
}

function isData(value: unknown): value is SnapshotData {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
