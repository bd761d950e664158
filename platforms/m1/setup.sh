#!/usr/bin/env bash
# Apple Silicon in one command: a venv with the locked packages (torch with MPS, tensorflow +
# tensorflow-metal, jax), MNIST fetched and verified, then the Metal check for every framework.
#   bash platforms/m1/setup.sh                      # -> .venv-m1
#   .venv-m1/bin/python -m runner --platform m1     # the standard workload; the table at the end
# PYTHON=/path/to/python3.12 picks the interpreter (the lock is for Python 3.12, macOS 14+ arm64).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(uname -s)" != Darwin ] || [ "$(uname -m)" != arm64 ]; then
  echo "setup: needs macOS on Apple Silicon; this is $(uname -sm) (under Rosetta? use an arm64 terminal and Python)" >&2
  exit 2
fi
major="$(sw_vers -productVersion | cut -d. -f1)"
if [ "$major" -lt 14 ]; then
  echo "setup: macOS $(sw_vers -productVersion): PyTorch 2.13 needs macOS 14 or newer" >&2
  exit 2
fi
py="${PYTHON:-python3.12}"
if ! command -v "$py" >/dev/null; then
  echo "setup: needs Python 3.12 (the lock's): brew install python@3.12, or PYTHON=/path/to/python3.12" >&2
  exit 2
fi
"$py" -c 'import platform, sys; assert sys.version_info[:2] == (3, 12) and platform.machine() == "arm64", (sys.version, platform.machine())' \
  || { echo "setup: $py is not an arm64 Python 3.12" >&2; exit 2; }
[ -x .venv-m1/bin/python ] || "$py" -m venv .venv-m1
echo "setup: installing platforms/m1/requirements.lock (exact versions and hashes)" >&2
.venv-m1/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r platforms/m1/requirements.lock
.venv-m1/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
.venv-m1/bin/python -m pip check
.venv-m1/bin/python -m runner data fetch --dataset mnist
echo "setup: which framework reaches the GPU:" >&2
.venv-m1/bin/python -m runner.machine.metal || true  # exit 1 = some framework runs on the CPU (it says why)
echo "setup: done; run: .venv-m1/bin/python -m runner --platform m1" >&2
