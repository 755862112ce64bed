import type { SyncContext } from "./context.js";
import type { MutationResult, WireMutation } from "./protocol.js";
import type { PendingMutation } from "./store.js";
import type { Settled } from "./tabs.js";
import { judge, NetworkError } from "./transport.js";

/**
 * Pushes the durable queue, in `client_seq` order and in batches, until it is empty. A mutation
 * leaves the queue only by the server's verdict on it: a result, or a refusal of a push that held
 * it alone (PROTOCOL.md, "Which failures a client drops"); every other answer is retried.
 */
export class Pusher {
  #running: Promise<void> | undefined;
  #again = false;

  constructor(
    readonly context: SyncContext,
    readonly batchSize: number,
  ) {}

  get busy(): boolean {
    return this.#running !== undefined;
  }

  kick(): void {
    const { context } = this;
    if (context.closed || !context.tabs.leader) return;
    this.#again = true;
    if (this.#running) return;
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      // A kick between the loop's last look at the queue and here.
      if (this.#again) this.kick();
      context.statusChanged();
    });
    context.statusChanged();
  }

  /** Resolves when no push is in flight. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #loop(): Promise<void> {
    const { context } = this;
    const retry = context.retry("push");
    let limit = this.batchSize;
    while (this.#again && !context.closed) {
      this.#again = false;
      while (!context.closed) {
        try {
          const batch = await context.store.pending(limit);
          if (batch.length === 0) break;
          const verdict = judge(await context.post("push", { mutations: batch.map((m) => this.#wire(m)) }));
          context.stats.pushes += 1;
          if (verdict.kind === "ok") {
            const results = verdict.body["results"];
            const logId = typeof verdict.body["log_id"] === "string" ? verdict.body["log_id"] : undefined;
            if (!Array.isArray(results) || results.length === 0 || !results.every(isResult)) {
              await retry.failed("push: HTTP 200 without results");
              continue;
            }
            retry.succeeded();
            limit = this.batchSize;
            context.setError(undefined);
            await this.#settle(batch, results, logId);
          } else if (verdict.kind === "refused" || verdict.kind === "forbidden") {
            // The push as a whole was refused: find the mutation it is about by pushing one at a
            // time, then report that one and drop it.
            if (batch.length > 1) {
              limit = 1;
              continue;
            }
            await this.#settle(batch, [{ ok: false, cursor: 0, code: verdict.code, error: verdict.error }], undefined);
            limit = this.batchSize;
          } else if (verdict.kind === "unauthorized") {
            // The next attempt carries a fresh token (see SyncContext.post).
            await retry.failed(`push: HTTP 401 ${verdict.code}`);
          } else {
            const reason = verdict.kind === "gone" ? `push: HTTP 410 ${verdict.code}` : verdict.reason;
            await retry.failed(reason, verdict.kind === "transient" ? verdict.retryAfterMs : undefined);
          }
        } catch (error) {
          if (context.closed) return;
          if (!(error instanceof NetworkError)) console.warn("sync-client: push failed", error);
          await retry.failed(String(error));
        }
      }
    }
  }

  #wire(mutation: PendingMutation): WireMutation {
    return {
      name: mutation.name,
      args: mutation.args,
      client_id: this.context.clientId,
      client_seq: mutation.seq,
      scope: mutation.scope,
    };
  }

  /** Results leave the queue durably first, then reach the view, the promises and the other tabs. */
  async #settle(batch: readonly PendingMutation[], results: readonly MutationResult[], logId: string | undefined): Promise<void> {
    const answered = batch.slice(0, results.length);
    await this.context.store.remove(answered.map((m) => m.seq));
    const settled = answered.map((mutation, i): Settled => {
      const result = results[i] as MutationResult;
      return {
        mutation,
        ok: result.ok,
        cursor: result.cursor,
        logId,
        value: result.value,
        duplicate: result.duplicate === true,
        ...(result.ok ? {} : { code: result.code ?? "failed", error: result.error ?? "the server refused the mutation" }),
      };
    });
    this.context.settled(settled);
    this.context.requestPull(new Set(answered.map((m) => m.scope)));
  }
}

function isResult(value: unknown): value is MutationResult {
  const r = value as Partial<MutationResult> | null;
  return typeof r?.ok === "boolean" && typeof r.cursor === "number";
}
