#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite (slow tests included).
#   bash scripts/test.sh            # everything, as CI runs it
#   bash scripts/test.sh -m "not slow"
# Plain `pytest` skips the slow tests (pyproject's addopts); -m "" here clears that, and a -m given
# to this script comes after it, so it wins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh torch,tensorflow,jax,dev
# --durations: the slowest tests, so that a CI log shows where its time goes (keep CI under 45 min)
exec .venv/bin/python -m pytest -m "" --durations=30 "$@"
