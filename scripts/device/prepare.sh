#!/usr/bin/env bash
# Here, before a call on the lent GPU machine: make device-carry/ (git-ignored, well under the 64 MiB a
# call carries) with the wheels of scripts/device/wheels.txt for the device's Python and MNIST as the
# four verified .gz files (the store there checks them against the pins before a step trains).
#
#   bash scripts/device/prepare.sh            # then, with the device tool:
#   run(command="bash scripts/device/run.sh", carry=["device-carry"], timeout_s=540)
#
# Settings (environment): CARRY (default device-carry), PYTHON (default .venv/bin/python, the one whose
# package versions are pinned), DEVICE_PYTHON (default 3.12), WHEELS (default 1; 0 skips the download).
set -euo pipefail
cd "$(dirname "$0")/../.."
carry=${CARRY:-device-carry}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$carry/wheels" "$carry/data/mnist"
if [ "${WHEELS:-1}" = 1 ]; then
  grep -v '^\s*#' scripts/device/wheels.txt | while read -r name; do
    [ -n "$name" ] || continue
    version=$("$py" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" \
      --implementation cp --platform manylinux_2_17_x86_64 -d "$carry/wheels" "$name==$version"
  done
fi
"$py" - "$carry/data/mnist" <<'PY'
import gzip, sys
from pathlib import Path
from runner.data import store
from runner.data.catalog import DATASETS

folder, out = store.ensure("mnist"), Path(sys.argv[1])  # fetched and verified here (offline fallback)
for f in DATASETS["mnist"].files:
    (out / f"{f.name}.gz").write_bytes(gzip.compress((folder / f.name).read_bytes(), mtime=0))
PY
du -sh "$carry" | sed 's/^/device-carry: /'
ls "$carry/wheels" "$carry/data/mnist"
