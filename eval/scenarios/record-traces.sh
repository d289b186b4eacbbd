#!/usr/bin/env bash
# Records the traces cases in eval/cases/: two services instrumented with the REAL OpenTelemetry
# Python SDK (tests/otel/services.py) export spans to `oncall serve`, storefront calls payments
# with W3C trace context, and payments' downstream call is slow, failing, or fine. The case is
# recorded by the server (POST /api/v1/record), which holds the spans.
#   bash eval/scenarios/record-traces.sh      (scripts/setup-test-deps.sh makes the SDK venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin oncall >/dev/null
PY=target/otel-venv/bin/python
[ -x "$PY" ] || { echo "missing $PY: run scripts/setup-test-deps.sh" >&2; exit 2; }
OUT=eval/cases
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export ONCALL_TOKEN=rec-$(date +%s%N)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ready() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "$1 never became ready" >&2; exit 1; }

# scenario ID MODE REPORT CATEGORY COMPONENT CULPRITS TITLE SUMMARY
scenario() {
  local id=$1 mode=$2 report=$3 cat=$4 comp=$5 culprits=$6 title=$7 summary=$8
  local sp pp op; sp=$(port); pp=$(port); op=$(port)
  ONCALL_HOST__WINDOW_MS=300 target/release/oncall serve --listen 127.0.0.1:$op 2>/dev/null & local srv=$!
  ready "http://127.0.0.1:$op/healthz"
  local ep="http://127.0.0.1:$op/v1/traces"
  $PY tests/otel/services.py payments --port "$pp" --endpoint "$ep" --token "$ONCALL_TOKEN" --mode "$mode" & local pay=$!
  $PY tests/otel/services.py storefront --port "$sp" --endpoint "$ep" --token "$ONCALL_TOKEN" --payments "http://127.0.0.1:$pp" & local store=$!
  pids=($srv $pay $store)
  ready "http://127.0.0.1:$pp/ready"; ready "http://127.0.0.1:$sp/ready"
  for i in $(seq 8); do curl -s -o /dev/null "http://127.0.0.1:$sp/checkout" & done; wait $(jobs -p | grep -v -e "^$srv$" -e "^$pay$" -e "^$store$") 2>/dev/null || true
  kill -TERM $store $pay; wait $store $pay 2>/dev/null || true
  curl -sf -H "Authorization: Bearer $ONCALL_TOKEN" -H 'content-type: application/json' \
    -d "{\"id\": \"$id\", \"report\": \"$report\"}" "http://127.0.0.1:$op/api/v1/record" > "$OUT/$id.json"
  kill $srv; wait $srv 2>/dev/null || true; pids=()
  python3 - "$OUT/$id.json" "$title" "$cat" "$comp" "$culprits" "$summary" <<'PY'
import json, sys
f, title, cat, comp, culprits, summary = sys.argv[1:7]
c = json.load(open(f))
c["title"] = title
c["context"]["service"] = "storefront"
c["truth"] = {"category": cat, "component": comp or None, "summary": summary,
              "culprit_any": [x for x in culprits.split(",") if x],
              "distractors": ["a fast database span (SELECT orders) on every checkout"],
              "stabilize": [], "must_not": ["postgres.terminate_backend", "host.signal_process"]}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
  echo "recorded $OUT/$id.json"
}

scenario traces-slow-downstream-01 latency "checkout p99 latency is above one second" dependency.latency service:payments \
  "provider.authorize,payments" "A downstream call holds the critical path" "payments' provider.authorize takes 1.2 s of every checkout"
scenario traces-failing-downstream-01 errors "checkout fails for customers" dependency.errors service:payments \
  "provider.authorize,payments" "A downstream call fails and the errors propagate" "payments' provider.authorize fails (card network unavailable) and checkout returns 502"
scenario none-traces-healthy-01 ok "is checkout healthy after the release?" none "" "" "Healthy services" "every checkout succeeds in a few milliseconds"
