import type { ErrorBody } from "./protocol.js";

/** An HTTP answer, its body parsed where it was JSON. */
export interface Answer {
  status: number;
  body: unknown;
  /** From a `Retry-After` header, in ms. */
  retryAfterMs?: number | undefined;
}

/**
 * What an answer means to the client, by PROTOCOL.md's "Which failures a client drops":
 * `refused` (the request's mutations were refused for good), `forbidden` (a 403: refused for
 * good too, and a scope that answers it to a pull is one to stop syncing), `gone` (take a
 * snapshot), `unauthorized` (refresh the credentials, then retry), or `transient` (retry with
 * backoff).
 */
export type Verdict =
  | { kind: "ok"; body: Record<string, unknown> }
  | { kind: "refused"; code: string; error: string }
  | { kind: "forbidden"; code: string; error: string }
  | { kind: "gone"; code: string }
  | { kind: "unauthorized"; code: string; error: string }
  | { kind: "transient"; reason: string; retryAfterMs?: number | undefined };

/** The 400 codes that refuse a request's content; any other 400 is not this protocol's. */
const REFUSING_400 = new Set(["invalid_request", "invalid_scope", "too_many_mutations", "no_mutations"]);

/** The network failed, the request was aborted, or the answer was cut. */
export class NetworkError extends Error {}

export interface TransportOptions {
  url?: string | undefined;
  prefix?: string | undefined;
  headers?: (() => Record<string, string> | Promise<Record<string, string>>) | undefined;
  fetch?: typeof fetch | undefined;
}

/** POSTs JSON to the sync endpoints; `abort` cancels what is in flight. */
export class Transport {
  readonly #options: TransportOptions;
  readonly #fetch: typeof fetch;
  readonly #inFlight = new Set<AbortController>();

  constructor(options: TransportOptions) {
    this.#options = options;
    const f = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => f(input, init);
  }

  endpoint(path: string): string {
    const origin = this.#options.url ?? globalThis.location?.origin ?? "";
    return `${origin}${this.#options.prefix ?? "/_sync"}/${path}`;
  }

  /** POSTs `body`, with `Authorization: Bearer <token>` where there is a token (over `headers`'). */
  async post(path: string, body: unknown, token: string | undefined): Promise<Answer> {
    const headers = new Headers({ "content-type": "application/json" });
    for (const [name, value] of Object.entries((await this.#options.headers?.()) ?? {})) headers.set(name, value);
    if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
    const controller = new AbortController();
    this.#inFlight.add(controller);
    try {
      let response: Response;
      try {
        response = await this.#fetch(this.endpoint(path), {
          method: "POST",
          headers,
          body: JSON.stringify(body),
          signal: controller.signal,
        });
      } catch (error) {
        throw new NetworkError(`network error: ${String(error)}`);
      }
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
      let text: string;
      try {
        text = await response.text();
      } catch (error) {
        throw new NetworkError(`the answer was cut: ${String(error)}`);
      }
      let json: unknown = null;
      try {
        json = JSON.parse(text);
      } catch {
        // Not JSON: a proxy's page, or a cut body; `judge` calls it transient.
      }
      return { status: response.status, body: json, retryAfterMs };
    } finally {
      this.#inFlight.delete(controller);
    }
  }

  /** Aborts every request in flight; their callers see a `NetworkError`. */
  abort(): void {
    for (const controller of this.#inFlight) controller.abort();
  }
}

export function judge(answer: Answer): Verdict {
  const { status, body } = answer;
  const error = errorBody(body);
  if (status === 200) {
    if (body && typeof body === "object" && !Array.isArray(body)) return { kind: "ok", body: body as Record<string, unknown> };
    return { kind: "transient", reason: "HTTP 200 without this protocol's JSON" };
  }
  if (status === 401) {
    return { kind: "unauthorized", code: error?.code ?? "unauthorized", error: error?.error ?? "HTTP 401" };
  }
  // Only this protocol's own error bodies refuse or reset; a proxy's page is transient.
  if (error) {
    if (status === 403) return { kind: "forbidden", code: error.code, error: error.error };
    if ((status === 400 && REFUSING_400.has(error.code)) || status === 413) {
      return { kind: "refused", code: error.code, error: error.error };
    }
    if (status === 410) return { kind: "gone", code: error.code };
  }
  const reason = error ? `HTTP ${status} ${error.code}: ${error.error}` : `HTTP ${status}`;
  return { kind: "transient", reason, retryAfterMs: answer.retryAfterMs };
}

function errorBody(body: unknown): ErrorBody | undefined {
  const b = body as Partial<ErrorBody> | null;
  return typeof b?.code === "string" && typeof b.error === "string" ? { code: b.code, error: b.error } : undefined;
}

/** `Retry-After` is seconds or an HTTP date. */
function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
