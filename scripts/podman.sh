#!/usr/bin/env bash
# Build and run the dlbench images with podman on a machine without a Docker engine or a registry.
#   bash scripts/podman.sh setup                 # podman/runc/mmdebstrap if missing, config, local Debian base
#   bash scripts/podman.sh build cpu|cuda        # -> localhost/dlbench:cpu | dlbench:cuda
#   bash scripts/podman.sh run cpu [RUN FLAGS]   # results in ./results-image (DLBENCH_RESULTS=DIR moves it)
#   bash scripts/podman.sh save cuda dlbench-cuda.tar   # docker-archive for `apptainer build x.sif docker-archive://x.tar`
#   eval "$(bash scripts/podman.sh env)"         # the same podman settings in this shell, for podman by hand
# Everything podman keeps (storage, run state, tmp, config) lives in $DLBENCH_PODMAN_DIR (default .podman/).
# Why each setting: docs/machines.md -> "Containers without a Docker engine" (crun fails on this
# hybrid cgroup setup: runc; the default ulimits ask for more than allowed; no registry: a local base).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${DLBENCH_PODMAN_DIR:-$repo/.podman}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf" TMPDIR="$work/tmp"

say() { echo "podman.sh: $*" >&2; }

configure() {
  mkdir -p "$work/tmp" "$work/storage" "$work/run"
  cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$work/tmp"
EOF
  cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "${DLBENCH_STORAGE_DRIVER:-overlay}"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
}

install_tools() {
  local missing=()
  for tool in podman runc mmdebstrap newuidmap slirp4netns; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "missing ${missing[*]}: install podman runc mmdebstrap uidmap slirp4netns (as root, apt-get)"; exit 1
  fi
  say "installing podman runc mmdebstrap uidmap slirp4netns"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc mmdebstrap uidmap slirp4netns >/dev/null
}

mirror() {  # the Debian mirror this machine's apt uses (deb822 or one-line sources)
  local uri
  uri="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')"
  [ -n "$uri" ] || uri="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')"
  echo "${uri:-http://deb.debian.org/debian}"
}

plan() {  # the build's arguments as podman flags, from the one place `python -m runner image build` reads too
  (cd "$repo" && "${DLBENCH_PYTHON:-python3}" -m runner image args "$@")
}

make_base() {  # no registry here: the base image is bootstrapped from Debian's own mirror (~20 s)
  local base="$1"
  podman image exists "$base" && return
  say "making $base with mmdebstrap from $(mirror)"
  mmdebstrap --quiet --variant=minbase bookworm "$work/base.tar" "$(mirror)"
  podman import "$work/base.tar" "$base" >/dev/null
  rm -f "$work/base.tar"
}

setup() {  # the base image is the one the plan names (DLBENCH_BASE_IMAGE moves it)
  local base
  install_tools; configure
  base="$(plan cpu | sed -n 's/^--build-arg=BASE_IMAGE=//p')"
  make_base "$base"
}

build() {
  local kind="${1:?build cpu|cuda}"; shift || true
  [ -f "$repo/images/$kind/Dockerfile" ] || { say "no images/$kind/Dockerfile (choose cpu or cuda)"; exit 2; }
  setup
  # build args and their mounts (the host CA for pip, the local wheels): runner/launch/images.py plan()
  local flags
  flags="$(plan "$kind")"
  mapfile -t args <<< "$flags"
  say "building dlbench:$kind ($(sed -n 's/^--build-arg=REVISION=/revision /p' <<< "$flags"))"
  podman build --pull=never --network=host --format docker -f "$repo/images/$kind/Dockerfile" \
    "${args[@]}" "$@" "$repo"
  podman image ls "dlbench:$kind" >&2
}

run() {
  local kind="${1:?run cpu|cuda}"; shift || true
  configure
  local results="${DLBENCH_RESULTS:-$PWD/results-image}" gpus=()
  mkdir -p "$results"
  [ "$kind" = cuda ] && gpus=(--device nvidia.com/gpu=all)  # CDI, as the NVIDIA container toolkit sets it up
  # --network=none: the image carries its data (MNIST verified at build time); a run needs no network
  # --user: the records belong to whoever runs this (the image works under any uid)
  exec podman run --rm --network=none --user "$(id -u):$(id -g)" "${gpus[@]}" -v "$results:/results" "dlbench:$kind" "$@"
}

case "${1:-}" in
  setup) setup ;;
  build) shift; build "$@" ;;
  run) shift; run "$@" ;;
  save) configure; podman save --format docker-archive -o "${3:?save cpu|cuda FILE.tar}" "dlbench:${2:?}" ;;
  env) configure; printf 'export CONTAINERS_CONF=%q CONTAINERS_STORAGE_CONF=%q TMPDIR=%q\n' \
         "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "$TMPDIR" ;;
  *) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
