#!/usr/bin/env bash
# Records the host cases DERIVED FROM PUBLIC POST-MORTEMS by reproducing each fault for real on
# this machine (provenance "derived:<source>"). The PostgreSQL one is in record-postgres.sh and
# the traces one in record-traces.sh, where their servers run. Run as root on a quiet machine:
#   bash eval/scenarios/record-derived.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --bin oncall --bin oncall-fault >/dev/null
ONCALL=target/release/oncall
FAULT=target/release/oncall-fault
OUT=eval/cases
LOG=$(mktemp /tmp/changes-XXXX.jsonl)
export ONCALL_CHANGES__FILE=$LOG
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); : > "$LOG"; }

source eval/scenarios/lib.sh

# truth FILE PROVENANCE TITLE CATEGORY COMPONENT CULPRITS STABILIZE MUST_NOT SUMMARY [DISTRACTOR...]
truth() {
  python3 - "$@" <<'PY'
import json, sys
f, prov, title, cat, comp, culprits, stab, mustnot, summary = sys.argv[1:10]
c = json.load(open(f))
c["provenance"] = prov
c["title"] = title
c["truth"] = {"category": cat, "component": comp or None, "summary": summary,
              "culprit_any": [x for x in culprits.split(",") if x], "distractors": sys.argv[10:],
              "stabilize": [x for x in stab.split(",") if x], "must_not": [x for x in mustnot.split(",") if x]}
json.dump(c, open(f, "w"), indent=2)
open(f, "a").write("\n")
PY
}

# Cloudflare, "Details of the Cloudflare outage on July 2, 2019": a WAF managed rule deployed
# everywhere at once carried a regular expression that backtracks; CPU exhaustion on every core
# serving HTTP, 502s worldwide, until the WAF managed rules were globally disabled.
change 3 config "" "WAF managed rules: new XSS detection rule" >> "$LOG"
change 300 deploy http-proxy "http-proxy 2019.6.4" >> "$LOG"
python3 eval/scenarios/regex_load.py --preset cloudflare-2019 --name http-proxy --workers 3 --seconds 60 >/dev/null & pids+=($!)
sleep 2
$ONCALL record --out $OUT/derived-cloudflare-waf-2019.json "502 errors for many sites, CPU is pegged on the edge machines"
stop
truth $OUT/derived-cloudflare-waf-2019.json derived:cloudflare-blog-2019-07-02-outage \
  "A rule change makes every proxy worker backtrack in a regular expression" change.bad_config "" \
  "WAF managed rules,XSS detection rule" manual,flag.disable host.signal_process \
  "a WAF rule with a catastrophically backtracking regular expression, deployed to every machine 3 min before, keeps every http-proxy worker busy: CPU exhausted, requests fail with 502" \
  "http-proxy itself was deployed five hours earlier" "the proxy processes are the CPU hogs, but killing them fixes nothing"

# Stack Exchange, "Outage Postmortem - July 20, 2016": a post with ~20,000 consecutive whitespace
# characters made a whitespace-trimming regular expression backtrack on every home page view; the
# load balancer's health check used the home page, so the web servers were taken out of rotation.
change 400 deploy web-frontend "web-frontend 2016.7.20.1" >> "$LOG"
python3 eval/scenarios/regex_load.py --preset stackexchange-2016 --name web-frontend --workers 3 --seconds 60 >/dev/null & pids+=($!)
sleep 2
$ONCALL record --out $OUT/derived-stackexchange-regex-2016.json "the site is down: the load balancer marks every web server unhealthy"
stop
truth $OUT/derived-stackexchange-regex-2016.json derived:stackexchange-outage-postmortem-2016-07-20 \
  "A regular expression backtracks on one post, on every home page view" host.cpu_saturation cpu \
  "web-frontend" host.signal_process,manual deploy.rollback \
  "web-frontend workers spend every core in a whitespace-trimming regular expression over a post with ~20,000 whitespace characters; health checks time out" \
  "a web-frontend deploy almost seven hours earlier"

# Google SRE book, "Example Postmortem" (Shakespeare Sonnet++, appendix D): a surge of searches
# for a word in a newly found sonnet hit a file descriptor leak on failed searches; tasks ran out
# of descriptors and failed in a cascade.
$FAULT --name search-ranker --seconds 60 fds --limit 1024 --open 1016 >/dev/null & pids+=($!)
$FAULT --name search-frontend --seconds 60 cpu --threads 1 >/dev/null & pids+=($!)
sleep 1.5
$ONCALL record --out $OUT/derived-sre-book-shakespeare.json "search fails for many users since traffic jumped"
stop
truth $OUT/derived-sre-book-shakespeare.json derived:google-sre-book-example-postmortem-shakespeare \
  "A descriptor leak on failed searches meets a traffic surge" host.fd_exhaustion search-ranker \
  "search-ranker" host.signal_process deploy.rollback \
  "search-ranker leaks a descriptor per failed search and holds 1016 of its 1024; new searches fail" \
  "search-frontend busy on one core with the traffic surge (busy, not saturated)"
echo "recorded the derived host cases in $OUT"
