import type { Bearer, Credentials } from "./auth.js";
import { LiveType, type ClientFrame, type JoinPayload, type JoinReply, type LiveError, type Poke, type ServerFrame } from "./protocol.js";

/** The part of the WebSocket API the live channel uses. */
export interface LiveSocket {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type LiveSocketFactory = (url: string) => LiveSocket;

export interface LiveOptions {
  url: string;
  connect: LiveSocketFactory;
  /** The token JOINs carry; a fresh one is asked for after an ERROR `unauthorized`. */
  credentials: Credentials;
  heartbeatMs: number;
  /** The delay before reconnect attempt `attempt` (0-based), and before JOINing refused scopes again. */
  backoff: (attempt: number) => number;
  /** A scope's latest cursor, from a JOIN's REPLY (with the log's id, 1.1) or a POKE. */
  onCursor: (scope: string, cursor: number, logId?: string) => void;
  /** The channel is open and joined (again). */
  onOpen: (reconnect: boolean) => void;
  onClose: () => void;
  /** The server refused these scopes (ERROR `forbidden` naming them) and does not poke them. */
  onForbidden: (scopes: string[], code: string, error: string) => void;
  onError: (code: string, error: string) => void;
}

const OPEN = 1;

/** A JOIN waiting for its REPLY: what it asked for, with which token. */
interface Join {
  scopes: readonly string[];
  bearer: Bearer;
  /** The connection's first JOIN, whose REPLY opens the channel. */
  first: boolean;
}

/**
 * The live channel: a WebSocket that JOINs the scopes asked for on every (re)connect, and JOINs or
 * LEAVEs them as they are added or removed; sends heartbeats; reports the cursors of REPLY and
 * POKE; and reconnects with backoff when it closes. Scopes the server refuses (an ERROR naming
 * them, PROTOCOL 1.1 with identities) are dropped where `forbidden`, and JOINed again with a fresh
 * token, after a backoff delay, where `unauthorized`.
 */
export class LiveChannel {
  readonly #options: LiveOptions;
  /** What the channel JOINs. */
  readonly #scopes = new Set<string>();
  readonly #joins = new Map<number, Join>();
  /** The token of the connection's last JOIN: what an unprompted ERROR `unauthorized` refuses. */
  #bearer: Bearer | undefined;
  #socket: LiveSocket | undefined;
  /** Whether the connection's first JOIN was sent: later scopes get a JOIN of their own. */
  #joined = false;
  #ref = 0;
  #attempt = 0;
  #opened = false;
  #stopped = false;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #reconnect: ReturnType<typeof setTimeout> | undefined;
  /** Scopes refused `unauthorized`, to JOIN again after `#rejoinTimer`. */
  readonly #rejoin = new Set<string>();
  #rejoinAttempt = 0;
  #rejoinTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: LiveOptions) {
    this.#options = options;
  }

  get connected(): boolean {
    return this.#socket?.readyState === OPEN;
  }

