#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite (slow tests included).
#   bash scripts/test.sh            # everything, as CI runs it
#   bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh torch,tensorflow,jax,dev
exec .venv/bin/python -m pytest "$@"
