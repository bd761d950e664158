#!/usr/bin/env bash
# The CUDA path for real, on a lent GPU machine: the parity gate on the GPU, then the standard
# workload `--repeats` times per framework, one framework after another, under a time budget;
# everything it made lands in $OUT, the records also tarred (one file to bring back).
#
#   OUT=/tmp/cuda BUDGET_S=520 FRAMEWORKS=jax,torch bash scripts/cuda_results.sh
#   OUT=/tmp/cuda RUNS="torch:step=graph jax:loop=scan jax:loop=step" bash scripts/cuda_results.sh
#
# Settings (environment): OUT (required), BUDGET_S (default 3600), FRAMEWORKS (default torch,jax),
# RUNS (default: FRAMEWORKS; space-separated FRAMEWORK[:KEY=VALUE[,KEY=VALUE]], each one `run` with
# those backend options, in that order), REPEATS (default 3), DEVICE (default cuda), PYTHON (default
# python3), EXTRA (more flags for both verify and run, e.g. "--dataset fashion"), VERIFY (default 1;
# 0 skips the gate: a second call for more runs after the gate passed). The data comes from
# $DLBENCH_DATA_DIR or the cache. scripts/device/run.sh calls this on a lent GPU machine.
#
# When the budget runs out, the running command gets SIGINT: the runner records the epochs it
# finished (status interrupted) and exits 130, so nothing measured is lost; a framework whose turn
# comes with under MIN_LEFT_S left is skipped and the log says so.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:?set OUT to the folder for the results, e.g. OUT=/tmp/cuda}
budget=${BUDGET_S:-3600}
frameworks=${FRAMEWORKS:-torch,jax}
read -ra runs <<<"${RUNS:-${frameworks//,/ }}"
# verify checks each framework of RUNS once, with its default options (every run checks its own mode)
frameworks=$(printf '%s\n' "${runs[@]}" | cut -d: -f1 | awk '!seen[$0]++' | paste -sd, -)
repeats=${REPEATS:-3}
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
read -ra extra <<<"${EXTRA:-}"
MIN_LEFT_S=30
GRACE_S=60   # after SIGINT: time to record what finished, then SIGKILL

mkdir -p "$out/records"
deadline=$(( $(date +%s) + budget ))
left() { echo $(( deadline - $(date +%s) )); }
say() { echo "$(date -u +%FT%TZ) $*" | tee -a "$out/session.log" >&2; }

say "start: budget ${budget}s, runs ${runs[*]}, repeats $repeats, device $device, extra: ${extra[*]:-none}"
command -v nvidia-smi >/dev/null && nvidia-smi -L >>"$out/session.log" 2>&1

t=$(left)
if [ "${VERIFY:-1}" = 0 ]; then
  say "verify: skipped (VERIFY=0)"
elif [ "$t" -gt "$MIN_LEFT_S" ]; then
  timeout --preserve-status -s INT -k "$GRACE_S" "$t" "$py" -m runner verify --framework "$frameworks" --device "$device" \
    "${extra[@]}" >"$out/verify.log" 2>&1
  say "verify: exit $? (table in verify.log)"
else
  say "verify: skipped, ${t}s left"
fi

for entry in "${runs[@]}"; do
  fw=${entry%%:*}
  options=()
  if [ "$entry" != "$fw" ]; then
    IFS=, read -ra pairs <<<"${entry#*:}"
    for pair in "${pairs[@]}"; do options+=(--option "$fw.$pair"); done
  fi
  name=$entry  # its label in the log; its log file: run-FRAMEWORK[-KEY=VALUE...].log
  t=$(left)
  if [ "$t" -le "$MIN_LEFT_S" ]; then
    say "$name: skipped, ${t}s left of the budget"
    continue
  fi
  timeout --preserve-status -s INT -k "$GRACE_S" "$t" "$py" -m runner run --framework "$fw" "${options[@]}" \
    --device "$device" --repeats "$repeats" "${extra[@]}" --out "$out/records" \
    >"$out/run-$(printf '%s' "$entry" | tr ':,' '--').log" 2>&1
  rc=$?
  case $rc in
    130) say "$name: interrupted by the budget (exit 130): the records say what finished" ;;
    137) say "$name: killed ${GRACE_S}s after the budget's SIGINT (exit 137): a run that did not stop lost its record" ;;
    *) say "$name: exit $rc" ;;
  esac
done

tar -czf "$out/records.tar.gz" -C "$out" records
say "done: $(find "$out/records" -name '*.json' | wc -l) record(s) in $out/records (and records.tar.gz)"
