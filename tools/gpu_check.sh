#!/usr/bin/env bash
# The one prepared GPU check of dlu_mm, for a bare GPU machine that has
# Python, CUDA PyTorch and Triton but no network and no mmcv; it installs
# nothing from the network. In under 6 minutes on one GPU it
#   1. runs the CUDA tests (tests/test_cuda.py: the Triton kernels against
#      the CPU reference, gradcheck in float64, fp16/bf16 tolerances, two
#      runs bit-identical, torch.compile and opcheck on CUDA tensors, 20
#      fp16 autocast training steps with loss scaling);
#   2. prints the benchmark table at 1x256x120x120, s=2 and s=4, float32 and
#      float16 (nearest, bilinear, portable CARAFE, mmcv's CARAFE, DLU fused
#      and plain, the ops alone; medians, peak memory, ratios to bilinear,
#      the bandwidth bound and the fraction reached, the GPU targets), with
#   3. mmcv's own CARAFE CUDA kernel as the anchor, compiled there from the
#      CARAFE files of mmcv's source distribution (--mmcv-sdist).
#
# Usage: bash tools/gpu_check.sh [--interpret] [--wheels DIR]
#                                [--mmcv-sdist FILE] [--out DIR]
#   --interpret   on a CPU machine: Triton's interpreter, tiny shapes, no
#                 anchor (what tests/test_gpu_check.py runs)
#   --wheels DIR  pure-Python wheels to install first, offline
#                 (pip --no-index --no-deps --target; default: .whl/ if it
#                 holds any); none are needed by default
#   --mmcv-sdist FILE  mmcv-2.1.0.tar.gz (default: .whl/mmcv-2.1.0.tar.gz if
#                 there); without it the mmcv case is skipped
#   --out DIR     where the log and the JSON tables go (default: $OUT, else
#                 work_dirs/gpu_check)
# Environment: PYTHON (default: .venv/bin/python if present, else python3);
#   GPU_CHECK_TEST_LIMIT / GPU_CHECK_BENCH_LIMIT: seconds the tests / each
#   benchmark table may take (default 300 / 120; a stage past its limit is
#   stopped and reported failed, the next one still runs: a lease is short).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
INTERPRET=0
WHEELS=.whl
SDIST=
OUTDIR=${OUT:-work_dirs/gpu_check}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --interpret) INTERPRET=1; shift ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --mmcv-sdist) SDIST=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    *) echo "gpu_check: unknown argument '$1' (see the header of $0)" >&2
       exit 2 ;;
  esac
done
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "$SDIST" && -f .whl/mmcv-2.1.0.tar.gz ]]; then SDIST=.whl/mmcv-2.1.0.tar.gz; fi
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check] $*" | tee -a "$LOG"; }
start=$(date +%s)

export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  TARGET=$(mktemp -d)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target "$TARGET" "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:$TARGET"
  say "installed $(ls "$WHEELS"/*.whl | wc -l) wheel(s) from $WHEELS"
fi

if [[ $INTERPRET == 1 ]]; then
  export DLU_MM_GPU_CHECK_INTERPRET=1 TRITON_INTERPRET=1
  export DLU_MM_REASSEMBLE_BACKEND=triton
  DEVICE=cpu
  BENCH=(--shape 1 8 6 6 --warmup 0 --repeats 1 --threads 1 --no-memory
         --cases nearest bilinear carafe_portable dlu 'dlu[torch]'
         'reassemble[triton]' 'reassemble[torch]' 'dlu_reassemble[triton]'
         'dlu_reassemble[torch]')
  RUNS=("2 float32")
else
  DEVICE=cuda
  BENCH=(--shape 1 256 120 120)
  if [[ -n "$SDIST" ]]; then BENCH+=(--mmcv-sdist "$SDIST" --mmcv-build-dir "${TMPDIR:-/tmp}/dlu_mm_mmcv_carafe"); fi
  RUNS=("2 float32" "2 float16" "4 float32" "4 float16")
fi

"$PYTHON" - <<'PY' 2>&1 | tee -a "$LOG"
import torch, triton
device = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU (interpreter)'
print(f'[gpu_check] torch {torch.__version__}, triton {triton.__version__}, {device}')
PY

FAILED=()
TEST_LIMIT=${GPU_CHECK_TEST_LIMIT:-300}
BENCH_LIMIT=${GPU_CHECK_BENCH_LIMIT:-120}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # the anchor's build
say "1. CUDA tests (tests/test_cuda.py, at most $TEST_LIMIT s)"
timeout "$TEST_LIMIT" "$PYTHON" -m pytest tests/test_cuda.py -q \
  -p no:cacheprovider -rs --durations=10 2>&1 |
  tee -a "$LOG" || FAILED+=("the CUDA tests")

say "2./3. benchmark tables"
for run in "${RUNS[@]}"; do
  read -r scale dtype <<< "$run"
  say "benchmark s=$scale $dtype on $DEVICE (at most $BENCH_LIMIT s)"
  timeout "$BENCH_LIMIT" "$PYTHON" tools/analysis/benchmark.py --device "$DEVICE" --scale "$scale" \
    --dtype "$dtype" "${BENCH[@]}" --json "$OUTDIR/bench_s${scale}_${dtype}.json" \
    2>&1 | tee -a "$LOG" || FAILED+=("the benchmark at s=$scale $dtype")
done
say "done in $(( $(date +%s) - start )) s; log and tables in $OUTDIR"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  say "FAILED: ${FAILED[*]} (see $LOG)"
  exit 1
fi
