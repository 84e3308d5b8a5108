#!/usr/bin/env bash
# What the gateway adds: `GET /v1/me` at 64 concurrent clients through `serve gateway` and
# straight to `serve auth` (with the identity the gateway would prove), 20 s each. Both
# processes run release builds on SQLite, sharing a Redis of their own as deployed: the
# gateway reads session grants and spends rate-limit windows there.
#
# Two layouts, each measured both ways:
#   shared   every process floats over all cores (on a 2-core machine the gateway's hop
#            competes with the client and auth for the same CPU);
#   pinned   the client and auth on core 0 in both runs, the gateway on core 1: the
#            gateway as its own tier, as it is deployed, on a machine of this size.
# Usage: ./bench/gateway.sh [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
concurrency="${1:-64}"
cargo build --release -p tonearm -p tonearm-bench
bin="$CARGO_TARGET_DIR/release/tonearm"
bench="$CARGO_TARGET_DIR/release/tonearm-bench"
data="$(mktemp -d)"
pids=()
stop_all() {
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
}
trap 'stop_all; rm -rf "$data"' EXIT
export TONEARM_INTERNAL__IDENTITY_SECRET="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export RUST_LOG=warn
export TONEARM_AUTH__CACHE_URL=redis://127.0.0.1:18582 TONEARM_GATEWAY__CACHE_URL=redis://127.0.0.1:18582

wait_ready() {
    for port in "$@"; do
        for _ in $(seq 1 100); do
            curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && continue 2
            sleep 0.2
        done
        echo "error: nothing ready on port $port" >&2
        return 1
    done
}

measure() { # layout, and how the client, auth and gateway are started
    local layout="$1" client="$2" auth="$3" gateway="$4"
    rm -rf "${data:?}"/*
    redis-server --port 18582 --save "" --appendonly no >/dev/null &
    pids+=($!)
    until redis-cli -p 18582 ping >/dev/null 2>&1; do sleep 0.1; done
    # shellcheck disable=SC2086
    TONEARM_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_IP=1000000 \
        $auth "$bin" serve auth --port 18581 --data-dir "$data/auth" &
    pids+=($!)
    # shellcheck disable=SC2086
    TONEARM_GATEWAY__UPSTREAMS__AUTH=http://127.0.0.1:18581 \
    TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=100000000 \
    TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=100000000 \
        $gateway "$bin" serve gateway --port 18580 --data-dir "$data/gateway" 2>/dev/null &
    pids+=($!)
    wait_ready 18581 18580
    echo "== $layout: through the gateway, then straight to auth"
    # shellcheck disable=SC2086
    $client "$bench" me --url http://127.0.0.1:18580 --concurrency "$concurrency" --seconds 20
    # shellcheck disable=SC2086
    $client "$bench" me --url http://127.0.0.1:18580 --concurrency "$concurrency" --seconds 20 \
        --direct http://127.0.0.1:18581 --secret "$TONEARM_INTERNAL__IDENTITY_SECRET"
    stop_all
}

measure shared "" "" ""
if [ "$(nproc)" -ge 2 ]; then
    measure pinned "taskset -c 0" "taskset -c 0" "taskset -c 1"
fi
