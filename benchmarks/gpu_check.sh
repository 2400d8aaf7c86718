#!/usr/bin/env bash
# Issue 9's GPU check: one table (benchmarks/gpu_bench.py) in at most 8 minutes, on a CUDA
# machine with no network. Installs nothing and imports no Hydra: it needs only torch,
# torchvision, numpy and pillow, and runs from the checkout (PYTHONPATH), not an install.
#
#   bash benchmarks/gpu_check.sh                 # CUDA; table also in $OUT/gpu_bench.{md,json} (else ./)
#   bash benchmarks/gpu_check.sh --cpu-smoke     # every row at tiny sizes on the CPU, < 1 minute
#   bash benchmarks/gpu_check.sh --out DIR/NAME  # other arguments go to gpu_bench.py
#   bash benchmarks/gpu_check.sh --deadline 600  # gpu_bench.py's deadline; this script stops it 40 s later
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=python

args=("$@")
if [[ " $* " != *" --out "* ]]; then
  args+=(--out "${OUT:-.}/gpu_bench")  # the device tool brings $OUT back
fi
deadline=""  # the caller's --deadline (gpu_bench.py keeps to it itself): the backstop comes 40 s after it
for ((i = 0; i < ${#args[@]} - 1; i++)); do
  if [[ ${args[i]} == --deadline ]]; then deadline=${args[i + 1]}; fi
done
if [[ " $* " == *" --cpu-smoke "* ]]; then
  limit=120  # gpu_bench.py's smoke deadline is 90 s
else
  limit=460  # gpu_bench.py keeps to 420 s itself; this is the backstop
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader >&2 || true
fi
if [[ -n $deadline ]]; then
  limit=$(awk -v d="$deadline" 'BEGIN { if (d + 0 <= 0) exit 1; printf "%d", d + 40.999 }') \
    || { echo "gpu_check: --deadline $deadline is not a positive number of seconds" >&2; exit 2; }
fi
# SIGTERM at the limit: gpu_bench.py then prints the rows it has measured; SIGKILL 10 s later.
status=0
timeout -s TERM -k 10 "$limit" "$PY" benchmarks/gpu_bench.py "${args[@]}" || status=$?
if [[ $status -eq 124 ]]; then
  echo "gpu_check: stopped at the ${limit} s limit (the table above holds what was measured)" >&2
fi
exit "$status"
