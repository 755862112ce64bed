import { LiveType, type ClientFrame, type ErrorBody, type JoinPayload, type JoinReply, type Poke, type ServerFrame } from "./protocol.js";

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
  scopes: readonly string[];
  connect: LiveSocketFactory;
  token?: (() => string | undefined | Promise<string | undefined>) | undefined;
  heartbeatMs: number;
  /** The delay before reconnect attempt `attempt` (0-based). */
  backoff: (attempt: number) => number;
  /** A scope's latest cursor, from a JOIN's REPLY (with the log's id, 1.1) or a POKE. */
  onCursor: (scope: string, cursor: number, logId?: string) => void;
  /** The channel is open and joined (again). */
  onOpen: (reconnect: boolean) => void;
  onClose: () => void;
  onError: (code: string, error: string) => void;
}

const OPEN = 1;

/**
 * The live channel: a WebSocket that JOINs the client's scopes on every (re)connect, sends
 * heartbeats, reports the cursors of REPLY and POKE, and reconnects with backoff when it closes.
 */
export class LiveChannel {
  readonly #options: LiveOptions;
  #socket: LiveSocket | undefined;
  #ref = 0;
  #joinRef = 0;
  #attempt = 0;
  #opened = false;
  #stopped = false;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #reconnect: ReturnType<typeof setTimeout> | undefined;

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
    socket.onopen = () => void this.#join(socket);
    socket.onmessage = (event) => this.#receive(event.data);
    socket.onerror = () => {};
    socket.onclose = () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      clearInterval(this.#heartbeat);
      this.#options.onClose();
      this.#scheduleReconnect();
    };
  }

  async #join(socket: LiveSocket): Promise<void> {
    const token = await this.#options.token?.();
    if (this.#socket !== socket) return;
    const join: JoinPayload = { scopes: [...this.#options.scopes], ...(token === undefined ? {} : { token }) };
    this.#joinRef = this.#send(LiveType.JOIN, join);
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => this.#send(LiveType.HEARTBEAT, {}), this.#options.heartbeatMs);
  }

  #scheduleReconnect(): void {
    if (this.#stopped) return;
    const delay = this.#options.backoff(this.#attempt);
    this.#attempt += 1;
    this.#reconnect = setTimeout(() => this.#connect(), delay);
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
    const payload = message.payload ?? {};
    switch (message.type) {
      case LiveType.REPLY: {
        if (message.ref !== this.#joinRef) return;
        const reconnect = this.#opened;
        this.#opened = true;
        this.#attempt = 0;
        const { cursors, log_id } = payload as Partial<JoinReply>;
        const logId = typeof log_id === "string" ? log_id : undefined;
        if (cursors && typeof cursors === "object") {
          for (const [scope, cursor] of Object.entries(cursors as Record<string, unknown>)) {
            if (typeof cursor === "number") this.#options.onCursor(scope, cursor, logId);
          }
        }
        this.#options.onOpen(reconnect);
        return;
      }
      case LiveType.POKE: {
        const { scope, cursor } = payload as Partial<Poke>;
        if (typeof scope === "string" && typeof cursor === "number") this.#options.onCursor(scope, cursor);
        return;
      }
      case LiveType.ERROR: {
        const { code, error } = payload as Partial<ErrorBody>;
        this.#options.onError(String(code ?? "error"), String(error ?? ""));
        return;
      }
      default:
        return;
    }
  }
}
