import { NetworkError } from "./transport.js";

/** Why the client asks for a token: before its first request, or after the server refused one. */
export type AuthReason = "initial" | "unauthorized";

/** The app's `auth` option: the current bearer token, or null/undefined for none. */
export type AuthCallback = (reason: AuthReason) => string | null | undefined | Promise<string | null | undefined>;

/** A token as the app gave it, numbered so that a refusal names the token it refused. */
export interface Bearer {
  /** Undefined: no credentials. */
  readonly value: string | undefined;
  readonly generation: number;
  readonly reason: AuthReason;
}

/** The app's `auth` threw: counted like a network failure, retried with backoff. */
export class AuthFailed extends NetworkError {}

/**
 * The bearer token every request and JOIN carries. The app's `auth` is asked once, before the
 * first request, and again only after the server refused the current token: requests refused
 * together (a burst of 401s, a live ERROR) make one call, and callers wait for the call in flight
 * rather than starting another. Refusals of an older token than the current one are ignored: a
 * fresh one was asked for since.
 */
export class Credentials {
  #bearer: Bearer | undefined;
  #next: AuthReason = "initial";
  #generation = 0;
  /** Whether the server accepted the current token at least once. */
  #accepted = false;
  #asking: Promise<Bearer> | undefined;

  constructor(readonly auth: AuthCallback | undefined) {}

  /** The token to send, asking the app where there is none yet. */
  current(): Promise<Bearer> {
    if (this.#bearer) return Promise.resolve(this.#bearer);
    this.#asking ??= this.#ask().finally(() => (this.#asking = undefined));
    return this.#asking;
  }

  /** The server answered a request that carried `bearer` with anything but a 401. */
  accepted(bearer: Bearer): void {
    if (this.#bearer?.generation === bearer.generation) this.#accepted = true;
  }

  /**
   * The server refused `bearer` (a 401, a live ERROR `unauthorized`): the next request asks the app
   * for a fresh one. Answers true where a fresh token did not help: the refused one was fresh and
   * never accepted, or the app gives no tokens at all.
   */
  rejected(bearer: Bearer): boolean {
    if (this.#bearer?.generation !== bearer.generation) return false;
    const hopeless = !this.auth || (bearer.reason === "unauthorized" && !this.#accepted);
    this.#bearer = undefined;
    this.#next = "unauthorized";
    return hopeless;
  }

  async #ask(): Promise<Bearer> {
    const reason = this.#next;
    let value: string | null | undefined;
    try {
      value = await this.auth?.(reason);
    } catch (error) {
      throw new AuthFailed(`auth("${reason}") threw: ${String(error)}`);
    }
    this.#generation += 1;
    this.#accepted = false;
    this.#bearer = { value: typeof value === "string" && value !== "" ? value : undefined, generation: this.#generation, reason };
    return this.#bearer;
  }
}
