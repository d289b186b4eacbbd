#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, and nothing that is already there.
# - cargo-nextest: the test runner (the machine image ships it; installed from crates.io if not).
# - mount/umount (util-linux): the disk-full test mounts a small tmpfs (needs root).
set -euo pipefail

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
if ! command -v mount >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq mount
  else
    echo "warning: mount is missing; the disk-full test will be skipped" >&2
  fi
fi
