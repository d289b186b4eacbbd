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

source eval/scenarios/lib.sh

# [CHANGES=json-lines BUG=N REQUESTS=N PAY_NAME=.. PAY_OP=.. PAY_ERR=.. PROVENANCE=..
#  STABILIZE=a,b MUST_NOT=a,b DISTRACTORS="x|y"] \
#   scenario ID MODE REPORT CATEGORY COMPONENT CULPRITS TITLE SUMMARY
scenario() {
  local id=$1 mode=$2 report=$3 cat=$4 comp=$5 culprits=$6 title=$7 summary=$8
  local sp pp op; sp=$(port); pp=$(port); op=$(port)
  local log; log=$(mktemp /tmp/changes-XXXX.jsonl); printf '%s' "${CHANGES:-}" > "$log"
  ONCALL_CHANGES__FILE=$log ONCALL_HOST__WINDOW_MS=300 target/release/oncall serve --listen 127.0.0.1:$op 2>/dev/null & local srv=$!
  ready "http://127.0.0.1:$op/healthz"
  local ep="http://127.0.0.1:$op/v1/traces"
  $PY tests/otel/services.py payments --port "$pp" --endpoint "$ep" --token "$ONCALL_TOKEN" --mode "$mode" --name "${PAY_NAME:-}" --op "${PAY_OP:-provider.authorize}" --error "${PAY_ERR:-card network unavailable}" & local pay=$!
  $PY tests/otel/services.py storefront --port "$sp" --endpoint "$ep" --token "$ONCALL_TOKEN" --payments "http://127.0.0.1:$pp" --bug-every "${BUG:-0}" & local store=$!
  pids=($srv $pay $store)
  ready "http://127.0.0.1:$pp/ready"; ready "http://127.0.0.1:$sp/ready"
  for i in $(seq "${REQUESTS:-8}"); do curl -s -o /dev/null "http://127.0.0.1:$sp/checkout" & done; wait $(jobs -p | grep -v -e "^$srv$" -e "^$pay$" -e "^$store$") 2>/dev/null || true
  kill -TERM $store $pay; wait $store $pay 2>/dev/null || true
  curl -sf -H "Authorization: Bearer $ONCALL_TOKEN" -H 'content-type: application/json' \
    -d "{\"id\": \"$id\", \"report\": \"$report\"}" "http://127.0.0.1:$op/api/v1/record" > "$OUT/$id.json"
  kill $srv; wait $srv 2>/dev/null || true; pids=(); rm -f "$log"
  python3 - "$OUT/$id.json" "$title" "$cat" "$comp" "$culprits" "$summary" "${STABILIZE:-}" "${MUST_NOT:-}" "${DISTRACTORS:-}" "${PROVENANCE:-recorded}" <<'PY'
import json, sys
f, title, cat, comp, culprits, summary, stab, mustnot, distract, prov = sys.argv[1:11]
c = json.load(open(f))
c["title"] = title
c["provenance"] = prov
c["context"]["service"] = "storefront"
c["truth"] = {"category": cat, "component": comp or None, "summary": summary,
              "culprit_any": [x for x in culprits.split(",") if x],
              "distractors": ["a fast database span (SELECT orders) on every checkout"] + [x for x in distract.split("|") if x],
              "stabilize": [x for x in stab.split(",") if x],
              "must_not": ["postgres.terminate_backend", "host.signal_process"] + [x for x in mustnot.split(",") if x]}
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

# A deploy right before the regression, and what must not be blamed on a deploy.
CHANGES="$(change 4 deploy storefront 'storefront v2.5.0'; change 190 config payments 'payments: card network endpoint moved to v3')" BUG=2 \
STABILIZE=deploy.rollback DISTRACTORS="a payments config change three hours earlier" \
scenario traces-bad-deploy-01 ok "checkout started failing for some customers a few minutes ago" change.bad_deploy service:storefront \
  "storefront v2.5.0" "A release breaks its own service" "storefront v2.5.0, deployed 4 min before, fails every second checkout in its own code (cart.totals KeyError); payments is healthy"
CHANGES="$(change 6 config payments 'payments: provider timeout 2s -> 10s, retries 1 -> 3')" \
STABILIZE=manual MUST_NOT=deploy.rollback \
scenario traces-config-latency-01 latency "checkout is slow since a few minutes" change.bad_config service:payments \
  "provider timeout,payments" "A configuration change slows a downstream" "payments' provider settings changed 6 min before (timeout 2s -> 10s, 3 retries); authorize now holds every checkout for 1.2 s"
CHANGES="$(change 150 deploy storefront 'storefront v2.4.9')" MUST_NOT=deploy.rollback \
DISTRACTORS="a storefront deploy 2.5 hours earlier" \
scenario traces-slow-downstream-02 latency "checkout is slow for everyone" dependency.latency service:payments \
  "provider.authorize,payments" "A slow downstream, long after the last deploy" "payments' provider.authorize takes 1.2 s; the storefront deploy 150 min earlier is not it"
CHANGES="$(change 4 deploy storefront 'storefront v2.5.1')" MUST_NOT=deploy.rollback \
DISTRACTORS="a storefront deploy 4 minutes earlier" \
scenario traces-failing-downstream-02 errors "checkout fails since a few minutes" dependency.errors service:payments \
  "provider.authorize,payments" "A failing downstream right after an unrelated deploy" "payments' provider.authorize fails; storefront was deployed 4 min before, but its own code is fine and the errors start in payments"
BUG=3 REQUESTS=12 STABILIZE= \
scenario traces-app-errors-01 ok "some checkouts return 500" app.error_spike service:storefront \
  "cart.totals,storefront" "The service's own errors" "storefront's cart.totals fails every third checkout (KeyError); payments is healthy and nothing changed"
CHANGES="$(change 3 deploy storefront 'storefront v2.6.0')" MUST_NOT=deploy.rollback \
DISTRACTORS="a storefront deploy 3 minutes earlier" \
scenario none-deploy-healthy-01 ok "we just deployed storefront v2.6.0, does anything look off?" none "" "" \
  "A healthy service right after a deploy" "every checkout succeeds in a few milliseconds after the deploy"

# Derived from a public post-mortem, reproduced here: Amazon's "Summary of the Amazon S3 Service
# Disruption in the Northern Virginia (US-EAST-1) Region" (2017-02-28), as seen by a shop whose
# asset-store service reads from S3 in us-east-1. S3 GETs fail; nothing of the shop changed since
# a storefront deploy two hours before.
CHANGES="$(change 125 deploy storefront 'storefront v3.1.0')" PAY_NAME=asset-store PAY_OP="S3 GetObject" \
PAY_ERR="503 Service Unavailable (s3.us-east-1)" MUST_NOT=deploy.rollback PROVENANCE="derived:aws-s3-us-east-1-2017-02-28" \
DISTRACTORS="a storefront deploy two hours earlier" \
scenario derived-aws-s3-2017 errors "product pages fail to load images and checkout errors are climbing" dependency.errors service:asset-store \
  "S3,asset-store" "An object store in one region stops serving reads" "S3 in us-east-1 failed GET requests for hours (an input error in a command removed more servers than intended, and the index and placement subsystems needed a full restart); asset-store's S3 GetObject calls fail and checkout propagates the errors"
