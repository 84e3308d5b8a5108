#!/usr/bin/env bash
# What the gateway adds: `GET /v1/me` at 64 concurrent clients through `serve gateway` and
# straight to `serve auth` (with the identity the gateway would prove), 20 s each, on one
# machine. Both processes run release builds on SQLite and an in-memory cache.
# Usage: ./bench/gateway.sh [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
concurrency="${1:-64}"
cargo build --release -p tonearm -p tonearm-bench
bin="$CARGO_TARGET_DIR/release/tonearm"
data="$(mktemp -d)"
trap 'kill $auth $gateway 2>/dev/null || true; rm -rf "$data"' EXIT
export TONEARM_INTERNAL__IDENTITY_SECRET="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export RUST_LOG=warn
TONEARM_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_IP=1000000 \
    "$bin" serve auth --port 18581 --data-dir "$data/auth" &
auth=$!
TONEARM_GATEWAY__UPSTREAMS__AUTH=http://127.0.0.1:18581 \
TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=100000000 \
TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=100000000 \
    "$bin" serve gateway --port 18580 --data-dir "$data/gateway" &
gateway=$!
for port in 18581 18580; do
    for _ in $(seq 1 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
        sleep 0.2
    done
done
bench="$CARGO_TARGET_DIR/release/tonearm-bench"
"$bench" me --url http://127.0.0.1:18580 --concurrency "$concurrency" --seconds 20
"$bench" me --url http://127.0.0.1:18580 --concurrency "$concurrency" --seconds 20 \
    --direct http://127.0.0.1:18581 --secret "$TONEARM_INTERNAL__IDENTITY_SECRET"
