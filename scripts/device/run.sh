#!/usr/bin/env bash
# There, on the lent GPU machine, in ONE call of the device tool (which sets $OUT and brings it back):
#   run(command="bash scripts/device/run.sh", carry=["device-carry"], timeout_s=540)
# Installs the carried wheels (scripts/device/prepare.sh made them) into a folder of its own, points
# the store at the carried MNIST, then scripts/cuda_results.sh: verify on the GPU, then each mode of
# RUNS on the standard workload under BUDGET_S, the records tarred into $OUT/records.tar.gz; then
# benchmarks/torch_step_overhead.py into $OUT/torch_step_overhead.txt (BENCH=0 skips it).
#
# Settings (environment): OUT (set by the device tool), CARRY (default device-carry), BUDGET_S
# (default 360: a 540 s call keeps 3 minutes for the install, the benchmark and the tarball), REPEATS (default 1),
# RUNS (default: every torch step mode and both JAX loops), DEVICE (default cuda), EXTRA.
# Tested on the CPU (DEVICE=cpu, a smoke spec) by tests/test_cuda_results.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
carry=${CARRY:-device-carry}
site=${SITE:-/tmp/dlbench-site}
: "${OUT:?set OUT to the folder for the results (the device tool sets it)}"
mkdir -p "$OUT"
if compgen -G "$carry/wheels/*.whl" >/dev/null; then
  ${PYTHON:-python3} -m pip install -q --no-index --no-deps --target "$site" "$carry"/wheels/*.whl \
    >"$OUT/install.log" 2>&1 || { echo "device: installing the carried wheels failed (see install.log)" >&2; exit 1; }
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HOME=${HOME_DIR:-/tmp/dlbench-home}
[ -d "$carry/data" ] && export DLBENCH_DATA_DIR="$PWD/$carry/data"
mkdir -p "$HOME"
export RUNS=${RUNS:-"torch:step=eager torch:step=graph torch:step=compile jax:loop=step jax:loop=scan"}
export BUDGET_S=${BUDGET_S:-360} REPEATS=${REPEATS:-1}
bash scripts/cuda_results.sh
rc=$?
# Then the paired in-process overhead benchmark (runner vs bare loop, eager and graph): ~1 minute
if [ "${DEVICE:-cuda}" = cuda ] && [ "${BENCH:-1}" = 1 ]; then
  timeout 120 ${PYTHON:-python3} benchmarks/torch_step_overhead.py --limit-train 12800 --epochs 4 \
    >"$OUT/torch_step_overhead.txt" 2>&1 || echo "device: torch_step_overhead.py failed (see its output)" >&2
fi
exit $rc
