// Local queries: every operator, the value order, ordering, limit and offset, the live queries'
// incremental upkeep and identity, and the indexes under every kind of change, against a naive
// filter and sort over the views.
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { QueryEngine, type IndexDeclarations } from "../src/engine.js";
import { LocalData } from "../src/local.js";
import { IndexedDbStore } from "../src/index.js";
import { QueryBuilder, type LiveQuery } from "../src/query.js";
import type { PendingMutation, ScopeState } from "../src/store.js";
import type { Mutator, ScopeView } from "../src/view.js";
import { FakeServer, until } from "./fake-server.js";
import { client, type Todo } from "./helpers.js";

type Row = { id: string; n?: unknown; s?: string; b?: boolean; g?: number };

const rowMutators: Record<string, Mutator> = {
  put: (tx, args) => {
    const { id, row } = args as { id: string; row: Row };
    tx.put("row", id, row);
  },
  del: (tx, args) => tx.delete("row", (args as { id: string }).id),
};

/** Local data of scopes with two engines on it: one with the indexes given, one without any. */
function harness(indexes: IndexDeclarations = {}, initialScopes = ["a", "b"]) {
  const engines: QueryEngine[] = [];
  const data = new LocalData(
    rowMutators,
    (scope, touched) => {
      for (const engine of engines) engine.changed(scope, touched);
    },
    () => {},
    () => true,
  );
  const scopes = [...initialScopes];
  /** Entity types scanned (`entries` read) through the indexed engine's views. */
  const scanned: string[] = [];
  const counted = (scope: string): ScopeView => {
    const view = data.scope(scope);
    return new Proxy(view, {
      get(target, property) {
        if (property === "entries") return (entity: string) => (scanned.push(entity), target.entries(entity));
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
  const indexed = new QueryEngine(counted, () => scopes, indexes);
  const plain = new QueryEngine((scope) => data.scope(scope), () => scopes, {});
  engines.push(indexed, plain);
  const cursors = new Map<string, number>();
  let seq = 0;
  const state = (scope: string): ScopeState => ({ cursor: cursors.get(scope) ?? 0, clientSeq: 0 });
  return {
    data,
    scopes,
    scanned,
    indexed,
    plain,
    q: (options: { scopes?: string[] } = {}, engine = indexed): QueryBuilder<Row> => QueryBuilder.create<Row>(engine, "row", options.scopes),
    /** The server's write, pulled. */
    pull(scope: string, id: string, row: Row | undefined): void {
      const cursor = (cursors.get(scope) ?? 0) + 1;
      cursors.set(scope, cursor);
      const change = row
        ? { cursor, scope, entity: "row", id, op: "update" as const, data: row, ts: "" }
        : { cursor, scope, entity: "row", id, op: "delete" as const, ts: "" };
      data.scope(scope).apply([change], state(scope));
      data.flush(scope);
    },
    /** A snapshot: the scope's rows replaced. */
    snapshot(scope: string, rows: Row[]): void {
      data.reload(
        scope,
        rows.map((row) => ({ scope, entity: "row", id: row.id, data: row })),
        state(scope),
      );
    },
    /** An optimistic write, queued. */
    write(scope: string, id: string, row: Row | undefined): PendingMutation {
      const mutation: PendingMutation = row ? { seq: ++seq, name: "put", args: { id, row }, scope } : { seq: ++seq, name: "del", args: { id }, scope };
      data.queued(mutation);
      return mutation;
    },
    /** The server's verdict on a queued write: refused, or applied (and later pulled). */
    answer(mutation: PendingMutation, ok: boolean): void {
      data.settled([{ mutation, ok, cursor: (cursors.get(mutation.scope) ?? 0) + 1, logId: undefined, duplicate: false }]);
    },
  };
}

// The reference: the value order and the operators written out plainly, over `view.list`.
const KIND = ["undefined", "null", "false", "true", "number", "string"];
function kind(v: unknown): number {
  const name = v === null ? "null" : typeof v === "boolean" ? String(v) : typeof v;
  const at = KIND.indexOf(name);
  return at < 0 ? KIND.length : at;
}
function order(a: unknown, b: unknown): number {
  if (kind(a) !== kind(b)) return kind(a) - kind(b);
  if (typeof a === "number" || typeof a === "string") return a < (b as typeof a) ? -1 : a > (b as typeof a) ? 1 : 0;
  return 0;
}
type RefCondition = [field: keyof Row, op: string, value: unknown];
function passes([field, op, value]: RefCondition, row: Row): boolean {
  const v = row[field];
  const sameKind = typeof v === typeof value && ["number", "string", "boolean"].includes(typeof v);
  switch (op) {
    case "=":
      return v === value;
    case "!=":
      return v !== value;
    case "<":
      return sameKind && (v as number) < (value as number);
    case "<=":
      return sameKind && (v as number) <= (value as number);
    case ">":
      return sameKind && (v as number) > (value as number);
    case ">=":
      return sameKind && (v as number) >= (value as number);
    case "in":
      return (value as unknown[]).includes(v);
    default:
      return typeof v === "string" && v.startsWith(value as string);
  }
}
interface RefQuery {
  scopes?: string[];
  where?: RefCondition[];
  filter?: (row: Row) => boolean;
  order?: [keyof Row, "asc" | "desc"][];
  offset?: number;
  limit?: number;
}
function build(h: ReturnType<typeof harness>, ref: RefQuery, engine: QueryEngine): QueryBuilder<Row> {
  let query = h.q(ref.scopes ? { scopes: ref.scopes } : {}, engine);
  for (const [field, op, value] of ref.where ?? []) query = query.where(field, op as "=", value as never);
  if (ref.filter) query = query.filter(ref.filter);
  for (const [field, direction] of ref.order ?? []) query = query.orderBy(field, direction);
  if (ref.offset !== undefined) query = query.offset(ref.offset);
  if (ref.limit !== undefined) query = query.limit(ref.limit);
  return query;
}
function naive(h: ReturnType<typeof harness>, ref: RefQuery): Row[] {
  const scopes = [...new Set(ref.scopes ?? h.scopes)].sort();
  const rows = scopes.flatMap((scope) => (h.data.scope(scope).list("row") as Row[]).map((row) => ({ scope, row })));
  const kept = rows.filter(({ row }) => (ref.where ?? []).every((c) => passes(c, row)) && (ref.filter?.(row) ?? true));
  kept.sort((x, y) => {
    for (const [field, direction] of ref.order ?? []) {
      const c = order(x.row[field], y.row[field]);
      if (c !== 0) return direction === "desc" ? -c : c;
    }
    return x.scope < y.scope ? -1 : x.scope > y.scope ? 1 : x.row.id < y.row.id ? -1 : x.row.id > y.row.id ? 1 : 0;
  });
  const from = ref.offset ?? 0;
  return kept.slice(from, ref.limit === undefined ? undefined : from + ref.limit).map(({ row }) => row);
}

const ids = (rows: readonly Row[]): string[] => rows.map((r) => r.id);

describe("operators and order", () => {
  const rows: Row[] = [
    { id: "1", n: 1, s: "apple", b: true },
    { id: "2", n: 2, s: "apricot", b: false },
    { id: "3", n: "2", s: "banana" },
    { id: "4", n: null, s: "Apple", b: false },
    { id: "5", s: "avocado", b: true },
    { id: "6", n: 3, s: "cherry", b: true },
    { id: "7", n: false },
    { id: "8", n: true, s: "" },
  ];
  const setup = () => {
    const h = harness();
    h.snapshot("a", rows);
    return h;
  };

  it("= and != compare values and kinds: 2 is not \"2\", null is not undefined", () => {
    const h = setup();
    expect(ids(h.q().where("n", "=", 2).run())).toEqual(["2"]);
    expect(ids(h.q().where("n", "=", "2").run())).toEqual(["3"]);
    expect(ids(h.q().where("n", "=", null).run())).toEqual(["4"]);
    expect(ids(h.q().where("n", "=", undefined).run())).toEqual(["5"]);
    expect(ids(h.q().where("n", "!=", 2).run())).toEqual(["1", "3", "4", "5", "6", "7", "8"]);
  });

  it("< <= > >= compare within a kind only: a number is never less than a string", () => {
    const h = setup();
    expect(ids(h.q().where("n", "<", 3).run())).toEqual(["1", "2"]);
    expect(ids(h.q().where("n", "<=", 3).run())).toEqual(["1", "2", "6"]);
    expect(ids(h.q().where("n", ">", 1).run())).toEqual(["2", "6"]);
    expect(ids(h.q().where("n", ">=", 1).run())).toEqual(["1", "2", "6"]);
    expect(ids(h.q().where("n", ">", "1").run())).toEqual(["3"]);
    expect(ids(h.q().where("n", "<", true).run())).toEqual(["7"]);
    expect(ids(h.q().where("n", "<", null).run())).toEqual([]);
    expect(ids(h.q().where("s", ">=", "b").run())).toEqual(["3", "6"]);
  });

  it("in matches any of the values (by kind too); startsWith only strings, case-sensitive", () => {
    const h = setup();
    expect(ids(h.q().where("n", "in", [1, "2", null]).run())).toEqual(["1", "3", "4"]);
    expect(ids(h.q().where("n", "in", []).run())).toEqual([]);
    expect(ids(h.q().where("s", "startsWith", "ap").run())).toEqual(["1", "2"]);
    expect(ids(h.q().where("s", "startsWith", "").run())).toEqual(["1", "2", "3", "4", "5", "6", "8"]);
    expect(ids(h.q().where("n", "startsWith", "2" as never).run())).toEqual(["3"]);
  });

  it("several conditions and a predicate all apply, the predicate after the operators", () => {
    const h = setup();
    const seen: string[] = [];
    const query = h.q().where("b", "=", true).where("s", "startsWith", "a").filter((row) => (seen.push(row.id), row.id !== "5"));
    expect(ids(query.run())).toEqual(["1"]);
    expect(seen.sort()).toEqual(["1", "5"]);
  });

  it("orders undefined < null < false < true < numbers < strings, strings by code unit", () => {
    const h = setup();
    expect(ids(h.q().orderBy("n").run())).toEqual(["5", "4", "7", "8", "1", "2", "6", "3"]);
    expect(ids(h.q().orderBy("n", "desc").run())).toEqual(["3", "6", "2", "1", "8", "7", "4", "5"]);
    expect(ids(h.q().where("s", "!=", undefined).orderBy("s").run())).toEqual(["8", "4", "1", "2", "5", "3", "6"]);
  });

  it("orders by several fields, ties by scope then id; offset and limit cut the ordered rows", () => {
    const h = setup();
    h.snapshot("b", [{ id: "0", b: true, s: "apple" }]);
    expect(ids(h.q().orderBy("b", "desc").orderBy("s").run())).toEqual(["1", "0", "5", "6", "4", "2", "7", "8", "3"]);
    const byB = h.q().where("b", "=", true).orderBy("b");
    expect(ids(byB.run())).toEqual(["1", "5", "6", "0"]); // scope a before b, then ids
    expect(ids(byB.offset(1).run())).toEqual(["5", "6", "0"]);
    expect(ids(byB.offset(1).limit(2).run())).toEqual(["5", "6"]);
    expect(ids(byB.limit(0).run())).toEqual([]);
    expect(ids(byB.offset(10).run())).toEqual([]);
    expect(ids(h.q({ scopes: ["b"] }).run())).toEqual(["0"]);
  });

  it("hands out the view's own frozen rows in a new frozen array", () => {
    const h = setup();
    const result = h.q().where("n", "=", 1).run();
    expect(result[0]).toBe(h.data.scope("a").get("row", "1"));
    expect(Object.isFrozen(result)).toBe(true);
    expect(Object.isFrozen(result[0])).toBe(true);
    expect(h.q().run()).not.toBe(h.q().run());
  });

  it("refuses bad input with a clear error", () => {
    const h = setup();
    expect(() => h.q().where("n", "~" as "=", 1)).toThrow(/unknown operator/);
    expect(() => h.q().where("n", "in", 1 as never)).toThrow(/must be an array/);
    expect(() => h.q().where("s", "startsWith", 1 as never)).toThrow(/must be a string/);
    expect(() => h.q().orderBy("n", "up" as "asc")).toThrow(/asc/);
    expect(() => h.q().limit(-1)).toThrow(RangeError);
    expect(() => h.q().offset(1.5)).toThrow(RangeError);
    expect(() => h.q().filter(1 as never)).toThrow(/function/);
    expect(() => new QueryEngine(() => h.data.scope("a"), () => [], { row: [[]] })).toThrow(/non-empty/);
  });

  it("keys are equal for equal queries and differ otherwise; a builder is immutable", () => {
    const h = setup();
    const base = h.q();
    const one = base.where("n", "=", 1).orderBy("s");
    expect(one.key).toBe(h.q().where("n", "=", 1).orderBy("s").key);
    expect(base.key).not.toBe(one.key);
    expect(ids(base.run())).toHaveLength(8);
    expect(h.q().where("n", "=", null).key).not.toBe(h.q().where("n", "=", undefined).key);
    expect(h.q().where("n", "=", 1).key).not.toBe(h.q().where("n", "=", "1").key);
    expect(h.q({ scopes: ["b", "a"] }).key).toBe(h.q({ scopes: ["a", "b", "a"] }).key);
    const f = (row: Row) => row.b === true;
    expect(h.q().filter(f).key).toBe(h.q().filter(f).key);
    expect(h.q().filter(f).key).not.toBe(h.q().filter((row) => row.b === true).key);
  });
});

describe("indexes", () => {
  it("answer a query whose equality filters and order match their leading fields without scanning", () => {
    const h = harness({ row: [["g", "s"]] });
    h.snapshot("a", [
      { id: "1", g: 1, s: "b" },
      { id: "2", g: 2, s: "a" },
      { id: "3", g: 1, s: "a" },
    ]);
    h.scanned.length = 0;
    expect(ids(h.q().where("g", "=", 1).orderBy("s").run())).toEqual(["3", "1"]);
    expect(ids(h.q().where("g", "=", 1).run())).toEqual(["1", "3"]); // the range, sorted by (scope, id)
    expect(ids(h.q().orderBy("g").orderBy("s").limit(2).run())).toEqual(["3", "1"]);
    expect(h.scanned).toEqual([]);
    expect(ids(h.q().orderBy("s").run())).toEqual(["2", "3", "1"]); // no index fits: a scan
    expect(h.scanned).toEqual(["row", "row"]); // both scopes
  });

  it("keep a live query's first result and upkeep from scanning too", () => {
    const h = harness({ row: [["b", "s"]] });
    h.snapshot("a", [
      { id: "1", b: false, s: "y" },
      { id: "2", b: true, s: "x" },
    ]);
    h.scanned.length = 0;
    const live = h.indexed.watch<Row>(h.q().where("b", "=", false).orderBy("s").spec, "k");
    live.subscribe(() => {});
    h.pull("a", "3", { id: "3", b: false, s: "a" });
    expect(ids(live.result)).toEqual(["3", "1"]);
    expect(h.scanned).toEqual([]);
  });
});

describe("live queries", () => {
  const rows = Array.from({ length: 20 }, (_, i): Row => ({ id: `r${String(i).padStart(2, "0")}`, g: i % 3, s: `s${String(19 - i).padStart(2, "0")}`, b: i % 2 === 0 }));

  it("start with the result, then notify once per change of it, keeping the array while nothing relevant changed", () => {
    const h = harness();
    h.snapshot("a", rows);
    const query = h.q().where("b", "=", true).orderBy("s").limit(3);
    const live = h.indexed.watch<Row>(query.spec, query.key);
    let calls = 0;
    live.subscribe(() => (calls += 1));
    const first = live.result;
    expect(ids(first)).toEqual(["r18", "r16", "r14"]);
    expect(live.result).toBe(first);

    h.pull("a", "r01", { ...rows[1]!, s: "s-changed" }); // does not match
    h.pull("a", "r02", { ...rows[2]!, g: 9 }); // matches, outside the window
    h.pull("b", "r01", { id: "r01", b: false, s: "a" }); // another scope, not a match
    h.snapshot("c", rows); // a scope not in the query
    h.write("a", "r03", { id: "r03", b: false }); // optimistic, not a match
    expect(calls).toBe(0);
    expect(live.result).toBe(first);

    h.pull("a", "r05", { id: "r05", b: true, s: "a" }); // enters first
    expect(calls).toBe(1);
    expect(ids(live.result)).toEqual(["r05", "r18", "r16"]);
    const second = live.result;
    expect(second[1]).toBe(first[0]); // unchanged rows: the same objects

    h.write("a", "r18", undefined); // optimistic delete: r14 moves in
    expect(calls).toBe(2);
    expect(ids(live.result)).toEqual(["r05", "r16", "r14"]);
  });

  it("are shared by equal keys while in use, and stop upkeep when the last listener leaves", () => {
    const h = harness();
    h.snapshot("a", rows);
    const one = h.indexed.watch<Row>(h.q().where("g", "=", 1).spec, h.q().where("g", "=", 1).key);
    const two = h.indexed.watch<Row>(h.q().where("g", "=", 1).spec, h.q().where("g", "=", 1).key);
    expect(two).toBe(one);
    let calls = 0;
    const off = one.subscribe(() => (calls += 1));
    h.pull("a", "r01", { id: "r01", g: 1, s: "new" });
    expect(calls).toBe(1);
    off();
    h.pull("a", "r04", { id: "r04", g: 2 });
    expect(calls).toBe(1);
    // Without listeners, reading recomputes: still right.
    expect(ids(one.result)).toEqual(naive(h, { where: [["g", "=", 1]] }).map((r) => r.id));
    const again = one.result;
    expect(one.result).toBe(again);
  });

  it("apply one changed row without reading the scope again; a snapshot reads it again", () => {
    const h = harness();
    h.snapshot("a", rows);
    let asked = 0;
    const query = h.q().filter((row) => (asked++, row.b === true)).orderBy("s").limit(3);
    const live = h.indexed.watch<Row>(query.spec, query.key);
    live.subscribe(() => {});
    expect(h.scanned).toEqual(["row", "row"]); // scopes a and b
    asked = 0;
    h.pull("a", "r05", { id: "r05", b: true, s: "a" });
    h.write("a", "r06", { id: "r06", b: true, s: "b" });
    h.pull("b", "r07", { id: "r07", b: true, s: "c" });
    expect(h.scanned).toEqual(["row", "row"]);
    expect(asked).toBe(3); // the predicate ran for the changed rows only
    expect(ids(live.result)).toEqual(["r05", "r06", "r07"]);
    h.snapshot("a", rows);
    expect(h.scanned).toEqual(["row", "row", "row"]); // scope a only
    expect(ids(live.result)).toEqual(["r06", "r07", "r18"]); // r06 still pending: shown over the snapshot
  });

  it("with a limit, keep the window right as its rows leave one by one and others come back", () => {
    const h = harness();
    h.snapshot("a", rows);
    const ref: RefQuery = { where: [["b", "=", true]], order: [["s", "asc"]], offset: 1, limit: 2 };
    const query = build(h, ref, h.indexed);
    const live = h.indexed.watch<Row>(query.spec, query.key);
    live.subscribe(() => {});
    for (const row of [...rows].reverse()) {
      h.pull("a", row.id, undefined);
      expect(live.result).toEqual(naive(h, ref));
    }
    for (const row of rows) {
      h.pull("a", row.id, row);
      expect(live.result).toEqual(naive(h, ref));
    }
    expect(ids(live.result)).toEqual(["r16", "r14"]);
  });

  it("a listener that throws does not stop the others", () => {
    const h = harness();
    h.snapshot("a", rows);
    const live = h.indexed.watch<Row>(h.q().spec, h.q().key);
    let heard = 0;
    const error = console.error;
    console.error = () => {};
    try {
      live.subscribe(() => {
        throw new Error("boom");
      });
      live.subscribe(() => (heard += 1));
      h.pull("a", "zz", { id: "zz" });
    } finally {
      console.error = error;
    }
    expect(heard).toBe(1);
  });
});

/** A deterministic random source (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("random operations: indexed, unindexed and live results equal a naive filter and sort", () => {
  const queries: RefQuery[] = [
    { where: [["g", "=", 1]], order: [["s", "asc"]], limit: 3 },
    { where: [["g", "=", 2]], limit: 4 },
    { where: [["b", "=", false]], order: [["s", "asc"], ["id", "desc"]], offset: 1, limit: 4 },
    { order: [["n", "desc"]] },
    { where: [["n", "in", [1, "1", null]]], order: [["g", "asc"]] },
    { where: [["s", "startsWith", "a"]], order: [["g", "desc"]], limit: 5 },
    { where: [["n", "<", 2], ["n", ">=", 0]] },
    { where: [["n", ">", false]], order: [["n", "asc"]], limit: 6 },
    { filter: (row) => (row.g ?? 0) % 2 === 0, order: [["g", "asc"], ["s", "asc"]], offset: 2 },
    { scopes: ["b"], where: [["g", "!=", 2]], order: [["s", "asc"]] },
    { limit: 5 },
    { order: [["b", "asc"]], limit: 7 },
    { order: [["g", "asc"], ["s", "asc"]], limit: 5 },
  ];
  const pick = <T,>(r: () => number, options: readonly T[]): T => options[Math.floor(r() * options.length)] as T;
  const N = [undefined, null, false, true, 0, 1, 2, "1", "a", "b"];
  const S = ["", "a", "ab", "b", "ba", "B", undefined];
  const randomRow = (r: () => number, id: string): Row => {
    const row: Row = { id };
    const n = pick(r, N);
    if (n !== undefined) row.n = n;
    const s = pick(r, S);
    if (s !== undefined) row.s = s;
    if (r() < 0.8) row.b = r() < 0.5;
    row.g = Math.floor(r() * 3);
    return row;
  };

  for (const seed of [1, 2, 3, 4, 5, 6]) {
    // Generous: the machine the tests run on may be busy; the test itself times nothing.
    it(`seed ${seed}`, { timeout: 60_000 }, () => {
      const r = random(seed);
      const h = harness({ row: [["g", "s"], ["b"], ["n"]] }, ["a", "b"]);
      const lives = queries.map((ref) => {
        const query = build(h, ref, h.indexed);
        const live = h.indexed.watch<Row>(query.spec, query.key);
        let notified = 0;
        live.subscribe(() => (notified += 1));
        return { ref, live, last: live.result, notifications: () => notified, changes: 0 };
      });
      const pending: PendingMutation[] = [];
      const allScopes = ["a", "b", "c"];
      for (let step = 0; step < 300; step++) {
        const scope = pick(r, allScopes);
        const id = `i${Math.floor(r() * 25)}`;
        const what = r();
        if (what < 0.35) h.pull(scope, id, randomRow(r, id));
        else if (what < 0.45) h.pull(scope, id, undefined);
        else if (what < 0.6) pending.push(h.write(scope, id, r() < 0.8 ? randomRow(r, id) : undefined));
        else if (what < 0.72 && pending.length > 0) {
          const mutation = pending.splice(Math.floor(r() * pending.length), 1)[0]!;
          const ok = r() < 0.7;
          h.answer(mutation, ok);
          // An applied write reaches the base by a pull later (a rebase: its replay stops then).
          if (ok && r() < 0.7) {
            const { id: mid, row } = mutation.args as { id: string; row?: Row };
            h.pull(mutation.scope, mid, row);
          }
        } else if (what < 0.8) h.snapshot(scope, Array.from({ length: Math.floor(r() * 8) }, (_, i) => randomRow(r, `i${i * 3}`)));
        else if (what < 0.84) h.data.drop(scope);
        else if (what < 0.9) {
          // A scope joins or leaves the client's.
          const at = h.scopes.indexOf(scope);
          if (at >= 0) h.scopes.splice(at, 1);
          else h.scopes.push(scope);
          h.indexed.scopesChanged();
          h.plain.scopesChanged();
        } else h.write(scope, id, { id, g: 1, s: "a", b: false, n: 1 });
        for (const entry of lives) {
          const expected = naive(h, entry.ref);
          expect(entry.live.result).toEqual(expected);
          expect(build(h, entry.ref, h.indexed).run()).toEqual(expected);
          expect(build(h, entry.ref, h.plain).run()).toEqual(expected);
          // The array is replaced exactly when the result changed, with one notification each time.
          const now = entry.live.result;
          const same = now.length === entry.last.length && now.every((row, i) => row === entry.last[i]);
          expect(now === entry.last).toBe(same);
          if (now !== entry.last) entry.changes += 1;
          entry.last = now;
          expect(entry.notifications()).toBe(entry.changes);
        }
      }
    });
  }
});

describe("through the client", () => {
  it("includes pending optimistic writes, follows the scopes added and removed, and shares live queries by key", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "a1", title: "b in a" }, "a");
    server.other("todo/create", { id: "b1", title: "a in b" }, "b");
    const c = client(server, { scopes: ["a"], indexes: { todo: [["completed", "title"]] } });
    await c.start();
    await c.pull();
    const query = c.query("todo").where("completed", "=", false).orderBy("title");
    const live: LiveQuery<Todo> = c.watch(query);
    expect(c.watch(c.query("todo").where("completed", "=", false).orderBy("title"))).toBe(live);
    const titles: string[][] = [];
    live.subscribe(() => titles.push(live.result.map((t) => t.title)));
    expect(live.result.map((t) => t.title)).toEqual(["b in a"]);

    await c.addScope("b");
    await c.pull();
    expect(titles.at(-1)).toEqual(["a in b", "b in a"]);

    server.offline = true;
    await c.mutate("todo/create", { id: "a2", title: "c pending" }, { scope: "a" });
    expect(titles.at(-1)).toEqual(["a in b", "b in a", "c pending"]);
    expect(query.run().map((t) => t.title)).toEqual(["a in b", "b in a", "c pending"]);
    await c.mutate("todo/toggle", { id: "a1" }, { scope: "a" });
    expect(titles.at(-1)).toEqual(["a in b", "c pending"]);

    await c.removeScope("b");
    expect(titles.at(-1)).toEqual(["c pending"]);
    expect(c.query("todo", { scopes: ["a"] }).run().map((t) => t.id)).toEqual(["a1", "a2"]);
    expect(() => c.watch({ key: "x" } as never)).toThrow(/this client's query/);
  });
});

describe("with IndexedDB", () => {
  it("an indexed query answers from the data and queue loaded at start, offline, after a reload", async () => {
    const server = new FakeServer();
    server.other("todo/create", { id: "s1", title: "b synced" });
    server.other("todo/create", { id: "s2", title: "a synced" });
    const name = `query-${Math.random()}`;
    const indexes = { todo: [["completed", "title"]] as const };
    const first = client(server, { store: await IndexedDbStore.open(name), indexes });
    await first.start();
    await first.pull();
    server.offline = true;
    await first.mutate("todo/create", { id: "p1", title: "c pending" });
    await first.mutate("todo/toggle", { id: "s2" });
    await first.close();

    const second = client(server, { store: await IndexedDbStore.open(name), indexes });
    const live = second.watch(second.query("todo").where("completed", "=", false).orderBy("title"));
    let calls = 0;
    live.subscribe(() => (calls += 1));
    await second.start();
    await until(() => live.result.length === 2);
    expect(live.result.map((t) => t.id)).toEqual(["s1", "p1"]);
    expect(second.query("todo").where("completed", "=", true).run().map((t) => t.id)).toEqual(["s2"]);
    expect(calls).toBeGreaterThan(0);
    await second.close();
    await IndexedDbStore.destroy(name);
  });
});
