#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, and nothing that is already there.
# - cargo-nextest: the test runner (the machine image ships it; installed with `cargo install` if not).
# - mount/umount (util-linux): the disk-full test mounts a small tmpfs (needs root).
# - PostgreSQL 15 with contrib (pg_stat_statements): the database tests start throwaway
#   clusters with initdb themselves; no server is left running.
# - Python's OpenTelemetry SDK (opentelemetry-sdk, OTLP/HTTP exporter) in target/otel-venv: the
#   traces tests run two instrumented services with it.
# - Debian's Chromium and its chromedriver, and Selenium in the same venv: the web end-to-end test
#   (tests/web_e2e.rs -> tests/e2e/web.py) drives the page of `oncall serve` in headless Chromium.
#   Selenium is pointed at /usr/bin/chromedriver and /usr/bin/chromium, so it downloads nothing.
# - The Python MCP SDK (mcp), in the same venv: the real MCP client and server of tests/mcp.rs.
# - Debian's Prometheus and node-exporter: the fleet tests start both on loopback ports (the
#   packaged services are not started during the install; nothing is left running).
set -euo pipefail

need_apt=()
command -v mount >/dev/null 2>&1 || need_apt+=(mount)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql-15 postgresql-contrib-15)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
[ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || need_apt+=(prometheus-node-exporter)
# sysstat: the manual USE checklist (mpstat, iostat, sar) that `cargo bench --bench host_snapshot`
# measures oncall against.
command -v mpstat >/dev/null 2>&1 || need_apt+=(sysstat)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${need_apt[*]}" >&2
    apt-get update -qq
    # The packages' own services (PostgreSQL's main cluster, Prometheus, node-exporter) are not
    # needed: the tests start their own on free ports. Rather than stopping services afterwards
    # (which could stop a user's own), Debian's policy-rc.d denies starting any during this
    # install; it is removed again unless one was already there.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n# oncall test setup: no service starts during its install\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      own_policy=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  else
    echo "warning: missing ${need_apt[*]}; run this script as root to install them" >&2
  fi
fi
# The OpenTelemetry SDK the traces tests run as real services (Python, from PyPI).
venv="$(dirname "$0")/../target/otel-venv"
if ! "$venv/bin/python" -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http" >/dev/null 2>&1; then
  echo "installing the OpenTelemetry Python SDK into target/otel-venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    opentelemetry-sdk==1.45.0 opentelemetry-exporter-otlp-proto-http==1.45.0
fi
# Selenium for the web end-to-end test, in the same venv.
if ! "$venv/bin/python" -c "import selenium" >/dev/null 2>&1; then
  echo "installing Selenium into target/otel-venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check selenium==4.51.0
fi
# The Python MCP SDK, in the same venv: the MCP tests use it as a real client of oncall and to
# write the external MCP server oncall's agent uses (tests/mcp.rs, tests/mcp/*.py).
if ! "$venv/bin/python" -c "import mcp" >/dev/null 2>&1; then
  echo "installing the Python MCP SDK into target/otel-venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check mcp==2.3.0
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
