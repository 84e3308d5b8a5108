#!/usr/bin/env bash
# Benchmarks the live channel: `tonearm up` (release) on a fresh data dir, 1,000 listeners
# following one artist, 10,000 `GET /v1/me/live` streams held open between them (the
# server's memory per stream, from its VmRSS), then 30 presence updates by the artist,
# each timed from the heartbeat to its arrival on every stream.
# Usage: ./bench/live.sh [CONNECTIONS] [FOLLOWERS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
connections="${1:-10000}"
followers="${2:-1000}"
cargo build --release -p tonearm -p tonearm-bench
data="$(mktemp -d)"
port=18480
trap 'kill "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
# Budgets lifted: one client registers and connects everyone from one address.
TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=1000000 \
TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=1000000 \
RUST_LOG=warn "$CARGO_TARGET_DIR/release/tonearm" up --port "$port" --data-dir "$data" &
server=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
"$CARGO_TARGET_DIR/release/tonearm-bench" live --url "http://127.0.0.1:$port" \
    --connections "$connections" --followers "$followers" --pid "$server"
