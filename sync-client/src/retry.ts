export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

export interface RetryEvent {
  what: "push" | "pull";
  attempt: number;
  delayMs: number;
  reason: string;
}

/** Sleeps that `wake()` cuts short: every retry delay, so that "the network is back" retries now. */
export class Sleeper {
  readonly #waiting = new Set<() => void>();
  #stopped = false;

  sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiting.add(wake);
    });
  }

  wake(): void {
    for (const wake of [...this.#waiting]) wake();
  }

  /** Wakes every sleeper, and makes every later sleep return at once (the client closes). */
  stop(): void {
    this.#stopped = true;
    this.wake();
  }
}

/**
 * The retry policy of one loop (push or pull): attempt n waits between half and all of
 * min(maxMs, initialMs·2^n), or longer where the server asked (Retry-After); a success resets it.
 */
export class Retry {
  #attempt = 0;

  constructor(
    readonly what: "push" | "pull",
    readonly options: BackoffOptions,
    readonly random: () => number,
    readonly sleeper: Sleeper,
    readonly onRetry: (event: RetryEvent) => void,
  ) {}

  succeeded(): void {
    this.#attempt = 0;
  }

  /** Waits before the next attempt. */
  async failed(reason: string, atLeastMs = 0): Promise<void> {
    const attempt = this.#attempt++;
    const delayMs = Math.max(backoff(this.options, this.random, attempt), atLeastMs);
    this.onRetry({ what: this.what, attempt, delayMs, reason });
    await this.sleeper.sleep(delayMs);
  }
}

export function backoff(options: BackoffOptions, random: () => number, attempt: number): number {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}
