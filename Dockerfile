# syntax=docker/dockerfile:1
# oncall in a container: `oncall serve` as a non-root user, its data in a volume.
# Build: docker build -t oncall:latest .      Run and operate it: docs/deploy.md.
# tests/deploy.rs parses this file and runs the binary the way the final stage does.

# --- build stage: the release binary -------------------------------------------------------
# The toolchain is the crate's rust-version (Cargo.toml).
FROM rust:1.95-bookworm AS build
WORKDIR /src
# What the build reads and nothing else (.dockerignore keeps target/, .git/ and data out).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY prompts ./prompts
COPY tools ./tools
RUN cargo build --release --locked --bin oncall \
 && strip target/release/oncall

# --- runtime stage: a small Debian with CA certificates, no compiler, no shell tools added ---
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to a model endpoint, Slack, Prometheus or a trace backend.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so a volume's ownership and Kubernetes' runAsUser can name it.
RUN groupadd --system --gid 10001 oncall \
 && useradd --system --uid 10001 --gid oncall --home-dir /var/lib/oncall --shell /usr/sbin/nologin oncall \
 && install -d -o oncall -g oncall -m 0750 /var/lib/oncall
COPY --from=build /src/target/release/oncall /usr/local/bin/oncall
# The whole configuration can come from ONCALL_* variables (or mount a file and set
# ONCALL_CONFIG). Secrets (ONCALL_TOKEN, SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, model keys) are
# never baked in: pass them at run time (--env-file, or an orchestrator's secrets).
ENV ONCALL_SERVER__LISTEN=0.0.0.0:4318 \
    ONCALL_SERVER__DATA_DIR=/var/lib/oncall
# The SQLite incident store (oncall.db) and the hash-chained audit log (audit.jsonl).
VOLUME ["/var/lib/oncall"]
WORKDIR /var/lib/oncall
EXPOSE 4318
USER 10001:10001
# Liveness without a token and without curl: bash's /dev/tcp asks GET /healthz on the port
# ONCALL_SERVER__LISTEN names, and is healthy only on a 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ONCALL_SERVER__LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM (docker stop) stops taking requests and finishes those in flight.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/oncall"]
CMD ["serve"]
