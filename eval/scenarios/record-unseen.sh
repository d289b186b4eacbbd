#!/usr/bin/env bash
# Records the `unseen-*` and `none-unseen-*` cases: REAL faults from generators unlike oncall's own
# (python, node, java and shell programs, process pools, workers that rename themselves, a copied
# binary under a long name, a memory cgroup, a tmpfs out of inodes, low-rate packet loss, and a
# separate PostgreSQL cluster with another database and schema), and writes each case's truth.
# The generators are in eval/scenarios/generators/; each stops by itself at a deadline, prints a
# `ready pid=...` line once its fault is in place, and is killed here by its pid afterwards.
#
# Run as root on a quiet machine (the cases mount a tmpfs, create memory cgroups and start a
# throwaway PostgreSQL 15 cluster):
#   bash eval/scenarios/record-unseen.sh                       # every case but the opt-in one
#   bash eval/scenarios/record-unseen.sh unseen-cpu none-unseen-pg   # cases whose id contains one
#   OUT=/tmp/try bash eval/scenarios/record-unseen.sh unseen-cpu-java  # elsewhere than eval/cases
#   bash eval/scenarios/record-unseen.sh --old-news            # ... and unseen-pg-old-oom-lock-chain
#   bash eval/scenarios/record-unseen.sh --list                # the case ids
#
# unseen-pg-old-oom-lock-chain is opt-in (--old-news) and always recorded LAST: it OOM-kills a
# process in a memory cgroup of its own, waits OLD_NEWS_WAIT seconds (150) and then records a live
# lock chain. The kill stays in the kernel log, and so in every host snapshot on this machine, for
# thresholds.memory.oom_lookback_s (15 min): record every other case (and run the host tests)
# before it, or 15 minutes after it. Run it once.
# DEADLINE (90) is every generator's own deadline, in seconds. TRIAGE_LOG=DIR also saves each
# case's live answer (oncall triage --json) in DIR, to see what the reasoner said. NO_BUILD=1 uses
# the binaries in target/release as they are. Before each case the script waits (QUIET_WAIT s at
# most, 1200) for the host to be under 15% busy with no OOM kill in the kernel log from the last
# 16 min, so that other work stays out of the recordings.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-eval/cases}
DEADLINE=${DEADLINE:-90}
OLD_NEWS_WAIT=${OLD_NEWS_WAIT:-150}
GEN=$ROOT/eval/scenarios/generators

CASES=(
  unseen-cpu-long-name unseen-cpu-python-pool unseen-cpu-java unseen-cpu-node unseen-cpu-renamed-workers
  unseen-mem-leak-python unseen-mem-leak-node unseen-mem-cgroup-limit
  unseen-disk-io-writers unseen-disk-io-runqueue unseen-fd-exhaustion unseen-inode-exhaustion unseen-net-loss
  none-unseen-python-half-busy none-unseen-large-stable-rss none-unseen-many-fds none-unseen-net-lowrate
  none-unseen-java-idle-heap none-unseen-light-writer
  unseen-pg-lock-chain unseen-pg-slow-query unseen-pg-connections none-unseen-pg-indexed none-unseen-pg-idle-pool
  unseen-pg-old-oom-lock-chain
)
OLD_NEWS=0
SELECT=()
for a in "$@"; do
  case "$a" in
    --old-news) OLD_NEWS=1 ;;
    --list) printf '%s\n' "${CASES[@]}"; exit 0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; exit 0 ;;
    -*) echo "unknown option $a (see --help)" >&2; exit 2 ;;
    *) SELECT+=("$a") ;;
  esac
