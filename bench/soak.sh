#!/usr/bin/env bash
# Soaks `tonearm up` in a long mixed load and samples its memory: resident set, its
# anonymous part (the heap), and each in-process cache's fill from /metrics. The API
# budgets, the media guard and the per-address login throttle are lifted, so that the
# load, not a budget, is what the server meets.
# Usage: ./bench/soak.sh [seconds] [concurrency] [extra server environment, e.g. KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
concurrency="${2:-8}"
shift $(($# > 2 ? 2 : $#))
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
cargo build --release -p tonearm -p tonearm-bench
bin="$CARGO_TARGET_DIR/release"
data="$(mktemp -d)"
port=18491
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

env RUST_LOG=warn \
    TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=10000000 \
    TONEARM_GATEWAY__RATE_LIMITS__PREMIUM_PER_MINUTE=10000000 \
    TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=10000000 \
    TONEARM_GATEWAY__MEDIA_PER_IP_PER_SECOND=1000000 \
    TONEARM_GATEWAY__MEDIA_BURST_PER_IP=1000000 \
    TONEARM_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_IP=1000000 \
    "$@" "$bin/tonearm" up --port "$port" --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin/tonearm-bench" soak --url "http://127.0.0.1:$port" --concurrency "$concurrency" \
    --seconds "$seconds" --pid "$server"
sleep 30
echo "30 s after the load: $(grep VmRSS "/proc/$server/status")"
