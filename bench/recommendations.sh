#!/usr/bin/env bash
# Benchmarks recommendation serving over HTTP: the AI service's store seeded with 50k
# tracks (with embeddings) and 20k listeners' ~1M plays, the service started on it as it
# starts for real (read, trained, active listeners precomputed, index built), then
# precomputed lists, lists computed per request and similar tracks, each for 20 s.
# Usage: ./bench/recommendations.sh [DATABASE_URL]   (default: SQLite in a temporary dir)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
cargo build --release -p tonearm-bench
args=(recommendations --users 20000 --items 50000 --per-user 50 --concurrency 4 --seconds 20)
if [ $# -gt 0 ]; then
    args+=(--database "$1")
fi
"$CARGO_TARGET_DIR/release/tonearm-bench" "${args[@]}"
