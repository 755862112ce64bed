#!/usr/bin/env bash
# Pushes per second over HTTP: two todo release nodes on one fresh PostgreSQL database, wrk with
# 1 / 4 / 16 connections split over them (one client and scope per connection), against raw
# INSERT transactions of the same rows with pgbench at the same concurrency, alternated, ROUNDS
# rounds of SECONDS each. Prints one line per round and the medians.
#
#   benches/wrk/run.sh            # PGURL=postgres://postgres@127.0.0.1:5432 ROUNDS=3 SECONDS_EACH=5
set -euo pipefail
cd "$(dirname "$0")/../.."
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DB=${DB:-sync_wrk}
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_EACH:-5}
PORTS=(3101 3102)
HERE=benches/wrk

cargo build --release -p todo --quiet
TODO=${CARGO_TARGET_DIR:-target}/release/todo

psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -q "$PGURL/$DB" <<'SQL'
CREATE TABLE raw_entities (scope TEXT, entity TEXT, id TEXT, data TEXT,
                           PRIMARY KEY (scope, entity, id));
CREATE TABLE raw_changes (cursor BIGINT PRIMARY KEY, scope TEXT, entity TEXT, id TEXT, op TEXT,
                          data TEXT, ts BIGINT);
CREATE TABLE raw_clients (client_id TEXT PRIMARY KEY, seq BIGINT);
CREATE SEQUENCE raw_cursor;
SQL

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for port in "${PORTS[@]}"; do
  "$TODO" --addr "127.0.0.1:$port" --store "$PGURL/$DB" --auth none >"/tmp/wrk-todo-$port.log" 2>&1 &
  pids+=($!)
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break
    sleep 0.1
  done
done

# wrk against both nodes at once, N connections split over them; prints pushes/s.
engine() {
  local n=$1 half=$(( $1 / 2 )) out=()
  if (( n == 1 )); then
    out+=("$(PREFIX="r$2n${n}a" wrk -t1 -c1 -d"${SECS}s" -s $HERE/push.lua "http://127.0.0.1:${PORTS[0]}" | grep PUSHES)")
  else
    PREFIX="r$2n${n}a" wrk -t$half -c$half -d"${SECS}s" -s $HERE/push.lua "http://127.0.0.1:${PORTS[0]}" | grep PUSHES >/tmp/wrk-a &
    PREFIX="r$2n${n}b" wrk -t$half -c$half -d"${SECS}s" -s $HERE/push.lua "http://127.0.0.1:${PORTS[1]}" | grep PUSHES >/tmp/wrk-b
    wait
    out+=("$(cat /tmp/wrk-a)" "$(cat /tmp/wrk-b)")
  fi
  printf '%s\n' "${out[@]}" | awk '{n += $2; s = $3; f += $5} END {
    if (f > 0) { print "FAILED " f > "/dev/stderr" }; printf "%.0f\n", n / s }'
}

raw() {
  pgbench -n -f $HERE/raw.sql -c "$1" -j "$1" -T "$SECS" "$PGURL/$DB" 2>/dev/null |
    awk '/^tps/ {printf "%.0f\n", $3}'
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "uptime: $(uptime)"
declare -A E R
for n in 1 4 16; do
  for round in $(seq "$ROUNDS"); do
    e=$(engine "$n" "$round"); r=$(raw "$n")
    echo "n=$n round=$round engine=$e raw=$r"
    E[$n]+="$e "; R[$n]+="$r "
  done
done
echo "uptime: $(uptime)"
e1=$(echo ${E[1]} | tr ' ' '\n' | median)
for n in 1 4 16; do
  e=$(echo ${E[$n]} | tr ' ' '\n' | median); r=$(echo ${R[$n]} | tr ' ' '\n' | median)
  awk -v n="$n" -v e="$e" -v r="$r" -v e1="$e1" 'BEGIN {
    printf "connections %2d: engine %6d pushes/s (%.2fx one), raw %6d tx/s, engine/raw %.2f\n",
      n, e, e / e1, r, e / r }'
done
