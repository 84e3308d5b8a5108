#!/usr/bin/env bash
# Benchmarks the auth path under `tonearm up`: token-checked GET /v1/me at 50 clients and
# login (argon2id) at 8. Rate limits are lifted so that the server, not the budget, is
# what gets measured. Usage: ./bench/auth.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
cargo build --release -p tonearm -p tonearm-bench
bin="$CARGO_TARGET_DIR/release"
data="$(mktemp -d)"
port=18480
TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=100000000 \
TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=100000000 \
TONEARM_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_IP=100000000 \
RUST_LOG=warn "$bin/tonearm" up --port "$port" --data-dir "$data" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
"$bin/tonearm-bench" me --url "http://127.0.0.1:$port" --concurrency 50 --seconds "$seconds"
"$bin/tonearm-bench" login --url "http://127.0.0.1:$port" --concurrency 8 --seconds "$seconds"
