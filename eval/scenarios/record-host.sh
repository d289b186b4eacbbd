#!/usr/bin/env bash
# Records the host cases in eval/cases/ from REAL faults caused on this machine with oncall-fault,
# and writes each case's truth (the scenario knows what it caused). Run as root on a quiet
# machine (the disk case mounts a tmpfs): bash eval/scenarios/record-host.sh
# The OOM case has its own script, record-oom.sh: run it last (see there why).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin oncall --bin oncall-fault >/dev/null
ONCALL=target/release/oncall
FAULT=target/release/oncall-fault
OUT=eval/cases
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; [ -n "${MNT:-}" ] && umount -l "$MNT" 2>/dev/null; true; }
trap cleanup EXIT

# truth FILE TITLE CATEGORY COMPONENT CULPRIT SUMMARY [DISTRACTOR]
truth() {
  python3 - "$@" <<'PY'
import json, sys
f, title, cat, comp, culprit, summary = sys.argv[1:7]
distractors = sys.argv[7:]
c = json.load(open(f))
c["title"] = title
c["truth"] = {"category": cat, "component": comp or None, "summary": summary,
              "culprit_any": [culprit] if culprit else [], "distractors": distractors,
              "stabilize": ["host.signal_process"] if cat in ("host.cpu_saturation", "host.memory_pressure", "host.fd_exhaustion", "host.disk_io_saturation") else [],
              "must_not": ["postgres.terminate_backend"]}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
}

fault() { "$FAULT" "$@" >/dev/null & pids+=($!); sleep 1.5; }
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }

fault --name ingest-worker --seconds 60 cpu --threads 4
$ONCALL record --out $OUT/host-cpu-hog-01.json "the search api got slow a few minutes ago"
stop
truth $OUT/host-cpu-hog-01.json "A batch process busy-loops on more threads than cores" host.cpu_saturation cpu ingest-worker \
  "ingest-worker runs 4 busy threads on 2 cores: run queue ~2.5 per core, PSI cpu near 100%"

fault --name thumbnailer --seconds 60 memory --rate-mib-per-s 300 --max-mib 6000
$ONCALL record --out $OUT/host-memory-growth-01.json "the image service keeps getting slower and its memory climbs"
stop
truth $OUT/host-memory-growth-01.json "A process grows its resident memory steadily" host.memory_pressure memory thumbnailer \
  "thumbnailer grows ~300 MiB/s; at that rate the host runs out of memory within minutes"

fault --name conn-broker --seconds 60 fds --limit 256 --open 250
$ONCALL record --out $OUT/host-fd-exhaustion-01.json "new connections to the broker are refused now and then"
stop
truth $OUT/host-fd-exhaustion-01.json "A process sits at its open-files limit" host.fd_exhaustion conn-broker conn-broker \
  "conn-broker holds 250 of its 256 file descriptors"

MNT=$(mktemp -d /tmp/uploads-XXXX); mount -t tmpfs -o size=8m tmpfs "$MNT"
i=0; while dd if=/dev/zero of="$MNT/blob-$i" bs=256k count=1 status=none 2>/dev/null; do i=$((i+1)); done
$ONCALL record --out $OUT/host-disk-full-01.json "uploads fail with an error since a few minutes"
umount -l "$MNT"; rmdir "$MNT" 2>/dev/null || true
truth $OUT/host-disk-full-01.json "A filesystem filled to the brim" host.disk_full "fs:$MNT" "$MNT" \
  "the upload filesystem $MNT (tmpfs, 8 MiB) is 100% full"
MNT=

$ONCALL record --out $OUT/none-quiet-01.json "routine health check before the release"
truth $OUT/none-quiet-01.json "A quiet, healthy host" none "" "" "nothing is wrong"

fault --name report-gen --seconds 60 cpu --threads 1
$ONCALL record --out $OUT/none-busy-healthy-01.json "dashboards show CPU at 50 percent, is something wrong?"
stop
truth $OUT/none-busy-healthy-01.json "A busy but healthy host: one core busy, no queue" none "" "" \
  "report-gen keeps one of two cores busy; no run queue, no stall: busy but healthy" "report-gen at 100% of one core"
# Heavy disk I/O: eight direct, synchronous writers on the root disk, beside a busy core.
fault --name blob-compactor --seconds 60 io --path /var/tmp --threads 8 --mib 64
fault --name report-gen --seconds 60 cpu --threads 1
$ONCALL record --out $OUT/host-disk-io-01.json "uploads got slow and the upload API times out now and then"
stop
truth $OUT/host-disk-io-01.json "Parallel synchronous writers saturate the disk" host.disk_io_saturation disk:vda blob-compactor \
  "blob-compactor keeps eight direct, synchronous writes in flight: the disk is busy all the time with a deep queue" \
  "report-gen at 100% of one core (busy, not saturated)"

# A CPU hog among other busy processes: a slow memory grower and a process using many descriptors.
fault --name cache-warmer --seconds 60 memory --rate-mib-per-s 8 --max-mib 300
fault --name session-store --seconds 60 fds --limit 4096 --open 1500
fault --name video-transcode --seconds 60 cpu --threads 4
$ONCALL record --out $OUT/host-cpu-hog-02.json "the API p99 doubled in the last ten minutes"
stop
truth $OUT/host-cpu-hog-02.json "A transcoder takes every core while other processes look busy" host.cpu_saturation cpu video-transcode \
  "video-transcode runs 4 busy threads on 2 cores; the run queue is twice the core count" \
  "cache-warmer grows 8 MiB/s (warming, far from exhausting memory)" "session-store holds 1500 of 4096 descriptors (37%)"

# Busy but healthy: one core of batch work, a steady process with many descriptors, a light writer.
fault --name nightly-etl --seconds 60 cpu --threads 1
fault --name session-store --seconds 60 fds --limit 4096 --open 1500
fault --name audit-writer --seconds 60 io --path /var/tmp --threads 1 --mib 16
$ONCALL record --out $OUT/none-busy-healthy-02.json "the batch job is running, is the host ok?"
stop
truth $OUT/none-busy-healthy-02.json "A busy but healthy host: batch work, many descriptors, one writer" none "" "" \
  "nightly-etl keeps one core busy, audit-writer keeps one write in flight, session-store holds 37% of its descriptors: busy, nothing saturated" \
  "nightly-etl at 100% of one core" "audit-writer writing continuously" "session-store with 1500 open descriptors"

echo "recorded: $(ls $OUT | wc -l) cases in $OUT"
