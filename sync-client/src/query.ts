import { equal, type Frozen } from "./view.js";

/** The fields of an entity type (any string where the type is not known). */
export type Field<T> = unknown extends T ? string : keyof T & string;
/** The fields whose values are strings (or optional strings). */
export type StringField<T> = unknown extends T
  ? string
  : { [F in keyof T & string]-?: [Exclude<T[F], undefined>] extends [string] ? F : never }[keyof T & string];
/** The type of a field's values. */
export type FieldValue<T, F extends string> = unknown extends T ? unknown : F extends keyof T ? T[F] : never;

export type ComparisonOp = "=" | "!=" | "<" | "<=" | ">" | ">=";
export type Direction = "asc" | "desc";

/** An immutable query builder over one entity type: every method returns a new Query. */
export interface Query<T> {
  where<F extends Field<T>>(field: F, op: ComparisonOp, value: FieldValue<T, F>): Query<T>;
  where<F extends Field<T>>(field: F, op: "in", values: readonly FieldValue<T, F>[]): Query<T>;
  where<F extends StringField<T>>(field: F, op: "startsWith", prefix: string): Query<T>;
  /**
   * The escape hatch; runs after the operators, on each row it is asked about, and again only when
   * that row changes: it must depend on the row alone.
   */
  filter(predicate: (row: Frozen<T>) => boolean): Query<T>;
  /** Several calls: sort by the first, then the next. Ties end in (scope, id) order. */
  orderBy<F extends Field<T>>(field: F, direction?: Direction): Query<T>;
  limit(count: number): Query<T>;
  offset(count: number): Query<T>;
  /** The result now (not live): a new frozen array. */
  run(): readonly Frozen<T>[];
  /** A string that is equal for equal queries (a predicate counts by its identity). Hooks memoize on it. */
  readonly key: string;
}

