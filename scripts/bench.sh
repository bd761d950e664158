#!/usr/bin/env bash
# Set up, fetch and verify MNIST (offline fallback included), run the standard workload on every
# installed framework, write records under results/, print the table. Extra arguments go to `run`:
#   bash scripts/bench.sh                      # the standard workload (50 epochs)
#   bash scripts/bench.sh --preset smoke       # a quick check
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "${DLBENCH_EXTRAS:-torch,tensorflow,jax}"
.venv/bin/python -m runner data fetch --dataset mnist
exec .venv/bin/python -m runner run "$@"
