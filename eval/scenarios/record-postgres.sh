#!/usr/bin/env bash
# Records the PostgreSQL cases in eval/cases/ from REAL faults against a throwaway PostgreSQL 15
# cluster (initdb in a temp dir as the postgres user, a free loopback port, pg_stat_statements),
# and writes each case's truth. Run as root on a quiet machine:
#   bash eval/scenarios/record-postgres.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin oncall >/dev/null
ONCALL=$PWD/target/release/oncall
OUT=$PWD/eval/cases
BIN=/usr/lib/postgresql/15/bin
PW=oncall-rec-pw
DIR=$(mktemp -d /tmp/oncall-rec-pg-XXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bg=()
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  for p in "${bg[@]:-}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
chown postgres: "$DIR"; echo "$PW" > "$DIR/pw"; chown postgres: "$DIR/pw"
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -N -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256 --pwfile="$DIR/pw" >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_preload_libraries = 'pg_stat_statements'
max_connections = 20
superuser_reserved_connections = 3
fsync = off
CONF
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
psql_() { as_pg psql -h "$DIR" -p "$PORT" -U postgres -qAt "$@"; }
psql_ -c "CREATE ROLE oncall LOGIN PASSWORD '$PW' IN ROLE pg_monitor, pg_read_all_data"
psql_ -c "CREATE DATABASE app"
psql_ -d app -c "CREATE EXTENSION pg_stat_statements"
export ONCALL_POSTGRES__APP__URL="postgres://oncall:$PW@127.0.0.1:$PORT/app"
export ONCALL_HOST__WINDOW_MS=500

truth() {
  python3 - "$@" <<'PY'
import json, sys
f, title, cat, comp, summary = sys.argv[1:6]
culprits = [c for c in sys.argv[6].split(",") if c]
stabilize = [s for s in sys.argv[7].split(",") if s]
distractors = sys.argv[8:]
c = json.load(open(f))
c["title"] = title
c["truth"] = {"category": cat, "component": comp or None, "summary": summary, "culprit_any": culprits,
              "distractors": distractors, "stabilize": stabilize, "must_not": ["host.signal_process"]}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
}

# 1. An unindexed lookup on a 1M-row table under load; a cheap query runs often beside it.
psql_ -d app -c "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_ref text NOT NULL, amount int NOT NULL); \
  INSERT INTO orders (customer_ref, amount) SELECT 'cust-' || (g % 50000), g % 1000 FROM generate_series(1, 1000000) g; ANALYZE orders"
printf '\\set k random(1, 50000)\nSELECT id, amount FROM orders WHERE customer_ref = '"'"'cust-'"'"' || :k;\n' > "$DIR/lookup.sql"
printf 'SELECT 1;\n' > "$DIR/ping.sql"; chown postgres: "$DIR"/*.sql
PGAPPNAME=checkout-api as_pg "$BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 2 -T 40 -f "$DIR/lookup.sql" app >/dev/null 2>&1 & bg+=($!)
PGAPPNAME=session-cache as_pg "$BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 1 -R 200 -T 40 -f "$DIR/ping.sql" app >/dev/null 2>&1 & bg+=($!)
sleep 3
$ONCALL record --out "$OUT/pg-slow-query-01.json" "checkout is slow since this morning" 2>/dev/null
kill "${bg[@]}" 2>/dev/null || true; wait 2>/dev/null || true; bg=()
truth "$OUT/pg-slow-query-01.json" "An unindexed lookup dominates the database" db.slow_query postgres:app \
  "SELECT ... FROM orders WHERE customer_ref = \$1 seq-scans 1M rows per call" orders "" \
  "the CPU is saturated by postgres backends doing the scans" "session-cache runs SELECT 1 far more often"

# 2. The same load after the index, throttled: a busy but healthy database.
psql_ -d app -c "CREATE INDEX orders_customer_ref ON orders (customer_ref)"
PGAPPNAME=checkout-api as_pg "$BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 2 -R 300 -T 40 -f "$DIR/lookup.sql" app >/dev/null 2>&1 & bg+=($!)
sleep 3
$ONCALL record --out "$OUT/none-pg-indexed-01.json" "checkout is slow since this morning" 2>/dev/null
kill "${bg[@]}" 2>/dev/null || true; wait 2>/dev/null || true; bg=()
truth "$OUT/none-pg-indexed-01.json" "The lookup is indexed: a busy, healthy database" none "" "300 lookups/s, each well under a millisecond" "" "" \
  "the statement still dominates statement time, but it is fast"

# 3. A session idle in transaction holds a row; two others queue behind it, one behind the other.
psql_ -d app -c "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO accounts VALUES (1, 100)"
( printf "SET application_name = 'billing-worker';\nBEGIN;\nUPDATE accounts SET balance = balance + 1 WHERE id = 1;\n"; sleep 60 ) | psql_ -d app >/dev/null 2>&1 & bg+=($!)
sleep 1
for i in 1 2; do
  PGAPPNAME=checkout-api psql_ -d app -c "UPDATE accounts SET balance = balance - 1 WHERE id = 1" >/dev/null 2>&1 & bg+=($!)
  sleep 1
done
sleep 2
holder=$(psql_ -d app -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'billing-worker'")
$ONCALL record --out "$OUT/pg-lock-chain-01.json" "checkout requests hang" 2>/dev/null
kill "${bg[@]}" 2>/dev/null || true; psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app' AND pid <> pg_backend_pid()" >/dev/null; wait 2>/dev/null || true; bg=()
truth "$OUT/pg-lock-chain-01.json" "A session idle in transaction blocks a chain of updates" db.lock_contention postgres:app \
  "billing-worker (pid $holder) sits idle in transaction holding a row of accounts; two updates queue behind it, the second behind the first" \
  "billing-worker,$holder" "postgres.terminate_backend,postgres.cancel_backend" "the first checkout-api update blocks the second but is itself a victim"

# 4. Connections opened up to the limit by one application.
for i in $(seq 1 16); do ( sleep 60 | PGAPPNAME=report-batch psql_ -d app >/dev/null 2>&1 ) & bg+=($!); done
sleep 3
$ONCALL record --out "$OUT/pg-connections-01.json" "new requests fail to get a database connection" 2>/dev/null
kill "${bg[@]}" 2>/dev/null || true; psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app' AND pid <> pg_backend_pid()" >/dev/null; wait 2>/dev/null || true; bg=()
truth "$OUT/pg-connections-01.json" "One application holds every connection" db.connection_exhaustion postgres:app \
  "report-batch holds 16 of the 17 usable connections" report-batch ""

# Derived from a public post-mortem, reproduced here: GoCardless, "Zero-downtime Postgres
# migrations - the hard parts": a migration's ALTER TABLE waits for its ACCESS EXCLUSIVE lock
# behind a long-running query, and every later query on the table queues behind the ALTER.
LOG=$(mktemp /tmp/changes-XXXX.jsonl)
source eval/scenarios/lib.sh
change 2 deploy payments-api "payments-api v512 (migration: add refunded_at to payments)" > "$LOG"
psql_ -d app -c "CREATE TABLE payments (id int PRIMARY KEY, amount int NOT NULL); INSERT INTO payments SELECT g, g FROM generate_series(1, 1000) g"
PGAPPNAME=analytics-export psql_ -d app -c "SELECT count(*), pg_sleep(60) FROM payments" >/dev/null 2>&1 & bg+=($!)
sleep 1
PGAPPNAME=migrations psql_ -d app -c "ALTER TABLE payments ADD COLUMN refunded_at timestamptz" >/dev/null 2>&1 & bg+=($!)
sleep 1
for i in 1 2 3 4; do PGAPPNAME=payments-api psql_ -d app -c "SELECT amount FROM payments WHERE id = $i" >/dev/null 2>&1 & bg+=($!); done
sleep 2
root=$(psql_ -d app -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'analytics-export'")
alter=$(psql_ -d app -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'migrations'")
ONCALL_CHANGES__FILE=$LOG $ONCALL record --out "$OUT/derived-gocardless-lock-queue.json" "the payments API stopped answering during the deploy" 2>/dev/null
kill "${bg[@]}" 2>/dev/null || true; psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app' AND pid <> pg_backend_pid()" >/dev/null; wait 2>/dev/null || true; bg=(); rm -f "$LOG"
truth "$OUT/derived-gocardless-lock-queue.json" "A migration waits for its lock behind a long query, and every query queues behind it" db.lock_contention postgres:app \
  "analytics-export (pid $root) runs a long query on payments; the migration's ALTER TABLE (pid $alter) waits for ACCESS EXCLUSIVE behind it, and every payments-api query waits behind the ALTER" \
  "analytics-export,$root,ALTER TABLE,migrations,$alter" "postgres.cancel_backend,postgres.terminate_backend" \
  "the ALTER TABLE blocks the API's queries but is itself waiting" "a payments-api deploy 2 min before (the migration belongs to it; rolling the code back does not release the lock)"
python3 - "$OUT/derived-gocardless-lock-queue.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["provenance"] = "derived:gocardless-blog-zero-downtime-postgres-migrations-the-hard-parts"
c["truth"]["must_not"].append("deploy.rollback"); json.dump(c, open(sys.argv[1], "w"), indent=2); open(sys.argv[1], "a").write("\n")
PY

# A pool of idle connections and a steady light load: busy, healthy.
for i in $(seq 1 8); do ( sleep 60 | PGAPPNAME=api-pool psql_ -d app >/dev/null 2>&1 ) & bg+=($!); done
PGAPPNAME=checkout-api as_pg "$BIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 2 -R 100 -T 40 -f "$DIR/lookup.sql" app >/dev/null 2>&1 & bg+=($!)
sleep 3
$ONCALL record --out "$OUT/none-pg-busy-01.json" "is the database keeping up with the sale traffic?" 2>/dev/null
kill "${bg[@]}" 2>/dev/null || true; psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app' AND pid <> pg_backend_pid()" >/dev/null; wait 2>/dev/null || true; bg=()
truth "$OUT/none-pg-busy-01.json" "A busy, healthy database: an idle pool and indexed lookups" none "" "8 idle pooled connections of 17 and 100 indexed lookups/s: busy, nothing wrong" "" "" \
  "eight idle connections from api-pool" "lookups dominate statement time, each fast"

# 5. A healthy database.
sleep 2
$ONCALL record --out "$OUT/none-pg-healthy-01.json" "routine check of the database before the release" 2>/dev/null
truth "$OUT/none-pg-healthy-01.json" "A healthy database" none "" "nothing is wrong" "" ""

# 6. The database is down.
as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null
$ONCALL record --out "$OUT/pg-down-01.json" "checkout returns errors: cannot reach the database" 2>/dev/null
truth "$OUT/pg-down-01.json" "The database is down" dependency.errors postgres:app "the PostgreSQL server stopped; connections are refused" app ""
echo "recorded the PostgreSQL cases in $OUT"
