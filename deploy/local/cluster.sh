#!/usr/bin/env bash
# Tonearm's deployed shape on one machine: every service its own process on a loopback
# port, two gateway and two streaming replicas, on PostgreSQL (a database per service),
# Redis, a Kafka-protocol broker, ClickHouse and an S3 server, installed and started when
# missing (scripts/engines.sh).
#
#   deploy/local/cluster.sh up        # start it all; waits until every process is ready
#   deploy/local/cluster.sh status    # each process: running? ready?
#   deploy/local/cluster.sh down      # stop every process (the engines keep running)
#   deploy/local/cluster.sh stop <name> / start <name>   # one process, e.g. playlist-1
#
# Settings (environment): TONEARM_BIN (default: a release build of this checkout),
# CLUSTER_DIR (default ~/.cache/tonearm/cluster: logs, pids, data), CLUSTER_PORT (first
# port, default 18100), CLUSTER_NAME (prefix of its databases and bucket, default
# tonearm_cluster). Every process inherits the caller's environment, so e.g.
# TONEARM_TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:4318 sends all their traces to a collector.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
export TONEARM_TEST_POSTGRES_URL="${TONEARM_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
export TONEARM_TEST_S3_BUCKET="${CLUSTER_NAME:-tonearm_cluster}"
TONEARM_TEST_S3_BUCKET="${TONEARM_TEST_S3_BUCKET//_/-}"
# shellcheck source=scripts/engines.sh
source scripts/engines.sh

dir="${CLUSTER_DIR:-$HOME/.cache/tonearm/cluster}"
name="${CLUSTER_NAME:-tonearm_cluster}"
base="${CLUSTER_PORT:-18100}"
mkdir -p "$dir/logs" "$dir/pids" "$dir/data"

# Every process: name, service, port.
processes=(
    "auth-1 auth $((base + 10))"
    "catalog-1 catalog $((base + 11))"
    "streaming-1 streaming $((base + 12))"
    "streaming-2 streaming $((base + 13))"
    "playlist-1 playlist $((base + 14))"
    "analytics-1 analytics $((base + 15))"
    "ai-1 ai $((base + 16))"
    "people-1 people $((base + 17))"
    "gateway-1 gateway $base"
    "gateway-2 gateway $((base + 1))"
)

url() { echo "http://127.0.0.1:$1"; }

binary() {
    if [ -n "${TONEARM_BIN:-}" ]; then
        echo "$TONEARM_BIN"
        return
    fi
    cargo build --release --locked -q -p tonearm >&2
    echo "$CARGO_TARGET_DIR/release/tonearm"
}

# The environment every process shares, then its own.
environment() { # service, process name
    local service="$1" process="$2" redis=redis://127.0.0.1:6379
    local postgres="$TONEARM_TEST_POSTGRES_URL"
    echo "TONEARM_INTERNAL__IDENTITY_SECRET=$(cat "$dir/identity-secret")"
    echo "TONEARM_EVENTS__URL=kafka://127.0.0.1:9092"
    echo "TONEARM_EVENTS__REPLICATION_FACTOR=1"
    echo "TONEARM_STORAGE__URL=s3://$TONEARM_TEST_S3_BUCKET"
    echo "TONEARM_STORAGE__ENDPOINT=$TONEARM_TEST_S3_ENDPOINT"
    echo "TONEARM_STORAGE__ACCESS_KEY_ID=$TONEARM_TEST_S3_ACCESS_KEY"
    echo "TONEARM_STORAGE__SECRET_ACCESS_KEY=$TONEARM_TEST_S3_SECRET_KEY"
    echo "TONEARM_AI__MODELS_DIR=${TONEARM_TEST_MODELS_DIR:-$HOME/.cache/tonearm/models}"
    echo "RUST_LOG=${RUST_LOG:-info}"
    local catalog auth
    catalog="$(url $((base + 11)))"
    auth="$(url $((base + 10)))"
    case "$service" in
    auth)
        echo "TONEARM_AUTH__DATABASE_URL=$postgres/${name}_auth"
        echo "TONEARM_AUTH__CACHE_URL=$redis"
        ;;
    catalog) echo "TONEARM_CATALOG__DATABASE_URL=$postgres/${name}_catalog" ;;
    streaming)
        echo "TONEARM_STREAMING__DATABASE_URL=$postgres/${name}_streaming"
        echo "TONEARM_STREAMING__CACHE_URL=$redis"
        ;;
    playlist)
        echo "TONEARM_PLAYLIST__DATABASE_URL=$postgres/${name}_playlist"
        echo "TONEARM_PLAYLIST__CATALOG_URL=$catalog"
        ;;
    analytics)
        echo "TONEARM_ANALYTICS__DATABASE_URL=$postgres/${name}_analytics"
        echo "TONEARM_ANALYTICS__WAREHOUSE_URL=$TONEARM_TEST_CLICKHOUSE_URL/${name}"
        echo "TONEARM_ANALYTICS__CATALOG_URL=$catalog"
        ;;
    ai)
        echo "TONEARM_AI__DATABASE_URL=$postgres/${name}_ai"
        echo "TONEARM_AI__CACHE_URL=$redis"
        echo "TONEARM_AI__CATALOG_URL=$catalog"
        ;;
    people)
        echo "TONEARM_PEOPLE__DATABASE_URL=$postgres/${name}_people"
        echo "TONEARM_PEOPLE__CACHE_URL=$redis"
        echo "TONEARM_PEOPLE__AUTH_URL=$auth"
        echo "TONEARM_PEOPLE__CATALOG_URL=$catalog"
        echo "TONEARM_PEOPLE__BILLING__WEBHOOK_SECRETS=[\"$(cat "$dir/webhook-secret")\"]"
        ;;
    gateway)
        echo "TONEARM_GATEWAY__CACHE_URL=$redis"
        echo "TONEARM_GATEWAY__UPSTREAMS__AUTH=$auth"
        echo "TONEARM_GATEWAY__UPSTREAMS__CATALOG=$catalog"
        echo "TONEARM_GATEWAY__UPSTREAMS__STREAMING=$(url $((base + 12))),$(url $((base + 13)))"
        echo "TONEARM_GATEWAY__UPSTREAMS__PLAYLIST=$(url $((base + 14)))"
        echo "TONEARM_GATEWAY__UPSTREAMS__ANALYTICS=$(url $((base + 15)))"
        echo "TONEARM_GATEWAY__UPSTREAMS__AI=$(url $((base + 16)))"
        echo "TONEARM_GATEWAY__UPSTREAMS__PEOPLE=$(url $((base + 17)))"
        ;;
    esac
}

