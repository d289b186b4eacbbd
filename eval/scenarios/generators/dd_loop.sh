#!/usr/bin/env bash
# A shell writer loop: runs DD (a copy of dd under another name) again and again, each run
# rewriting FILE with MIB synchronous 1 MiB writes, until SECONDS have passed; removes FILE.
#   dd_loop.sh DD FILE MIB SECONDS
# Prints `ready pid=<pid>` when the first run starts; exits by itself at the deadline.
set -u
dd=$1 file=$2 mib=$3 end=$((SECONDS + $4))
trap 'kill $child 2>/dev/null; rm -f "$file"; exit 0' TERM INT
trap 'rm -f "$file"' EXIT
child=
first=1
while [ "$SECONDS" -lt "$end" ]; do
  timeout $((end - SECONDS + 1)) "$dd" if=/dev/zero of="$file" bs=1M count="$mib" oflag=dsync status=none & child=$!
  [ "$first" = 1 ] && { echo "ready pid=$$"; first=0; }
  wait "$child"
done