/** A query kept up to date while it has listeners; `client.watch` returns the same object for equal keys while in use. */
export interface LiveQuery<T> {
  /** The current result: the SAME array object until the result changes (useSyncExternalStore's getSnapshot). */
  readonly result: readonly Frozen<T>[];
  /** `listener` runs after every change of `result` (not before: no initial call). Returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
}

export type Op = ComparisonOp | "in" | "startsWith";
const OPS: ReadonlySet<string> = new Set<Op>(["=", "!=", "<", "<=", ">", ">=", "in", "startsWith"]);

export interface Condition {
  readonly field: string;
  readonly op: Op;
  readonly value: unknown;
}

export interface Order {
  readonly field: string;
  readonly direction: Direction;
}

/** What a query asks for; the engine answers it. */
export interface QuerySpec {
  readonly entity: string;
  /** Sorted and distinct; undefined: the client's scopes, whichever they are at the time. */
  readonly scopes: readonly string[] | undefined;
  readonly conditions: readonly Condition[];
  readonly predicates: readonly ((row: never) => boolean)[];
  readonly order: readonly Order[];
  readonly offset: number;
  /** Infinity: no limit. */
  readonly limit: number;
}

/** What runs queries: the client's query engine. */
export interface QueryHost {
  run(spec: QuerySpec): readonly unknown[];
}

/** A row of a scope, as the engine keeps it in sorted arrays. */
export interface Entry {
  readonly scope: string;
  readonly id: string;
  readonly row: unknown;
}

/** The rank of a value's kind in the order: undefined < null < false < true < numbers < strings < the rest. */
function rank(value: unknown): number {
  switch (typeof value) {
    case "undefined":
      return 0;
    case "boolean":
      return value ? 3 : 2;
    case "number":
      return 4;
    case "string":
      return 5;
    default:
      return value === null ? 1 : 6;
  }
}

/** The order of field values: by kind first, numbers and strings as `<` does; objects and arrays tie. */
export function compareValues(a: unknown, b: unknown): number {
  if (a === b) return 0;
  const ta = typeof a;
  if (ta === typeof b && (ta === "string" || ta === "number")) return (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;
  const ra = rank(a);
  const rb = rank(b);
  return ra === rb ? 0 : ra < rb ? -1 : 1;
}

/** The kind a comparison may compare within: booleans, numbers or strings (else none). */
function comparable(a: unknown, b: unknown): boolean {
  const ta = typeof a;
  return ta === typeof b && (ta === "number" || ta === "string" || ta === "boolean");
}

function same(a: unknown, b: unknown): boolean {
  return a === b || equal(a, b);
}

/** Whether a field's value passes one condition; comparisons between different kinds are false. */
function test(condition: Condition, value: unknown): boolean {
  const { op, value: operand } = condition;
  switch (op) {
    case "=":
      return same(value, operand);
    case "!=":
      return !same(value, operand);
    case "<":
      return comparable(value, operand) && (value as number) < (operand as number);
    case "<=":
      return comparable(value, operand) && (value as number) <= (operand as number);
    case ">":
      return comparable(value, operand) && (value as number) > (operand as number);
    case ">=":
      return comparable(value, operand) && (value as number) >= (operand as number);
    case "in":
      return (operand as readonly unknown[]).some((option) => same(value, option));
    case "startsWith":
      return typeof value === "string" && value.startsWith(operand as string);
  }
}

/** One condition as a test of a row, with the common cases (a primitive operand) made direct. */
function compile(condition: Condition): (row: Record<string, unknown>) => boolean {
  const { field, op, value } = condition;
  const primitive = value === null || typeof value !== "object";
  if (op === "=" && primitive) return (row) => row[field] === value;
  if (op === "!=" && primitive) return (row) => row[field] !== value;
  if (op === "in" && (value as readonly unknown[]).every((v) => v === null || typeof v !== "object")) {
    const options = new Set(value as readonly unknown[]);
    return (row) => options.has(row[field]);
  }
  return (row) => test(condition, row[field]);
}

const matchers = new WeakMap<QuerySpec, (row: unknown) => boolean>();

/** Whether a row passes every condition and predicate of the spec (compiled once per spec). */
export function matcher(spec: QuerySpec): (row: unknown) => boolean {
  let match = matchers.get(spec);
  if (match) return match;
  const tests = spec.conditions.map(compile);
  const predicates = spec.predicates as readonly ((row: unknown) => boolean)[];
  match = (row) => {
    const record = (row ?? {}) as Record<string, unknown>;
    for (const t of tests) if (!t(record)) return false;
    for (const predicate of predicates) if (!predicate(row)) return false;
    return true;
  };
  matchers.set(spec, match);
  return match;
}

/** Ties: scope, then id. */
function tie(a: Entry, b: Entry): number {
  if (a.scope !== b.scope) return a.scope < b.scope ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The comparator of a spec's order, ties by (scope, id); one field (the common case) made direct. */
export function comparator(order: readonly Order[]): (a: Entry, b: Entry) => number {
  const first = order[0];
  if (order.length === 1 && first) {
    const field = first.field;
    const sign = first.direction === "desc" ? -1 : 1;
    return (a, b) => {
      const x = (a.row as Record<string, unknown>)[field];
      const y = (b.row as Record<string, unknown>)[field];
      if (typeof x === "string" && typeof y === "string") {
        if (x < y) return -sign;
        if (x > y) return sign;
      } else if (x !== y) {
        const c = compareValues(x, y);
        if (c !== 0) return c * sign;
      }
      return tie(a, b);
    };
  }
  const fields = order.map((o) => o.field);
  const signs = order.map((o) => (o.direction === "desc" ? -1 : 1));
  return (a, b) => {
    for (let i = 0; i < fields.length; i++) {
      const field = fields[i] as string;
      const x = (a.row as Record<string, unknown>)[field];
      const y = (b.row as Record<string, unknown>)[field];
      if (x === y) continue;
      const c = compareValues(x, y);
      if (c !== 0) return c * (signs[i] as number);
    }
    return tie(a, b);
  };
}

/** Numbers for predicates, so that a key names a predicate by its identity. */
const predicateIds = new WeakMap<object, number>();
let nextPredicateId = 0;
function predicateId(predicate: object): number {
  let id = predicateIds.get(predicate);
  if (id === undefined) predicateIds.set(predicate, (id = ++nextPredicateId));
  return id;
}

/** A JSON form of a value that tells undefined apart from null. */
function encode(value: unknown): unknown {
  return value === undefined ? ["u"] : ["v", value];
}

export function keyOf(spec: QuerySpec): string {
  return JSON.stringify([
    spec.entity,
    spec.scopes ?? null,
    spec.conditions.map((c) => [c.field, c.op, c.op === "in" ? (c.value as unknown[]).map(encode) : encode(c.value)]),
    spec.predicates.map(predicateId),
    spec.order.map((o) => [o.field, o.direction]),
    spec.offset,
    spec.limit === Infinity ? null : spec.limit,
  ]);
}

function count(what: string, n: unknown, infinite: boolean): number {
  if (typeof n !== "number" || !(Number.isInteger(n) || (infinite && n === Infinity)) || n < 0) {
    throw new RangeError(`${what} must be a non-negative integer, not ${String(n)}`);
  }
  return n;
}

function fieldName(field: unknown): string {
  if (typeof field !== "string") throw new TypeError(`a query field must be a string, not ${typeof field}`);
  return field;
}

/** The query builder: each method checks its input and returns a new builder with a new spec. */
export class QueryBuilder<T> implements Query<T> {
  constructor(
    readonly host: QueryHost,
    readonly spec: QuerySpec,
  ) {
    Object.freeze(this);
  }

  static create<T>(host: QueryHost, entity: string, scopes: readonly string[] | undefined): QueryBuilder<T> {
    if (typeof entity !== "string") throw new TypeError("query(entity): the entity type must be a string");
    if (scopes !== undefined && (!Array.isArray(scopes) || scopes.some((s) => typeof s !== "string"))) {
      throw new TypeError("query(entity, { scopes }): scopes must be an array of strings");
    }
    return new QueryBuilder<T>(host, {
      entity,
      scopes: scopes === undefined ? undefined : [...new Set(scopes)].sort(),
      conditions: [],
      predicates: [],
      order: [],
      offset: 0,
      limit: Infinity,
    });
  }

  #with(change: Partial<QuerySpec>): QueryBuilder<T> {
    return new QueryBuilder<T>(this.host, { ...this.spec, ...change });
  }

  where(field: string, op: Op, value: unknown): QueryBuilder<T> {
    const name = fieldName(field);
    if (!OPS.has(op)) throw new TypeError(`where: unknown operator ${JSON.stringify(op)} (one of ${[...OPS].join(" ")})`);
    if (op === "in" && !Array.isArray(value)) throw new TypeError(`where("${name}", "in", values): values must be an array`);
    if (op === "startsWith" && typeof value !== "string") throw new TypeError(`where("${name}", "startsWith", prefix): the prefix must be a string`);
    const operand = op === "in" ? Object.freeze([...(value as unknown[])]) : value;
    return this.#with({ conditions: [...this.spec.conditions, { field: name, op, value: operand }] });
  }

  filter(predicate: (row: Frozen<T>) => boolean): QueryBuilder<T> {
    if (typeof predicate !== "function") throw new TypeError("filter(predicate): the predicate must be a function");
    return this.#with({ predicates: [...this.spec.predicates, predicate as (row: never) => boolean] });
  }

  orderBy(field: string, direction: Direction = "asc"): QueryBuilder<T> {
    const name = fieldName(field);
    if (direction !== "asc" && direction !== "desc") throw new TypeError(`orderBy("${name}", direction): "asc" or "desc", not ${String(direction)}`);
    return this.#with({ order: [...this.spec.order, { field: name, direction }] });
  }

  limit(n: number): QueryBuilder<T> {
    return this.#with({ limit: count("limit", n, true) });
  }

  offset(n: number): QueryBuilder<T> {
    return this.#with({ offset: count("offset", n, false) });
  }

  run(): readonly Frozen<T>[] {
    return this.host.run(this.spec) as readonly Frozen<T>[];
  }

  get key(): string {
    return keyOf(this.spec);
  }
}

/** Whether two results hold the same rows in the same order. */
export function sameRows(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
