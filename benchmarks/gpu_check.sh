#!/usr/bin/env bash
# One-command GPU check: on one H100/H200 with torch preinstalled (no Ray, no FFCV, no network),
# in under 8 minutes, from the repository root:
#
#     bash benchmarks/gpu_check.sh                 # CUDA
#     bash benchmarks/gpu_check.sh --device cpu    # CI-sized dry run of the same stages (~1-3 min)
#
# Stages, each under `timeout` (clamped to what is left of GPU_CHECK_BUDGET seconds, so the whole
# check ends in time); a failing stage is recorded and the next one runs:
#   prepare          digits-LT, Arrow files only (python -m daso_ray.prepare digits --no-ffcv)
#   gpu_tests        pytest -m gpu: tests/test_gpu.py (augmentation, bf16 step, resume, sync count)
#                    and the gpu-marked tests of other files
#   step_eager       benchmarks/step.py, FixMatch and DASO, WRN-28-2, B=64, mu=2 (P3)
#   loop             benchmarks/trainer_loop.py: the whole Trainer loop, data -> step -> evaluation
#   pack             benchmarks/pack.py: 4 trials packed on one GPU (P5)
#   step_compiled    the step with run.compile
#   step_cudagraphs  the step with torch.compile(mode="reduce-overhead") (CUDA graphs)
# P8 (250k iterations + 500 evaluations) is estimated from the loop stage. Results: one table on
# stdout and ${OUT}/gpu_check.json (rewritten after every stage), log in ${OUT}/gpu_check.log.
#
# Environment: PYTHON (default python3), OUT (default benchmarks/results/gpu_check),
# GPU_CHECK_BUDGET (seconds for all stages; default 450 on CUDA). pydantic and its small
# dependencies are installed from .whl/ into /tmp/site when the interpreter lacks them.
# Exit status: 0 when every stage ran to completion (goals missed are in the table), 1 otherwise.
set -uo pipefail

DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=${2:-}; shift; [ $# -gt 0 ] && shift ;;
    --device=*) DEVICE=${1#*=}; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (usage: bash benchmarks/gpu_check.sh [--device cuda|cpu])" >&2
       exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "error: --device must be cuda or cpu, not '$DEVICE'" >&2; exit 2 ;; esac
[ -f benchmarks/gpu_check.sh ] || { echo "error: run from the repository root" >&2; exit 2; }

PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT/stages" && OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/stages/* "$OUT/gpu_check.json"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

# pydantic (the config) is the one import the GPU image lacks; its wheels travel in .whl/.
if ! "$PY" -c "import pydantic; assert pydantic.VERSION >= '2'" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "error: installing .whl/*.whl into /tmp/site failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "$DEVICE" = cuda ]; then
  # Measured on an H200 (2026-11-29): prepare 15 s, gpu_tests 34 s, step_eager 19 s, loop 71 s,
  # pack 56 s; step_compiled needs ~36 s (FixMatch, 1 graph) + ~88 s (DASO, 3 graphs) of
  # compilation before its timed rounds, so CUDA graphs, last, gets what is left.
  BUDGET=${GPU_CHECK_BUDGET:-450}
  STEP=(--iters 20 --rounds 3 --warmup 5)
  PACK=(--trials 4 --seconds 10)
  LOOP=(--period 100 --evals 2 --rounds 1 --workers 4)
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'" || exit 1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  BUDGET=${GPU_CHECK_BUDGET:-600}
  STEP=(--arch wrn10_1 --batch 8 --iters 2 --rounds 1 --warmup 1)
  PACK=(--trials 2 --seconds 2 --arch wrn10_1 --batch 8)
  # FixMatch: trainer_loop's DASO needs --period >= 100 (its pre-training spans one window and
  # must cover DASO's distribution refresh period), too long for a CPU dry run.
  LOOP=(--algo fixmatch --arch wrn10_1 --batch 8 --period 5 --evals 1 --rounds 1 --workers 1)
fi
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
"$PY" -c "import daso_ray.engine.loop" || { echo "error: daso_ray does not import with $PY (see above)"; exit 1; }

DATA=$(mktemp -d /tmp/gpu_check_data.XXXXXX)
trap 'rm -rf "$DATA"' EXIT
START=$SECONDS
FAILED=0

# stage NAME SECONDS CMD...: run CMD under a timeout, record {rc, seconds, limit}, regather.
stage() {
  local name=$1 want=$2 t0=$SECONDS rc
  shift 2
  local left=$((BUDGET - (SECONDS - START)))
  local limit=$((want < left ? want : left))
  if [ "$limit" -lt 10 ]; then
    echo "== $name: not started, the ${BUDGET} s budget is spent"; rc=124; limit=0
  else
    echo "== $name (limit ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@"; rc=$?
  fi
  printf '{"stage": "%s", "rc": %d, "seconds": %d, "limit": %d}\n' \
    "$name" "$rc" $((SECONDS - t0)) "$limit" > "$OUT/stages/$name.status"
  [ "$rc" -eq 0 ] || FAILED=1
  "$PY" -m benchmarks.run --gather "$OUT" --device "$DEVICE" --quiet || echo "warning: gather failed"
}

stage prepare 60 "$PY" -m daso_ray.prepare digits --out "$DATA/digits" --no-ffcv
# Every test file with gpu-marked tests (tests/test_gpu.py and those beside other subjects).
mapfile -t GPU_TESTS < <(grep -l "pytest.mark.gpu" tests/test_*.py)
stage gpu_tests 150 env GPU_CHECK_OUT="$OUT/stages" "$PY" -m pytest -q -m gpu "${GPU_TESTS[@]}" \
  --continue-on-collection-errors -p no:cacheprovider -o addopts= --junitxml="$OUT/stages/gpu_tests.xml"
stage step_eager 45 "$PY" -m benchmarks.step --device "$DEVICE" --modes eager "${STEP[@]}" \
  --out "$OUT/stages/step_eager.json"
stage loop 100 "$PY" -m benchmarks.trainer_loop --device "$DEVICE" --loaders torch "${LOOP[@]}" \
  --data "$DATA/digits" --out "$OUT/stages/loop.json"
stage pack 70 "$PY" -m benchmarks.pack --device "$DEVICE" "${PACK[@]}" --out "$OUT/stages/pack.json"
stage step_compiled 170 "$PY" -m benchmarks.step --device "$DEVICE" --modes compiled "${STEP[@]}" \
  --out "$OUT/stages/step_compiled.json"
stage step_cudagraphs 120 "$PY" -m benchmarks.step --device "$DEVICE" --modes cudagraphs "${STEP[@]}" \
  --out "$OUT/stages/step_cudagraphs.json"

echo
"$PY" -m benchmarks.run --gather "$OUT" --device "$DEVICE"
echo "gpu_check: $DEVICE, $((SECONDS - START)) s of stages; JSON $OUT/gpu_check.json, log $OUT/gpu_check.log"
if [ "$FAILED" -ne 0 ]; then
  echo "gpu_check: some stages failed (see the 'stage' rows above)"
  exit 1
fi