done
# want ID: whether the case was selected (no substring given: every case).
want() {
  [ "$1" = unseen-pg-old-oom-lock-chain ] && [ "$OLD_NEWS" != 1 ] && return 1
  [ ${#SELECT[@]} -eq 0 ] && return 0
  local s; for s in "${SELECT[@]}"; do [[ "$1" == *"$s"* ]] && return 0; done
  return 1
}
selected=(); for c in "${CASES[@]}"; do want "$c" && selected+=("$c"); done
if [ ${#selected[@]} -eq 0 ]; then echo "no case id matches: ${SELECT[*]:-} (--list names them)" >&2; exit 2; fi
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }

[ -n "${NO_BUILD:-}" ] || cargo build --release --bin oncall --bin oncall-fault >/dev/null
ONCALL=$ROOT/target/release/oncall
FAULT=$ROOT/target/release/oncall-fault
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/oncall-unseen-XXXX)    # renamed copies of the generators, their logs
IODIR=$(mktemp -d /var/tmp/oncall-unseen-XXXX) # the disk writers' files (on the root disk)
mkdir -p "$WORK/bin"
pids=()     # every process started here (generators, their workers, pgbench)
MNT=        # the tmpfs of the inode case
CGS=()      # memory cgroups created here
PGDIR= PGBIN=/usr/lib/postgresql/15/bin

kill_pids() {
  local p
  for p in "${pids[@]:-}"; do [ -z "$p" ] || kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]:-}"; do [ -z "$p" ] || kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
cleanup() {
  kill_pids
  local cg p
  for cg in "${CGS[@]:-}"; do
    [ -n "$cg" ] || continue
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    sleep 0.2; rmdir "$cg" 2>/dev/null || true
  done
  [ -z "$MNT" ] || { umount -l "$MNT" 2>/dev/null; rmdir "$MNT" 2>/dev/null; } || true
  if [ -n "$PGDIR" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
  fi
  rm -rf "$WORK" "$IODIR"
  true
}
trap cleanup EXIT

n=0
# gen CMD...: starts a generator in the background, waits for its `ready` line (60 s at most),
# records its pid and the pids it names (workers=a,b,...), and sets READY to the line.
gen() {
  n=$((n + 1))
  local log=$WORK/gen-$n
  "$@" >"$log.out" 2>"$log.err" &
  local pid=$! i
  pids+=("$pid")
  for i in $(seq 1 600); do
    READY=$(grep -m1 '^ready' "$log.out" 2>/dev/null || true)
    if [ -n "$READY" ]; then
      local w; w=$(sed -n 's/.* workers=\([0-9,]*\).*/\1/p' <<<"$READY")
      [ -n "$w" ] && pids+=(${w//,/ })
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "generator did not get ready: $*" >&2; cat "$log.err" >&2; return 1
}
# field NAME: a key=value field of the last ready line.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$READY"; }
# as_prog NAME FILE: a copy of FILE named NAME in $WORK/bin (the program's name on this host).
as_prog() { cp "$2" "$WORK/bin/$1"; chmod +x "$WORK/bin/$1"; echo "$WORK/bin/$1"; }

# rec ID REPORT: records the case with the current settings.
rec() {
  echo "recording $1" >&2
  "$ONCALL" record --out "$OUT/$1.json" "$2" 2>"$WORK/$1.record.log" || { cat "$WORK/$1.record.log" >&2; return 1; }
  # TRIAGE_LOG=DIR (for trying the generators): also the live answer, in DIR/<id>.json.
  if [ -n "${TRIAGE_LOG:-}" ]; then
    mkdir -p "$TRIAGE_LOG"; "$ONCALL" triage --json -q "$2" >"$TRIAGE_LOG/$1.json" 2>/dev/null || true
  fi
}

# truth ID TITLE CATEGORY COMPONENT SUMMARY CULPRITS STABILIZE MUST_NOT [DISTRACTOR...]
# CULPRITS, STABILIZE and MUST_NOT are lists separated by `|` (empty: none).
truth() {
  python3 - "$OUT/$1.json" "${@:2}" <<'PY'
import json, sys
f, title, cat, comp, summary, culprits, stabilize, must_not = sys.argv[1:9]
split = lambda s: [x for x in s.split("|") if x]
c = json.load(open(f))
c["title"] = title
c["truth"] = {"category": cat, "component": comp or None, "summary": summary, "culprit_any": split(culprits),
              "distractors": sys.argv[9:], "stabilize": split(stabilize), "must_not": split(must_not)}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
  echo "  -> $OUT/$1.json: $3 ${4:-}" >&2
}
HOST_STOP="host.signal_process"
NO_PG="postgres.terminate_backend|postgres.cancel_backend"
NO_ACTION="host.signal_process|postgres.terminate_backend|postgres.cancel_backend"

# The device that holds /var/tmp (the disk I/O cases' writers), as the disk: vda, not vda1.
disk_of_var_tmp() {
  local src parent
  src=$(findmnt -no SOURCE -T /var/tmp | sed 's/\[.*//')
  parent=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
  basename "${parent:-$src}"
}
# memory_cgroup NAME LIMIT: creates a memory cgroup (v1, else v2) and sets CG to its directory
# (empty when this machine cannot). Not in a subshell: it records the cgroup for the cleanup.
memory_cgroup() {
  local cg
  CG=
  if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    cg=/sys/fs/cgroup/memory/$1
    mkdir -p "$cg" 2>/dev/null && echo "$2" > "$cg/memory.limit_in_bytes" 2>/dev/null || return 0
  elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cg=/sys/fs/cgroup/$1
    mkdir -p "$cg" 2>/dev/null && echo "$2" > "$cg/memory.max" 2>/dev/null || return 0
  else
    return 0
  fi
  CGS+=("$cg"); CG=$cg
}
netloss_available() { "$FAULT" netloss --help >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Host faults
# ---------------------------------------------------------------------------------------------

case_unseen-cpu-long-name() {
  # A copied binary under a 31-character name: the kernel's comm is cut to `inventory-recon`.
  local exe; exe=$(as_prog inventory-reconciliation-worker "$FAULT")
  for i in 1 2 3; do gen "$exe" --seconds "$DEADLINE" cpu --threads 1; done
  sleep 2
  rec "$1" "the stock levels page takes forever to load since a few minutes"
  kill_pids
  truth "$1" "Three processes of a program with a long name take more than every core" host.cpu_saturation cpu \
    "three inventory-reconciliation-worker processes (comm cut to inventory-recon) busy-loop one thread each on 2 cores: 1.5 runnable threads per core" \
    "inventory-reconciliation-worker|$exe" "$HOST_STOP" "postgres.terminate_backend"
}

case_unseen-cpu-python-pool() {
  local py; py=$(as_prog fraud_score_batch.py "$GEN/busy_pool.py")
  gen python3 "$py" --workers 4 --seconds "$DEADLINE"
  sleep 2
  rec "$1" "card payments are slow to get approved since about ten minutes"
  kill_pids
  truth "$1" "A python multiprocessing pool busy-loops on more workers than cores" host.cpu_saturation cpu \
    "fraud_score_batch.py runs a pool of 4 busy python worker processes on 2 cores (their comm is python3)" \
    "fraud_score_batch.py|fraud_score_batch" "$HOST_STOP" "postgres.terminate_backend"
}

case_unseen-cpu-java() {
  local cls=$WORK/classes
  mkdir -p "$cls"; javac -d "$cls" "$GEN/java/com/acme/billing/InvoiceRenderer.java"
  gen java -cp "$cls" com.acme.billing.InvoiceRenderer 4 "$DEADLINE"
  sleep 2
  rec "$1" "invoice PDFs take minutes to come out instead of seconds"
  kill_pids
  truth "$1" "A JVM runs more busy threads than cores" host.cpu_saturation cpu \
    "java com.acme.billing.InvoiceRenderer runs 4 busy render threads on 2 cores (the process is just java)" \
    "com.acme.billing.InvoiceRenderer|InvoiceRenderer" "$HOST_STOP" "postgres.terminate_backend"
}

case_unseen-cpu-node() {
  local js; js=$(as_prog price-indexer.js "$GEN/busy_workers.js")
  gen node "$js" 4 "$DEADLINE"
  sleep 2
  rec "$1" "product search answers slowly since the last half hour"
  kill_pids
  truth "$1" "A node process spins on worker threads" host.cpu_saturation cpu \
    "node price-indexer.js runs 4 busy worker_threads on 2 cores" \
    "price-indexer.js|price-indexer" "$HOST_STOP" "postgres.terminate_backend"
}

case_unseen-cpu-renamed-workers() {
  local py; py=$(as_prog geo_tile_prerender.py "$GEN/busy_pool.py")
  gen python3 "$py" --workers 4 --rename wrk --seconds "$DEADLINE"
  sleep 2
  rec "$1" "map tiles load slowly for everyone since a few minutes"
  kill_pids
  truth "$1" "Pool workers that renamed themselves busy-loop on every core" host.cpu_saturation cpu \
    "geo_tile_prerender.py forks 4 busy workers that rename themselves wrk-0..wrk-3 (/proc/self/comm) on 2 cores" \
    "geo_tile_prerender.py|geo_tile_prerender" "$HOST_STOP" "postgres.terminate_backend"
}

case_unseen-mem-leak-python() {
  local py; py=$(as_prog clickstream_sessionizer.py "$GEN/leak.py")
  gen python3 "$py" --rate-mib-per-s 40 --max-mib 3000 --seconds "$DEADLINE"
  sleep 3
  rec "$1" "the sessionization lag keeps creeping up since this morning"
  kill_pids
  truth "$1" "A python process leaks steadily while the host still has plenty free" host.memory_pressure memory \
    "clickstream_sessionizer.py grows ~40 MiB/s (bytearrays kept and written); no pressure yet, but at that rate it takes the host's free memory within minutes" \
    "clickstream_sessionizer.py|clickstream_sessionizer" "$HOST_STOP" "postgres.terminate_backend" \
    "the host has most of its memory free right now"
}

case_unseen-mem-leak-node() {
  local js; js=$(as_prog recommendation-feature-store-sync.js "$GEN/leak.js")
  gen node "$js" 30 3000 "$DEADLINE"
  sleep 3
  rec "$1" "recommendations are getting staler and the sync keeps falling behind"
  kill_pids
  truth "$1" "A node process with a long script name keeps every buffer it allocates" host.memory_pressure memory \
    "node recommendation-feature-store-sync.js grows ~30 MiB/s (Buffers kept in an array); no pressure yet" \
    "recommendation-feature-store-sync.js|recommendation-feature-store-sync" "$HOST_STOP" "postgres.terminate_backend" \
    "the host has most of its memory free right now"
}

case_unseen-mem-cgroup-limit() {
  local cg py
  memory_cgroup oncall-docs-preview 1G; cg=$CG
  if [ -z "$cg" ]; then echo "skipped: $1 (cannot create a memory cgroup on this machine)" >&2; return 0; fi
  py=$(as_prog pdf_preview_renderer.py "$GEN/leak.py")
  # Growth stops at 800 MiB, below the 1 GiB limit: no OOM kill (it would pollute the kernel log).
  gen sh -c "echo \$\$ > $cg/cgroup.procs && exec python3 $py --rate-mib-per-s 40 --max-mib 800 --seconds $DEADLINE"
  sleep 3
  rec "$1" "document previews started failing for some customers"
  kill_pids
  truth "$1" "A leak inside a memory cgroup heads for the cgroup's limit, far below the host's memory" host.memory_pressure memory \
    "pdf_preview_renderer.py grows ~40 MiB/s inside the memory cgroup oncall-docs-preview, limited to 1 GiB: it reaches the limit (and an OOM kill) in about 20 s, while the host has 20+ GiB free" \
    "pdf_preview_renderer.py|pdf_preview_renderer" "$HOST_STOP" "postgres.terminate_backend" \
    "the host itself has plenty of free memory"
}

case_unseen-disk-io-writers() {
  local py cpu disk
  py=$(as_prog wal_shipper.py "$GEN/dsync_writer.py")
  cpu=$(as_prog metrics_rollup.py "$GEN/busy_pool.py")
  disk=$(disk_of_var_tmp)
  for i in 1 2 3 4; do gen python3 "$py" --path "$IODIR" --mib 128 --seconds "$DEADLINE"; done
  gen python3 "$cpu" --workers 1 --seconds "$DEADLINE"
  sleep 3
  rec "$1" "saving an order takes several seconds since the afternoon"
  kill_pids
  truth "$1" "Four synchronous writer processes keep the disk busy" host.disk_io_saturation "disk:$disk" \
    "four wal_shipper.py processes rewrite their files with 1 MiB O_DSYNC writes on $disk: the device is busy all the time" \
    "wal_shipper.py|wal_shipper" "$HOST_STOP" "postgres.terminate_backend" \
    "metrics_rollup.py keeps one of two cores busy (busy, not saturated)"
}

case_unseen-disk-io-runqueue() {
  local dd sh disk
  dd=$(as_prog segment-flusher "$(command -v dd)")
  sh=$(as_prog segment-flusher.sh "$GEN/dd_loop.sh")
  disk=$(disk_of_var_tmp)
  for i in 1 2 3 4 5 6 7 8; do gen bash "$sh" "$dd" "$IODIR/segment-$i" 512 "$DEADLINE"; done
  sleep 3
  rec "$1" "everything on this box feels sluggish since the batch window opened"
  kill_pids
  truth "$1" "Eight synchronous shell writers: the run queue looks long, the disk is the bottleneck" host.disk_io_saturation "disk:$disk" \
    "eight segment-flusher.sh loops run segment-flusher (a copy of dd, oflag=dsync, 1 MiB blocks) on $disk; tasks blocked on the disk make the load and run queue look high while the cores are mostly idle" \
    "segment-flusher|segment-flusher.sh" "$HOST_STOP" "postgres.terminate_backend" \
    "a long run queue / load average (blocked writers, not CPU work)"
}

case_unseen-fd-exhaustion() {
  local py; py=$(as_prog customer-notification-dispatcher.py "$GEN/fd_holder.py")
  gen python3 "$py" --limit 512 --open 500 --kind sockets --grow --seconds "$DEADLINE"
  sleep 2
  rec "$1" "customers say order notifications stopped arriving a little while ago"
  kill_pids
  truth "$1" "A python service sits at its open-files limit" host.fd_exhaustion "process:customer-notification-dispatcher.py" \
    "customer-notification-dispatcher.py (python3) set RLIMIT_NOFILE to 512 and holds ~500 sockets, opening more each second until EMFILE" \
    "customer-notification-dispatcher.py|customer-notification-dispatcher" "$HOST_STOP" "postgres.terminate_backend"
}

case_unseen-inode-exhaustion() {
  MNT=$(mktemp -d /tmp/mailspool-XXXX)
  mount -t tmpfs -o size=64m,nr_inodes=2000 tmpfs "$MNT"
  mkdir -p "$MNT/spool/queue"
  python3 - "$MNT/spool/queue" <<'PY'
import os, sys
d, i = sys.argv[1], 0
while True:
    try:
        with open(os.path.join(d, f"msg-{i:06d}.eml"), "w") as f:
            f.write("Subject: order confirmation\n\n" + "x" * 200)
    except OSError:
        break
    i += 1
print(f"{i} files in {d}", file=sys.stderr)
PY
  local files space
  files=$(ls "$MNT/spool/queue" | wc -l); space=$(df --output=pcent "$MNT" | tail -1 | tr -d ' ')
  rec "$1" "outgoing mail is stuck: new messages are not accepted since a while"
  umount -l "$MNT"; rmdir "$MNT" 2>/dev/null || true
  truth "$1" "A filesystem out of inodes with most of its space free" host.disk_full "fs:$MNT" \
    "the mail spool $MNT (tmpfs, 64 MiB, 2000 inodes) has no inode left: $MNT/spool/queue holds $files small files while only $space of the space is used" \
    "$MNT|$MNT/spool/queue" "" "host.signal_process|postgres.terminate_backend" \
    "the filesystem's space is mostly free"
  MNT=
}

case_unseen-net-loss() {
  if ! netloss_available; then echo "skipped: $1 (netloss not available in oncall-fault)" >&2; return 0; fi
  local exe port; exe=$(as_prog market-data-relay "$FAULT")
  gen "$exe" --seconds "$DEADLINE" netloss --loss-pct 20 --rate-per-s 5 --conns 3
  port=$(field port)
  sleep 10   # ~50 exchanges: enough segments for the per-connection retransmit share
  rec "$1" "price updates arrive late and in bursts since a few minutes"
  kill_pids
  truth "$1" "A service's connections lose a fifth of their packets at a low request rate" host.network_errors net \
    "market-data-relay (comm market-data-rel) drops 20% of the packets it receives on port $port (a socket filter); 5 exchanges/s over 3 connections retransmit" \
    "$port|market-data-relay" "" "host.signal_process|postgres.terminate_backend"
}

# ---------------------------------------------------------------------------------------------
# Host controls
# ---------------------------------------------------------------------------------------------

case_none-unseen-python-half-busy() {
  local py; py=$(as_prog feature_backfill.py "$GEN/busy_pool.py")
  gen python3 "$py" --workers 1 --seconds "$DEADLINE"
  sleep 2
  rec "$1" "the backfill is running and the CPU graph sits at 50 percent, anything to worry about?"
  kill_pids
  truth "$1" "A python pool keeps one of two cores busy" none "" \
    "feature_backfill.py keeps exactly one of two cores busy: no run queue, no stall" "" "" "$NO_ACTION" \
    "feature_backfill.py worker at 100% of one core"
}

case_none-unseen-large-stable-rss() {
  local py; py=$(as_prog embedding_index_server.py "$GEN/leak.py")
  gen python3 "$py" --hold --max-mib 3072 --seconds "$DEADLINE"
  sleep 3
  rec "$1" "the search box shows 3 GB used since the restart, is that a problem?"
  kill_pids
  truth "$1" "A process holds a large, stable footprint" none "" \
    "embedding_index_server.py loaded 3 GiB at start and holds it, not growing; the host has plenty free" "" "" "$NO_ACTION" \
    "embedding_index_server.py with 3 GiB resident (stable)"
}

case_none-unseen-many-fds() {
  local py; py=$(as_prog websocket-fanout.py "$GEN/fd_holder.py")
  # 65536 where the hard limit may be raised (CAP_SYS_RESOURCE), else the hard limit.
  gen python3 "$py" --limit 65536 --open 3000 --kind sockets --seconds "$DEADLINE"
  local fds limit; fds=$(field fds); limit=$(field limit)
  sleep 2
  rec "$1" "the fanout service has thousands of open connections, is it healthy?"
  kill_pids
  truth "$1" "A service holds many descriptors, far from its limit" none "" \
    "websocket-fanout.py holds $fds descriptors (sockets) of its $limit limit, steady" "" "" "$NO_ACTION" \
    "websocket-fanout.py with $fds open descriptors"
}

case_none-unseen-net-lowrate() {
  local port
  if netloss_available; then
    local exe; exe=$(as_prog ticker-feed-proxy "$FAULT")
    gen "$exe" --seconds "$DEADLINE" netloss --loss-pct 0 --rate-per-s 5 --conns 3
  else
    local py; py=$(as_prog ticker_feed_proxy.py "$GEN/echo_pair.py")
    gen python3 "$py" --rate-per-s 5 --conns 3 --seconds "$DEADLINE"
  fi
  port=$(field port)
  sleep 4
  rec "$1" "the ticker feed seems quiet today, can you check the box?"
  kill_pids
  truth "$1" "Low-rate TCP traffic without loss" none "" \
    "ticker-feed-proxy exchanges 5 small requests/s over 3 loopback connections on port $port; nothing is lost" "" "" "$NO_ACTION" \
    "a steady trickle of TCP traffic on port $port"
}

case_none-unseen-java-idle-heap() {
  local cls=$WORK/classes
  mkdir -p "$cls"; javac -d "$cls" "$GEN/java/com/acme/catalog/CatalogServer.java"
  gen java -Xms2g -Xmx2g -XX:+AlwaysPreTouch -cp "$cls" com.acme.catalog.CatalogServer "$DEADLINE"
  sleep 3
  rec "$1" "the catalog service was restarted an hour ago, can you confirm the box is fine?"
  kill_pids
  truth "$1" "A JVM idles after startup with a big pre-touched heap" none "" \
    "java com.acme.catalog.CatalogServer holds its 2 GiB pre-touched heap and idles: large, stable, no work" "" "" "$NO_ACTION" \
    "java com.acme.catalog.CatalogServer with ~2 GiB resident (stable)"
}

case_none-unseen-light-writer() {
  local py; py=$(as_prog audit_log_shipper.py "$GEN/dsync_writer.py")
  gen python3 "$py" --path "$IODIR" --mib 64 --rate-mib-per-s 4 --seconds "$DEADLINE"
  sleep 3
  rec "$1" "the disk light on the audit box never goes off, is it ok?"
  kill_pids
  truth "$1" "One light synchronous writer" none "" \
    "audit_log_shipper.py writes 4 MiB/s with O_DSYNC: the disk is far from busy" "" "" "$NO_ACTION" \
    "audit_log_shipper.py writing continuously"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster, database `ledger`, schema `payments`, configured by file
# ---------------------------------------------------------------------------------------------

PGPORT= PGPW=oncall-unseen-pw
as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg psql -h "$PGDIR" -p "$PGPORT" -U postgres -qAt "$@"; }
pg_start() {
  [ -n "$PGDIR" ] && return 0
  PGDIR=$(mktemp -d /tmp/oncall-unseen-pg-XXXX)
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  chown postgres: "$PGDIR"; echo "$PGPW" > "$PGDIR/pw"; chown postgres: "$PGDIR/pw"
  as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres -N -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256 --pwfile="$PGDIR/pw" >/dev/null
  cat >> "$PGDIR/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDIR'
shared_preload_libraries = 'pg_stat_statements'
max_connections = 30
superuser_reserved_connections = 3
fsync = off
CONF
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w start >/dev/null
  psql_ -c "CREATE ROLE oncall_ro LOGIN PASSWORD '$PGPW' IN ROLE pg_monitor, pg_read_all_data"
  psql_ -c "CREATE ROLE ledger_app LOGIN"
  psql_ -c "CREATE DATABASE ledger"
  psql_ -d ledger -c "CREATE EXTENSION pg_stat_statements"
  psql_ -d ledger <<'SQL'
CREATE SCHEMA payments;
CREATE TABLE payments.accounts (account_id bigint PRIMARY KEY, holder text NOT NULL, currency char(3) NOT NULL,
  balance_cents bigint NOT NULL);
INSERT INTO payments.accounts SELECT g, 'holder-' || g, 'EUR', 100000 FROM generate_series(1, 20000) g;
CREATE TABLE payments.payouts (payout_id bigint PRIMARY KEY, account_id bigint NOT NULL REFERENCES payments.accounts,
  amount_cents bigint NOT NULL, status text NOT NULL, requested_at timestamptz NOT NULL);
INSERT INTO payments.payouts SELECT g, 1 + g % 20000, 100 + g % 90000, 'pending', now() - (g % 86400) * interval '1 s'
  FROM generate_series(1, 200000) g;
CREATE TABLE payments.ledger_entries (entry_id bigserial PRIMARY KEY, account_id bigint NOT NULL, entry_ref text NOT NULL,
  amount_cents bigint NOT NULL, booked_at timestamptz NOT NULL);
INSERT INTO payments.ledger_entries (account_id, entry_ref, amount_cents, booked_at)
  SELECT 1 + g % 20000, 'le-' || g, (g % 5000) - 2500, now() - (g % 7776000) * interval '1 s' FROM generate_series(1, 1500000) g;
GRANT USAGE ON SCHEMA payments TO ledger_app;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA payments TO ledger_app;
ANALYZE;
SQL
  printf '\\set k random(1, 20000)\nSELECT sum(amount_cents) FROM payments.ledger_entries WHERE account_id = :k AND booked_at > now() - interval '"'"'30 days'"'"';\n' > "$PGDIR/statement.sql"
  chown postgres: "$PGDIR/statement.sql"
  cat > "$WORK/oncall.toml" <<TOML
[postgres.ledger]
url = "postgres://oncall_ro@127.0.0.1:$PGPORT/ledger"
password_env = "UNSEEN_LEDGER_PGPASSWORD"
TOML
  as_prog ledger_pool.py "$GEN/pg_pool.py" >/dev/null
}
# pg_rec ID REPORT: records with the ledger database configured (by file, not by variables).
pg_rec() { ONCALL_CONFIG=$WORK/oncall.toml UNSEEN_LEDGER_PGPASSWORD=$PGPW ONCALL_HOST__WINDOW_MS=500 rec "$@"; }
pg_reset() { psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'ledger' AND pid <> pg_backend_pid()" >/dev/null; }
pool() { gen python3 "$WORK/bin/ledger_pool.py" --socket-dir "$PGDIR" --port "$PGPORT" --user ledger_app --db ledger "$@"; }
# pgbench_ APP ARGS...: starts pgbench in the background (root may use the socket; trust), records its pid.
pgbench_() { PGAPPNAME=$1 "$PGBIN/pgbench" -h "$PGDIR" -p "$PGPORT" -U postgres -n "${@:2}" ledger >/dev/null 2>&1 & pids+=($!); }

# lock_chain HOLDER_APP WORKER_APP: a session idle in transaction holds payout 1001; a python pool
# of 4 workers each runs an UPDATE of the same payout and waits. Sets HOLDER to the holder's
# backend pid.
lock_chain() {
  pool --app "$1" --size 1 --run-once --seconds "$DEADLINE" \
    --query "BEGIN; UPDATE payments.payouts SET status = 'processing' WHERE payout_id = 1001"
  HOLDER=$(psql_ -d ledger -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$1' AND state = 'idle in transaction'")
  local i
  pool --app "$2" --size 4 --send-once --seconds "$DEADLINE" \
    --query "UPDATE payments.payouts SET status = 'sent' WHERE payout_id = 1001"
  for i in $(seq 1 50); do
    [ "$(psql_ -d ledger -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$2' AND wait_event_type = 'Lock'")" -ge 4 ] && break
    sleep 0.1
  done
  sleep 3
}

case_unseen-pg-lock-chain() {
  pg_start
  lock_chain payout-batch payout-sender
  pg_rec "$1" "payouts are stuck in the dashboard, nothing has gone out for a few minutes"
  kill_pids; pg_reset
  truth "$1" "A session idle in transaction holds a payout row; the senders queue behind it" db.lock_contention postgres:ledger \
    "payout-batch (pid $HOLDER) sits idle in transaction holding payments.payouts row 1001; four payout-sender sessions (a python pool) wait on UPDATEs of it" \
    "payout-batch|$HOLDER" "postgres.terminate_backend|postgres.cancel_backend" "host.signal_process" \
    "the waiting payout-sender sessions are victims, not the cause"
}

case_unseen-pg-slow-query() {
  pg_start
  psql_ -d ledger -c "DROP INDEX IF EXISTS payments.ledger_entries_account_booked" 2>/dev/null
  psql_ -d ledger -c "SELECT pg_stat_statements_reset()" >/dev/null
  pgbench_ statement-api -c 2 -T "$DEADLINE" -f "$PGDIR/statement.sql"
  pool --app balance-widget --size 1 --query "SELECT balance_cents FROM payments.accounts WHERE account_id = 7" --rate 100 --seconds "$DEADLINE"
  sleep 4
  pg_rec "$1" "account statements take ages to open since this morning"
  kill_pids; pg_reset
  truth "$1" "An unindexed aggregate over the ledger dominates the database" db.slow_query postgres:ledger \
    "SELECT sum(amount_cents) FROM payments.ledger_entries WHERE account_id = \$1 AND booked_at > ... scans 1.5M rows per call (no index on account_id)" \
    "ledger_entries|payments.ledger_entries" "" "host.signal_process" \
    "the CPU is busy with the postgres backends doing the scans" "balance-widget runs an indexed lookup 100 times/s"
}

case_unseen-pg-connections() {
  pg_start
  # 30 connections, 3 reserved for superusers: 27 usable by ledger_app and oncall_ro; the pool takes 26.
  pool --app ledger-api --size 26 --seconds "$DEADLINE"
  sleep 2
  pg_rec "$1" "the payouts API returns errors for about half of the requests"
  kill_pids; pg_reset
  truth "$1" "A python pool holds every usable connection" db.connection_exhaustion postgres:ledger \
    "ledger-api (one python process, pool of 26) holds 26 of the 27 connections open to non-superusers, all idle" \
    "ledger-api" "" "host.signal_process"
}

case_none-unseen-pg-indexed() {
  pg_start
  psql_ -d ledger -c "CREATE INDEX IF NOT EXISTS ledger_entries_account_booked ON payments.ledger_entries (account_id, booked_at)"
  psql_ -d ledger -c "SELECT pg_stat_statements_reset()" >/dev/null
  pgbench_ statement-api -c 2 -R 150 -T "$DEADLINE" -f "$PGDIR/statement.sql"
  sleep 4
  pg_rec "$1" "month-end is coming, are statements holding up fine?"
  kill_pids; pg_reset
  truth "$1" "Indexed statement lookups at a steady rate: a busy, healthy database" none "" \
    "150 statement aggregates/s over an index on (account_id, booked_at), each well under a millisecond" "" "" "$NO_ACTION" \
    "the statement query dominates statement time, but it is fast"
}

case_none-unseen-pg-idle-pool() {
  pg_start
  pool --app ledger-api --size 10 --seconds "$DEADLINE"
  pool --app ledger-api --size 2 --query "SELECT status FROM payments.payouts WHERE payout_id = 4242" --rate 20 --seconds "$DEADLINE"
  sleep 2
  pg_rec "$1" "I see a dozen database sessions from the payouts API, is that normal?"
  kill_pids; pg_reset
  truth "$1" "An idle pool and a light load: healthy" none "" \
    "ledger-api keeps 12 of 27 usable connections, 10 idle and 2 running 20 indexed lookups/s" "" "" "$NO_ACTION" \
    "a dozen ledger-api connections, mostly idle"
}

# Opt-in, LAST: an OOM kill in an unrelated memory cgroup, then (minutes later) a live lock chain.
case_unseen-pg-old-oom-lock-chain() {
  local cg py i t0
  pg_start
  memory_cgroup oncall-nightly-export 200M; cg=$CG
  if [ -z "$cg" ]; then echo "skipped: $1 (cannot create a memory cgroup on this machine)" >&2; return 0; fi
  py=$(as_prog nightly_export.py "$GEN/leak.py")
  echo "  $1: OOM-killing nightly_export.py in $cg, then waiting ${OLD_NEWS_WAIT}s (the kill stays in the kernel log 15 min)" >&2
  sh -c "echo \$\$ > $cg/cgroup.procs && exec python3 $py --rate-mib-per-s 200 --max-mib 2000 --seconds 30" >/dev/null 2>&1 & pids+=($!)
  wait "$!" 2>/dev/null || true
  t0=$(date +%s)
  local kills; kills=$(timeout 1 cat /dev/kmsg 2>/dev/null | grep -c "oom-kill:.*oncall-nightly-export" || true)
  rmdir "$cg" 2>/dev/null || true
  sleep "$OLD_NEWS_WAIT"
  lock_chain payout-batch payout-sender
  pg_rec "$1" "payouts are hanging"
  kill_pids; pg_reset
  truth "$1" "A live lock chain, minutes after an unrelated OOM kill" db.lock_contention postgres:ledger \
    "payout-batch (pid $HOLDER) sits idle in transaction holding payments.payouts row 1001; four payout-sender sessions wait on it. An OOM kill $(( $(date +%s) - t0 ))s earlier in the unrelated cgroup oncall-nightly-export is old news" \
    "payout-batch|$HOLDER" "postgres.terminate_backend|postgres.cancel_backend" "host.signal_process" \
    "nightly_export.py (python3) was OOM-killed in the memory cgroup oncall-nightly-export minutes before, and is gone" \
    "the waiting payout-sender sessions are victims, not the cause"
  echo "  $1: $kills OOM kill line(s) for oncall-nightly-export in the kernel log" >&2
}

# wait_quiet: waits (QUIET_WAIT s at most, 1200) until the host's CPU is under 15% busy over 2 s
# and the kernel log holds no OOM kill from the last 16 min (oncall reports those for 15 min), so
# that no one else's work (a build, a test run) ends up in the recording; says so otherwise.
wait_quiet() {
  local end=$((SECONDS + ${QUIET_WAIT:-1200})) state
  while :; do
    state=$(python3 -c '
import os, time
def snap():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]
t0, i0 = snap(); time.sleep(2); t1, i1 = snap()
busy = round(100 * (1 - (i1 - i0) / max(1, t1 - t0)))
now_us = float(open("/proc/uptime").read().split()[0]) * 1e6
oom_age = None
try:
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    while True:
        try:
            rec = os.read(fd, 8192).decode(errors="replace")
        except BlockingIOError:
            break
        except OSError:
            continue
        head, _, msg = rec.partition(";")
        if msg.startswith("oom-kill:") or " invoked oom-killer" in msg:
            oom_age = (now_us - int(head.split(",")[2])) / 1e6
except OSError:
    pass
if busy >= 15:
    print(f"{busy}% busy")
elif oom_age is not None and oom_age < 960:
    print(f"an OOM kill {oom_age:.0f} s ago in the kernel log")')
    [ -z "$state" ] && return 0
    if [ "$SECONDS" -ge "$end" ]; then echo "  warning: the host is not quiet ($state); recording anyway" >&2; return 0; fi
    sleep 10
  done
}

for c in "${selected[@]}"; do
  wait_quiet
  "case_$c" "$c"
done
echo "done: ${#selected[@]} case(s) selected, written to $OUT" >&2
