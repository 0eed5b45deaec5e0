#!/usr/bin/env bash
# Entry point of `make bench`: install the peers if needed, then run the benchmark.
# Knobs: BENCH_DURATION=5, BENCH_ONLY=direct,portkey, ... (see bench/README.md).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$BENCH_DIR/.."
bash "$BENCH_DIR/setup_peers.sh"
# run.py only needs the standard library.
PY="${BENCH_PYTHON:-$(command -v python3.11 || command -v python3)}"
exec "$PY" "$BENCH_DIR/run.py" "$@"
