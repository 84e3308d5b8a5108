#!/usr/bin/env bash
# Benchmarks voice: Whisper's real-time factor on a 20 s clip and on 8 short requests at
# once (batched, and one by one), the voice's speed and peak memory, with faster-whisper
# (CTranslate2, the same model files) timed on the same clip in the same run.
# Usage: ./bench/voice.sh [repeat]
set -euo pipefail
cd "$(dirname "$0")/.."
repeat="${1:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
cargo build --release -p tonearm -p tonearm-bench
bin="$CARGO_TARGET_DIR/release"
"$bin/tonearm" models fetch
# The reference, in a virtual environment of its own (cached beside the target dir).
venv="$HOME/.cache/tonearm/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import faster_whisper' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q faster-whisper==1.2.1
fi
"$bin/tonearm-bench" voice --repeat "$repeat" --reference "$venv/bin/python"