running() { # process name
    local pid_file="$dir/pids/$1.pid"
    [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

ready() { # port
    curl -fs -o /dev/null --max-time 3 "$(url "$1")/readyz" 2>/dev/null
}

start_one() { # process name, service, port
    local process="$1" service="$2" port="$3" bin
    if running "$process"; then return 0; fi
    bin="$(binary)"
    mkdir -p "$dir/data/$process"
    local -a env_args
    mapfile -t env_args < <(environment "$service" "$process")
    env "${env_args[@]}" "$bin" serve "$service" --port "$port" --data-dir "$dir/data/$process" \
        </dev/null >>"$dir/logs/$process.log" 2>&1 &
    echo $! >"$dir/pids/$process.pid"
}

wait_ready() { # process name, port
    for _ in $(seq 1 240); do
        if ready "$2"; then return 0; fi
        if ! running "$1"; then
            echo "error: $1 exited; see $dir/logs/$1.log:" >&2
            # Its last words, without the frames of a backtrace.
            grep -Ev '^ +([0-9]+: |at )' "$dir/logs/$1.log" | tail -n 20 >&2
            return 1
        fi
        sleep 0.5
    done
    echo "error: $1 is not ready after 2 minutes; see $dir/logs/$1.log" >&2
    return 1
}

stop_one() { # process name
    local pid_file="$dir/pids/$1.pid"
    if running "$1"; then
        kill -TERM "$(cat "$pid_file")"
        for _ in $(seq 1 100); do
            running "$1" || break
            sleep 0.1
        done
        running "$1" && kill -KILL "$(cat "$pid_file")"
    fi
    rm -f "$pid_file"
}

find_process() { # process name → "name service port"
    for entry in "${processes[@]}"; do
        if [ "${entry%% *}" = "$1" ]; then
            echo "$entry"
            return 0
        fi
    done
    echo "error: no process $1 (one of: ${processes[*]%% *})" >&2
    return 1
}

case "${1:-}" in
up)
    ensure_postgres
    ensure_redis
    ensure_kafka
    ensure_s3
    ensure_clickhouse
    ensure_ffmpeg
    ensure_voice
    export TONEARM_TEST_CLICKHOUSE_URL
    [ -f "$dir/identity-secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/identity-secret"
    [ -f "$dir/webhook-secret" ] || echo "whsec_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$dir/webhook-secret"
    chmod 600 "$dir/identity-secret" "$dir/webhook-secret"
    bin="$(binary)"
    export TONEARM_BIN="$bin"
    TONEARM_AI__MODELS_DIR="${TONEARM_TEST_MODELS_DIR:-$HOME/.cache/tonearm/models}" "$bin" models fetch >/dev/null
    for entry in "${processes[@]}"; do
        # shellcheck disable=SC2086
        start_one $entry
    done
    for entry in "${processes[@]}"; do
        read -r process _ port <<<"$entry"
        wait_ready "$process" "$port"
    done
    say "Tonearm is up: $(url "$base") and $(url $((base + 1))) (webhook secret in $dir/webhook-secret)"
    ;;
down)
    # Gateways first, so that no request reaches a stopping service.
    for ((i = ${#processes[@]} - 1; i >= 0; i--)); do
        stop_one "${processes[$i]%% *}"
    done
    say "stopped"
    ;;
status)
    for entry in "${processes[@]}"; do
        read -r process service port <<<"$entry"
        state="stopped"
        if running "$process"; then
            state="running, not ready"
            ready "$port" && state="ready"
        fi
        printf '%-12s %-10s %s  %s\n' "$process" "$service" "$(url "$port")" "$state"
    done
    ;;
stop)
    entry="$(find_process "${2:?which process}")"
    stop_one "${entry%% *}"
    ;;
start)
    entry="$(find_process "${2:?which process}")"
    read -r process service port <<<"$entry"
    export TONEARM_TEST_CLICKHOUSE_URL="${TONEARM_TEST_CLICKHOUSE_URL:-clickhouse://127.0.0.1:8123}"
    export TONEARM_TEST_S3_ENDPOINT="${TONEARM_TEST_S3_ENDPOINT:-http://127.0.0.1:9900}"
    export TONEARM_TEST_S3_ACCESS_KEY="${TONEARM_TEST_S3_ACCESS_KEY:-tonearm}"
    export TONEARM_TEST_S3_SECRET_KEY="${TONEARM_TEST_S3_SECRET_KEY:-tonearm-secret}"
    start_one "$process" "$service" "$port"
    wait_ready "$process" "$port"
    ;;
*)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
