/**
 * Which scopes a tab syncs. Each tab's app has its own scopes (`own`, in order); the tabs of a
 * store tell each other theirs, because one of them (the leader) pulls and JOINs for all, so it
 * syncs the union. A scope the server refused (403, ERROR `forbidden`) is left out of it until a
 * tab adds it again, or until no tab holds it any more.
 */
export class Scopes {
  /** The other tabs' own scopes, by tab. */
  readonly #tabs = new Map<string, ReadonlySet<string>>();
  readonly #forbidden = new Set<string>();

  /** `own` is the client's own list, changed in place: it outlives a session. */
  constructor(readonly own: string[]) {}

  /** Whether this tab's app syncs the scope. */
  owns(scope: string): boolean {
    return this.own.includes(scope);
  }

  /** Whether another tab's app syncs it. */
  elsewhere(scope: string): boolean {
    for (const scopes of this.#tabs.values()) if (scopes.has(scope)) return true;
    return false;
  }

  forbidden(scope: string): boolean {
    return this.#forbidden.has(scope);
  }

  /** What this tab pulls and JOINs while it leads. */
  synced(): string[] {
    const all = new Set(this.own);
    for (const scopes of this.#tabs.values()) for (const scope of scopes) all.add(scope);
    return [...all].filter((scope) => !this.#forbidden.has(scope));
  }

  syncs(scope: string): boolean {
    return !this.#forbidden.has(scope) && (this.owns(scope) || this.elsewhere(scope));
  }

  /** Adds a scope to this tab's own (at the end); a refusal of it is forgotten: it is tried again. */
  add(scope: string): void {
    if (!this.owns(scope)) this.own.push(scope);
    this.#forbidden.delete(scope);
  }

  remove(scope: string): void {
    const at = this.own.indexOf(scope);
    if (at >= 0) this.own.splice(at, 1);
    this.#prune();
  }

  /** Another tab's own scopes (none: it closed); those in `retry` are tried again though refused. */
  setTab(tab: string, scopes: readonly string[], retry: readonly string[] = []): void {
    if (scopes.length > 0) this.#tabs.set(tab, new Set(scopes));
    else this.#tabs.delete(tab);
    for (const scope of retry) this.#forbidden.delete(scope);
    this.#prune();
  }

  /** The server refused the scope; false where it was refused already. */
  forbid(scope: string): boolean {
    if (this.#forbidden.has(scope)) return false;
    this.#forbidden.add(scope);
    return true;
  }

  /** A refusal of a scope no tab holds any more is forgotten: adding it again tries again. */
  #prune(): void {
    for (const scope of this.#forbidden) if (!this.owns(scope) && !this.elsewhere(scope)) this.#forbidden.delete(scope);
  }
}
