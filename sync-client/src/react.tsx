// `@syncengine/client/react`: React bindings for the sync client. A separate entry point, so that
// the core package never loads React (a peer dependency, optional for those who do not use this).
import { createContext, useCallback, useContext, useMemo, useRef, useSyncExternalStore, type DependencyList, type ReactNode } from "react";
import type { SyncClient } from "./client.js";
import type { Query } from "./query.js";
import type { SyncStatus } from "./status.js";
import type { AnyEntities, AnyMutations, EntityMap, MutationMap, Queued } from "./types.js";
import type { Frozen } from "./view.js";

type AnyClient = SyncClient<AnyMutations, AnyEntities>;

/**
 * Declare the app's generated types here once, and the hooks are typed without type arguments:
 *
 * ```ts
 * declare module "@syncengine/client/react" {
 *   interface Register { mutations: Mutations; entities: Entities }
 * }
 * ```
 */
export interface Register {}
/** The registered mutations, or any mutation where none are. */
export type RegisteredMutations = Register extends { mutations: infer M extends MutationMap<M> } ? M : AnyMutations;
/** The registered entities, or any entity where none are. */
export type RegisteredEntities = Register extends { entities: infer E extends EntityMap<E> } ? E : AnyEntities;

const ClientContext = createContext<AnyClient | undefined>(undefined);

/**
 * Hands `client` to the hooks below it. It does not start the client (that opens IndexedDB, which
 * a server-side render must not touch): start it in the browser, before rendering or in an effect.
 */
export function SyncProvider<M extends MutationMap<M>, E extends EntityMap<E>>(props: {
  client: SyncClient<M, E>;
  children?: ReactNode;
}): ReactNode {
  return <ClientContext.Provider value={props.client as unknown as AnyClient}>{props.children}</ClientContext.Provider>;
}

/** The client of the nearest `SyncProvider`; throws where there is none (a mistake in the tree). */
export function useSyncClient<M extends MutationMap<M> = RegisteredMutations, E extends EntityMap<E> = RegisteredEntities>(): SyncClient<M, E> {
  const client = useContext(ClientContext);
  if (!client) throw new Error("useSyncClient: no <SyncProvider client={...}> above this component");
  return client as unknown as SyncClient<M, E>;
}

/** What the server renders, and what a hook returns before hydration: one shared empty result. */
const EMPTY: readonly never[] = Object.freeze([]);
const noServerEntity = (): undefined => undefined;

/**
 * A live query's result, re-rendering the component only when the result changes (the same array
 * object otherwise). `build` runs again when `deps` change; the live query is kept while its
 * `key` stays the same, so an equal query built anew does not re-subscribe. Put what a `filter`
 * predicate closes over in `deps`: a predicate counts in the key by its identity.
 */
export function useQuery<T, M extends MutationMap<M> = RegisteredMutations, E extends EntityMap<E> = RegisteredEntities>(
  build: (client: SyncClient<M, E>) => Query<T>,
  deps: DependencyList,
): readonly Frozen<T>[] {
  const client = useSyncClient<M, E>();
  // `deps` are what `build` reads, as with useMemo.
  const query = useMemo(() => build(client), [client, ...deps]);
  // The query of the first render with this key: a later equal one reads the same live query.
  const live = useMemo(() => client.watch(query), [client, query.key]);
  const subscribe = useCallback((changed: () => void) => live.subscribe(changed), [live]);
  const snapshot = useCallback(() => live.result, [live]);
  return useSyncExternalStore(subscribe, snapshot, () => EMPTY);
}

/**
 * One entity of a scope (the client's first scope by default), or undefined while there is none;
 * the same frozen object until it changes. Typed by the `Register`ed entities.
 */
export function useEntity<K extends keyof RegisteredEntities & string>(
  entity: K,
  id: string,
  options: { scope?: string } = {},
): Frozen<RegisteredEntities[K]> | undefined {
  const client = useSyncClient<RegisteredMutations, RegisteredEntities>();
  const scope = options.scope;
  const read = useCallback(() => client.view(scope).get(entity, id), [client, scope, entity, id]);
  const subscribe = useCallback(
    (changed: () => void) => client.subscribe((view) => view.get(entity, id), changed, scope === undefined ? {} : { scope }),
    [client, scope, entity, id],
  );
  return useSyncExternalStore(subscribe, read, noServerEntity);
}

/** `client.mutate`, typed by the app's mutations; the same function while the client is. */
export function useMutate<M extends MutationMap<M> = RegisteredMutations>(): <N extends keyof M & string>(
  name: N,
  args: M[N]["args"],
  options?: { scope?: string },
) => Promise<Queued<M[N]["result"]>> {
  const client = useSyncClient<M>();
  return useCallback((name, args, options) => client.mutate(name, args, options), [client]);
}

/** The sync state a UI shows: a status badge, "offline", a spinner, the changes waiting to sync. */
export interface SyncState {
  status: SyncStatus;
  /** Connected: `online` or `syncing`. */
  online: boolean;
  /** A push or pull is under way. */
  syncing: boolean;
  /** Mutations not yet answered by the server (from every tab of the store). */
  pending: number;
}

const SERVER_STATE: SyncState = Object.freeze({ status: "offline", online: false, syncing: false, pending: 0 });
const serverState = (): SyncState => SERVER_STATE;

/** The client's status and pending count, re-rendering on the `status` and `pending` events. */
export function useSyncStatus(): SyncState {
  const client = useSyncClient();
  const last = useRef<SyncState>(SERVER_STATE);
  const subscribe = useCallback(
    (changed: () => void) => {
      const offStatus = client.on("status", changed);
      const offPending = client.on("pending", changed);
      return () => {
        offStatus();
        offPending();
      };
    },
    [client],
  );
  // The same object while nothing changed, as useSyncExternalStore requires of a snapshot.
  const read = useCallback((): SyncState => {
    const status = client.status;
    const pending = client.pendingCount;
    if (last.current.status !== status || last.current.pending !== pending) {
      last.current = Object.freeze({ status, online: status === "online" || status === "syncing", syncing: status === "syncing", pending });
    }
    return last.current;
  }, [client]);
  return useSyncExternalStore(subscribe, read, serverState);
}