  start(): void {
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#reconnect);
    clearTimeout(this.#rejoinTimer);
    clearInterval(this.#heartbeat);
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) {
      socket.onclose = null;
      socket.close(1000, "client stopped");
    }
  }

  /** Reconnects now where a reconnect is waiting (e.g. the browser came back online). */
  wake(): void {
    if (this.#stopped || this.#socket) return;
    clearTimeout(this.#reconnect);
    this.#attempt = 0;
    this.#connect();
  }

  /** JOINs these scopes too, now where the channel is open, else on connecting. */
  join(scopes: Iterable<string>): void {
    const added = [...new Set(scopes)].filter((scope) => !this.#scopes.has(scope));
    for (const scope of added) this.#scopes.add(scope);
    const socket = this.#socket;
    if (socket && this.#joined && added.length > 0) void this.#join(socket, added);
  }

  /** LEAVEs these scopes. */
  leave(scopes: Iterable<string>): void {
    const left = [...new Set(scopes)].filter((scope) => this.#scopes.delete(scope));
    for (const scope of left) this.#rejoin.delete(scope);
    if (this.#joined && left.length > 0) this.#send(LiveType.LEAVE, { scopes: left });
  }

  #connect(): void {
    if (this.#stopped) return;
    let socket: LiveSocket;
    try {
      socket = this.#options.connect(this.#options.url);
    } catch {
      this.#scheduleReconnect();
      return;
    }
    this.#socket = socket;
    this.#joined = false;
    this.#joins.clear();
    // Re-JOINs waiting for a fresh token are dropped: the connection's first JOIN names every scope.
    clearTimeout(this.#rejoinTimer);
    this.#rejoinTimer = undefined;
    this.#rejoin.clear();
    socket.onopen = () => void this.#join(socket, undefined);
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onerror = () => {};
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#joined = false;
      clearInterval(this.#heartbeat);
      this.#options.onClose();
      this.#scheduleReconnect();
    };
  }

  /** JOINs `scopes`, or, for the connection's first JOIN (undefined), every scope. */
  async #join(socket: LiveSocket, scopes: readonly string[] | undefined): Promise<void> {
    let bearer: Bearer;
    try {
      bearer = await this.#options.credentials.current();
    } catch (error) {
      // The app's auth threw: as a failed connection, retried with backoff.
      if (this.#socket !== socket) return;
      this.#options.onError("auth", String(error));
      socket.close(1000, "no credentials");
      return;
    }
    if (this.#socket !== socket) return;
    const first = scopes === undefined;
    const names = first ? [...this.#scopes] : scopes.filter((scope) => this.#scopes.has(scope));
    if (!first && names.length === 0) return;
    const ref = this.#send(LiveType.JOIN, { scopes: names, ...(bearer.value === undefined ? {} : { token: bearer.value }) });
    this.#joins.set(ref, { scopes: names, bearer, first });
    this.#bearer = bearer;
    if (!first) return;
    this.#joined = true;
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => this.#send(LiveType.HEARTBEAT, {}), this.#options.heartbeatMs);
  }

  #scheduleReconnect(): void {
    if (this.#stopped) return;
    const delay = this.#options.backoff(this.#attempt);
    this.#attempt += 1;
    this.#reconnect = setTimeout(() => this.#connect(), delay);
  }

  /** JOINs the scopes refused `unauthorized` again, after a backoff delay, with a fresh token. */
  #rejoinLater(scopes: readonly string[]): void {
    for (const scope of scopes) if (this.#scopes.has(scope)) this.#rejoin.add(scope);
    if (this.#rejoinTimer !== undefined || this.#rejoin.size === 0) return;
    const socket = this.#socket;
    this.#rejoinTimer = setTimeout(() => {
      this.#rejoinTimer = undefined;
      const names = [...this.#rejoin];
      this.#rejoin.clear();
      if (socket && socket === this.#socket) void this.#join(socket, names);
    }, this.#options.backoff(this.#rejoinAttempt++));
  }

  #send(type: number, payload: JoinPayload | Record<string, never>): number {
    this.#ref = (this.#ref % 0xffff_ffff) + 1;
    const socket = this.#socket;
    const frame: ClientFrame = { type, ref: this.#ref, payload };
    if (socket?.readyState === OPEN) socket.send(JSON.stringify(frame));
    return this.#ref;
  }

  #receive(data: unknown): void {
    if (typeof data !== "string") return;
    let message: ServerFrame<unknown> | null;
    try {
      message = JSON.parse(data) as ServerFrame<unknown> | null;
    } catch {
      return;
    }
    if (!message) return;
    // Typed as this server sends them, and checked all the same: another server may differ.
    const payload = (message.payload ?? {}) as Record<string, unknown>;
    switch (message.type) {
      case LiveType.REPLY: {
        const join = this.#joins.get(message.ref);
        if (!join) return;
        this.#joins.delete(message.ref);
        const { cursors, log_id } = payload as Partial<JoinReply>;
        const logId = typeof log_id === "string" ? log_id : undefined;
        const joined = cursors && typeof cursors === "object" ? (cursors as Record<string, unknown>) : {};
        // Every scope joined: the token works, so the next refusal backs off from the start again.
        if (join.scopes.every((scope) => Object.hasOwn(joined, scope))) {
          this.#rejoinAttempt = 0;
          this.#options.credentials.accepted(join.bearer);
        }
        for (const [scope, cursor] of Object.entries(joined)) {
          if (typeof cursor === "number") this.#options.onCursor(scope, cursor, logId);
        }
        if (!join.first) return;
        const reconnect = this.#opened;
        this.#opened = true;
        this.#attempt = 0;
        this.#options.onOpen(reconnect);
        return;
      }
      case LiveType.POKE: {
        const { scope, cursor } = payload as Partial<Poke>;
        if (typeof scope === "string" && typeof cursor === "number") this.#options.onCursor(scope, cursor);
        return;
      }
      case LiveType.ERROR: {
        const refusal = payload as Partial<LiveError>;
        const code = String(refusal.code ?? "error");
        const error = String(refusal.error ?? "");
        const scopes = Array.isArray(refusal.scopes) ? refusal.scopes.filter((s): s is string => typeof s === "string") : undefined;
        // The scopes the server did not join or has left (1.1 with identities); older servers name none.
        if (scopes && code === "forbidden") {
          const refused = scopes.filter((scope) => this.#scopes.delete(scope));
          if (refused.length > 0) this.#options.onForbidden(refused, code, error);
          return;
        }
        if (scopes && code === "unauthorized") {
          const bearer = this.#joins.get(message.ref)?.bearer ?? this.#bearer;
          if (bearer) this.#options.credentials.rejected(bearer);
          this.#rejoinLater(scopes);
          return;
        }
        this.#options.onError(code, error);
        return;
      }
      default:
        return;
    }
  }
}
