#!/usr/bin/env bash
# What sharing one PostgreSQL transaction among G pushes could gain: pgbench, C clients, prepared
# statements, on a fresh database of the script's own. Each client runs, per transaction, the
# statements a one-mutation push of the engine sends today (the client's advisory lock and its
# `client_seq` read per push, then one write statement shaped like the backend's `WRITE_PUTS`
# carrying all G pushes, `COMMIT`, and the look at the visibility horizon), against the raw
# transaction of the same rows (`benches/wrk/raw.sql`'s three INSERTs). G = 1 is the engine's
# design today; G > 1 is a group commit that does not exist yet. Prints pushes/s per round and
# the medians.
#
#   benches/pg_group/run.sh        # PGURL=postgres://postgres@127.0.0.1:5432 ROUNDS=3 SECONDS_EACH=5
#
# SHAPES lists "CLIENTS G" pairs, comma-separated (default: 16 pushes in flight, below); the first
# is the one the others are compared with.
set -euo pipefail
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DB=${DB:-sync_pg_group}
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_EACH:-5}
# 16 pushes in flight: 16 clients of one push each (the engine today), 8 of two, 4 of four, 2 of
# eight; against one push in flight (one client, G = 1) and raw transactions at 1 and 16 clients.
IFS=, read -ra SHAPES <<<"${SHAPES:-1 1,16 1,8 2,4 4,2 8}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -q "$PGURL/$DB" <<'SQL'
CREATE TABLE g_entities (scope TEXT, entity TEXT, id TEXT, data TEXT,
                         PRIMARY KEY (scope, entity, id));
CREATE TABLE g_changes (cursor BIGINT PRIMARY KEY, scope TEXT, entity TEXT, id TEXT, op TEXT,
                        data TEXT, ts BIGINT, xid BIGINT);
CREATE INDEX ON g_changes (scope, cursor);
CREATE TABLE g_clients (client_id TEXT PRIMARY KEY, seq BIGINT, xid BIGINT, prev_seq BIGINT);
CREATE SEQUENCE g_cursor;
SQL

cat >"$WORK/raw.sql" <<'SQL'
\set c random(1, 1000000000)
BEGIN;
INSERT INTO g_entities (scope, entity, id, data) VALUES ('rs' || :c, 'item', 'ri' || :c, '{"id":"x"}')
  ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data;
INSERT INTO g_changes (cursor, scope, entity, id, op, data, ts, xid)
  VALUES (nextval('g_cursor'), 'rs' || :c, 'item', 'ri' || :c, 'create', '{"id":"x"}', 0, 0);
INSERT INTO g_clients (client_id, seq, xid) VALUES ('rc' || :c, 1, 0)
  ON CONFLICT (client_id) DO UPDATE SET seq = EXCLUDED.seq;
COMMIT;
SQL

# The transaction of G pushes, each in a scope and as a client of its own.
group_script() {
  local g=$1 i values="" keys=""
  for i in $(seq "$g"); do echo "\\set c$i random(1, 1000000000)"; done
  echo "BEGIN;"
  for i in $(seq "$g"); do
    echo "SELECT pg_advisory_xact_lock(:c$i);"
    echo "SELECT seq FROM g_clients WHERE client_id = 'c' || :c$i;"
    values+="${values:+, }(('c' || :c$i), ('s' || :c$i), ('i' || :c$i), $i)"
    keys+="${keys:+, }(0 - :c$i::bigint)"
  done
  cat <<SQL
WITH held AS MATERIALIZED (
  SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(ARRAY[$keys]::bigint[]) AS k ORDER BY k) keys
), locked AS MATERIALIZED (SELECT pg_advisory_lock(1) FROM held
), taken AS MATERIALIZED (
  SELECT pg_current_xact_id()::text::bigint AS xid,
         setval('g_cursor', nextval('g_cursor') + $g - 1) AS last FROM locked
), released AS MATERIALIZED (SELECT xid, last, pg_advisory_unlock(1) FROM taken
), v(cl, sc, id, ord) AS (VALUES $values
), seqs AS (
  INSERT INTO g_clients AS cl (client_id, seq, xid) SELECT v.cl, 1, t.xid FROM released t, v
  ON CONFLICT (client_id) DO UPDATE SET seq = GREATEST(cl.seq, EXCLUDED.seq), xid = EXCLUDED.xid
), put AS (
  INSERT INTO g_entities AS e (scope, entity, id, data) SELECT v.sc, 'item', v.id, '{"id":"x"}' FROM released t, v
  ON CONFLICT (scope, entity, id) DO UPDATE SET data = EXCLUDED.data
  RETURNING e.scope, e.id, NOT (e.xmax = 0) AS existed
), logged AS (
  INSERT INTO g_changes (cursor, scope, entity, id, op, data, ts, xid)
  SELECT t.last - $g + v.ord, v.sc, 'item', v.id, CASE WHEN p.existed THEN 'update' ELSE 'create' END,
         '{"id":"x"}', 0, t.xid
  FROM released t, v LEFT JOIN put p ON p.scope = v.sc AND p.id = v.id
) SELECT xid, last FROM released;
SQL
  echo "COMMIT;"
  echo "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint;"
}
for shape in "${SHAPES[@]}"; do
  read -r _ g <<<"$shape"
  [[ -f "$WORK/g$g.sql" ]] || group_script "$g" >"$WORK/g$g.sql"
done

# Transactions per second of one script with N clients.
tps() {
  pgbench -n -M prepared -c "$2" -j 2 -T "$SECS" -f "$WORK/$1.sql" "$PGURL/$DB" 2>/dev/null |
    awk '/^tps/ {printf "%.0f\n", $3}'
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "uptime: $(uptime)"
declare -A P
for round in $(seq "$ROUNDS"); do
  line="round $round:"
  for n in 1 16; do
    raw=$(tps raw "$n")
    P[raw,$n]+="$raw "
    line+=" raw x$n $raw tx/s,"
  done
  for shape in "${SHAPES[@]}"; do
    read -r n g <<<"$shape"
    pushes=$(( $(tps "g$g" "$n") * g ))
    P[$n,$g]+="$pushes "
    line+=" ${n}x$g $pushes pushes/s,"
  done
  echo "${line%,}"
done
echo "uptime: $(uptime)"
m() { echo ${P[$1]} | tr ' ' '\n' | median; }
read -r n1 g1 <<<"${SHAPES[0]}"
raw1=$(m raw,1) raw16=$(m raw,16) one=$(m "$n1,$g1")
echo "medians: raw $raw1 tx/s on one client, $raw16 on 16 ($(awk -v a="$raw16" -v b="$raw1" 'BEGIN {printf "%.2f", a / b}')x)"
for shape in "${SHAPES[@]}"; do
  read -r n g <<<"$shape"
  awk -v n="$n" -v g="$g" -v p="$(m "$n,$g")" -v one="$one" -v raw="$raw16" 'BEGIN {
    printf "  %2d clients x %d pushes per transaction: %6d pushes/s, %.2fx the first shape, %.2fx raw at 16\n",
      n, g, p, p / one, p / raw }'
done
