#!/usr/bin/env bash
# Set up, fetch and verify MNIST (offline fallback included), run the standard workload on every
# installed framework, write records under dlbench-results/ (`run`'s default; not tracked), print the
# table. Extra arguments go to `run`:
#   bash scripts/bench.sh                      # the standard workload (50 epochs)
#   bash scripts/bench.sh --preset smoke       # a quick check
#   bash scripts/bench.sh --out results/NAME   # records to commit: results/ holds only those (results/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "${DLBENCH_EXTRAS:-torch,tensorflow,jax}"
.venv/bin/python -m runner data fetch --dataset mnist
exec .venv/bin/python -m runner run "$@"
