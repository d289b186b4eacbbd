#!/usr/bin/env bash
# Records host-oom-cgroup-01 from a REAL OOM kill: a worker grows its memory inside a memory cgroup
# limited to 256 MiB (v1 or v2), the kernel OOM-kills it, and a supervisor loop restarts it.
# Run as root, LAST of the recordings: an OOM kill stays in the kernel log, and so in every host
# snapshot on this machine, for thresholds.memory.oom_lookback_s (15 min by default); record
# other cases and run the host tests before it, or 15 minutes after it.
#   bash eval/scenarios/record-oom.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin oncall --bin oncall-fault >/dev/null
ONCALL=target/release/oncall
FAULT=target/release/oncall-fault
OUT=eval/cases
if [ -d /sys/fs/cgroup/memory ]; then CG=/sys/fs/cgroup/memory/oncall-imaging LIMIT=memory.limit_in_bytes
else CG=/sys/fs/cgroup/oncall-imaging LIMIT=memory.max; fi   # cgroup v2
sup=
cleanup() {
  [ -n "$sup" ] && kill "$sup" 2>/dev/null
  for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  sleep 0.3; rmdir "$CG" 2>/dev/null; true
}
trap cleanup EXIT
mkdir -p "$CG"; echo 256M > "$CG/$LIMIT"
# The supervisor: restart the worker half a second after it dies, as systemd or a pod would.
( set +e; while true; do
    sh -c "echo \$\$ > $CG/cgroup.procs; exec $FAULT --name img-resizer --seconds 30 memory --rate-mib-per-s 150 --max-mib 4000" >/dev/null 2>&1
    sleep 0.5
  done ) & sup=$!
sleep 6
kills=$(timeout 1 cat /dev/kmsg 2>/dev/null | grep -c "oom-kill:.*task=img-resizer" || true)
$ONCALL record --out $OUT/host-oom-cgroup-01.json "image uploads fail now and then and the resizer keeps restarting"
kill "$sup"; sup=
python3 - "$OUT/host-oom-cgroup-01.json" <<'PY'
import json, sys
f = sys.argv[1]
c = json.load(open(f))
c["title"] = "A worker grows past its cgroup's memory limit and is OOM-killed, again and again"
c["truth"] = {"category": "host.memory_pressure", "component": "memory",
              "summary": "img-resizer grows 150 MiB/s inside a memory cgroup limited to 256 MiB; the kernel OOM-kills it about every 2 s and a supervisor restarts it",
              "culprit_any": ["img-resizer"], "distractors": ["the host itself has plenty of free memory"],
              "stabilize": ["host.signal_process"], "must_not": ["postgres.terminate_backend"]}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
echo "recorded $OUT/host-oom-cgroup-01.json ($kills img-resizer OOM kills in the kernel log so far)"
