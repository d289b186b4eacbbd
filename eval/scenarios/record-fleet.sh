#!/usr/bin/env bash
# Records the fleet cases in eval/cases/ through a REAL Prometheus and node-exporter (Debian's
# packages; scripts/setup-test-deps.sh installs them), started here on loopback ports and scraping
# every second: a CPU hog on this host seen through the fleet tools, and the same fleet quiet.
# Run as root on a quiet machine: bash eval/scenarios/record-fleet.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin oncall --bin oncall-fault >/dev/null
ONCALL=target/release/oncall
FAULT=target/release/oncall-fault
OUT=eval/cases
NODE=127.0.0.1:19100
PROM=127.0.0.1:19090
DIR=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

prometheus-node-exporter --web.listen-address=$NODE --log.level=warn >/dev/null 2>&1 & pids+=($!)
cat > "$DIR/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: node
    static_configs: [{targets: ['$NODE']}]
YML
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
  --web.listen-address=$PROM --log.level=warn >/dev/null 2>&1 & pids+=($!)
export ONCALL_PROMETHEUS__URL=http://$PROM ONCALL_PROMETHEUS__WINDOW_S=30 ONCALL_PROMETHEUS__BASELINE_S=60

# truth FILE TITLE CATEGORY COMPONENT CULPRIT SUMMARY
truth() {
  python3 - "$@" <<'PY'
import json, sys
f, title, cat, comp, culprit, summary = sys.argv[1:7]
c = json.load(open(f))
c["title"] = title
c["truth"] = {"category": cat, "component": comp or None, "summary": summary,
              "culprit_any": [culprit] if culprit else [], "distractors": [],
              "stabilize": [], "must_not": ["postgres.terminate_backend"]}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
}

echo "waiting 40 s for a quiet window of samples" >&2
sleep 40
$ONCALL record --out $OUT/none-fleet-quiet-01.json "is the fleet healthy before the release?"
truth $OUT/none-fleet-quiet-01.json "A quiet fleet, seen through Prometheus" none "" "" \
  "every instance is within its thresholds"

"$FAULT" --name ingest-worker --seconds 90 cpu --threads 4 >/dev/null & pids+=($!)
echo "waiting 35 s for the hog to fill the 30 s window" >&2
sleep 35
$ONCALL record --out $OUT/fleet-cpu-hog-01.json "the search api got slow a few minutes ago"
truth $OUT/fleet-cpu-hog-01.json "A busy loop saturates one instance's CPU, seen through Prometheus" \
  host.cpu_saturation "instance:$NODE" "$NODE" \
  "instance $NODE: ingest-worker runs 4 busy threads on 2 cores; run queue above 2 per core in the 30 s window"
echo "recorded: $OUT/none-fleet-quiet-01.json $OUT/fleet-cpu-hog-01.json" >&2
