#!/usr/bin/env bash
# Create (or reuse) .venv and install dlbench with the given extras, pinned by constraints.txt.
#   bash scripts/setup.sh torch,dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-torch}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi
echo "setup: installing dlbench[$extras] (constraints.txt)" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$extras]"
