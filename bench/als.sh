#!/usr/bin/env bash
# Benchmarks recommendation training: Tonearm's ALS on 100k users × 50k tracks × ~5M
# interactions (64 factors, 15 iterations), and the Python `implicit` library on the same
# matrix in the same run.
# Usage: ./bench/als.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
cargo build --release -p tonearm-bench
# The reference, in a virtual environment of its own (cached beside the target dir).
venv="$HOME/.cache/tonearm/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import implicit' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q implicit==0.7.2
fi
"$CARGO_TARGET_DIR/release/tonearm-bench" als --reference "$venv/bin/python"
