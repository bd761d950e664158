#!/usr/bin/env bash
# Any GPU cloud VM (Jetstream2, or any NVIDIA box): check the driver and the NVIDIA container toolkit,
# build (or load) dlbench:cuda, run it with the GPUs and a results folder, and say where the records are.
#   bash platforms/jetstream/run.sh                      # the standard workload, every framework
#   bash platforms/jetstream/run.sh --preset smoke       # any `run` flag passes through
#   DLBENCH_IMAGE_TAR=dlbench-cuda.tar bash platforms/jetstream/run.sh   # load a saved image instead of building
#   DLBENCH_RESULTS=DIR (default ./dlbench-results, as run's --out; results/ is for committed records), DLBENCH_ENGINE=docker|podman (default: docker if installed)
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "jetstream: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null \
  || fail "no nvidia-smi: this VM has no NVIDIA driver (Jetstream2: use a GPU flavor and a featured Ubuntu image; Ubuntu: sudo ubuntu-drivers install, then reboot)"
gpus="$(nvidia-smi -L 2>&1)" || fail "nvidia-smi cannot reach the driver: ${gpus%%$'\n'*}"
echo "jetstream: $gpus" >&2

engine="${DLBENCH_ENGINE:-$(command -v docker >/dev/null && echo docker || echo podman)}"
command -v "$engine" >/dev/null || fail "neither docker nor podman is installed"
toolkit="https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
if [ "$engine" = docker ]; then
  "$engine" info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia \
    || fail "docker has no nvidia runtime: install the NVIDIA Container Toolkit ($toolkit), then: sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
  gpu_args=(--gpus all)
else
  ls /etc/cdi/nvidia.yaml /var/run/cdi/nvidia*.yaml >/dev/null 2>&1 \
    || fail "no CDI spec for the GPUs: install the NVIDIA Container Toolkit ($toolkit), then: sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
  gpu_args=(--device nvidia.com/gpu=all)
fi

if ! "$engine" image inspect dlbench:cuda >/dev/null 2>&1; then
  if [ -n "${DLBENCH_IMAGE_TAR:-}" ]; then
    "$engine" load -i "$DLBENCH_IMAGE_TAR"
  else
    echo "jetstream: building dlbench:cuda (~7 GB of wheels; ~15 min)" >&2
    "$engine" build -f images/cuda/Dockerfile -t dlbench:cuda \
      --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" .
  fi
fi

results="$(mkdir -p "${DLBENCH_RESULTS:-dlbench-results}" && cd "${DLBENCH_RESULTS:-dlbench-results}" && pwd)"
rc=0
"$engine" run --rm "${gpu_args[@]}" --user "$(id -u):$(id -g)" -v "$results:/results" dlbench:cuda "$@" || rc=$?
echo "jetstream: records in $results (python -m runner compare $results prints the table again)" >&2
exit "$rc"
