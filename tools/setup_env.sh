#!/usr/bin/env bash
# Build the whole dlu_mm stack into .venv/ at the repo root. Idempotent: a
# second run that finds nothing changed takes seconds.
#
# Versions come from requirements/stack.txt (a pip constraints file, the one
# place they are pinned). mmcv 2.1.0 has no wheel on PyPI: it is compiled from
# its sdist (7-25 min on 2 cores, once per machine: pip's wheel cache keeps the
# result). On a machine with nvcc, mmcv's and torch's CUDA builds are used.
#
# Environment: PYTHON (interpreter for the venv, default python3),
# MAX_JOBS (compile jobs, default nproc).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PINS="$ROOT/requirements/stack.txt"
STAMP="$VENV/.dlu_mm_stack"
PY="$VENV/bin/python"
STEP="start"

trap 'echo "[setup_env] FAILED during: $STEP. See the output above; fix the cause and re-run bash tools/setup_env.sh (finished steps are skipped)." >&2' ERR
step() { STEP="$1"; echo "[setup_env] $1"; }
pip_c() { "$PY" -m pip install --disable-pip-version-check -c "$PINS" "$@"; }

# Everything that decides what gets installed or built.
fingerprint() {
  cat "$PINS" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$ROOT"/dlu_mm/ops/csrc/* "$0" 2>/dev/null |
    sha256sum | cut -d' ' -f1
}
WANT=$(fingerprint)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] &&
  "$PY" -c "import dlu_mm, mmcv, mmdet, mmseg, mmdeploy" 2>/dev/null; then
  echo "[setup_env] .venv is up to date"
  exit 0
fi

step "create the virtual environment ($VENV)"
if [[ ! -x "$PY" ]]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
"$PY" -c 'import sys; assert (3, 9) <= sys.version_info[:2] <= (3, 12), sys.version' ||
  { echo "[setup_env] needs Python 3.9-3.12 (set PYTHON=...)" >&2; exit 1; }

CUDA=0
command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && CUDA=1

pinned() { sed -n "s/^$1==//p" "$PINS"; }

step "install torch $(pinned torch) (CUDA build: $CUDA)"
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(pinned torch)')" 2>/dev/null; then
  # torch is resolved without the setuptools pin (see below).
  "$PY" -m pip install --disable-pip-version-check -q \
    -c <(grep -v "^setuptools" "$PINS") torch
fi
# mmcv's setup.py imports pkg_resources (setuptools < 70); torch declares
# setuptools>=77 as metadata only, so this pin goes in without resolving torch.
# wheel (which builds mmcv's wheel here) needs packaging, installed alongside.
pip_c -q --no-deps setuptools wheel packaging ninja

step "build mmcv $(pinned mmcv) from its sdist (once per machine, 7-25 min on 2 cores; cached by pip after)"
if ! "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$(pinned mmcv)')" 2>/dev/null; then
  MMCV_WITH_OPS=1 FORCE_CUDA=$CUDA MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    pip_c --no-build-isolation mmcv
fi

step "install mmengine, mmdet, mmsegmentation and the tools' dependencies"
pip_c -q mmengine mmdet mmsegmentation pycocotools numpy opencv-python \
  ftfy regex scikit-image matplotlib scipy shapely onnx onnxruntime onnxscript pytest \
  triton

step "install mmdeploy $(pinned mmdeploy) with aenum, grpcio, multiprocess, dill (--no-deps)"
# --no-deps: mmdeploy 1.3.1 declares protobuf<=3.20.2, and resolving that
# would downgrade protobuf and onnx below what torch's ONNX exporter and
# onnxscript use here; nothing dlu_mm.deploy runs needs the old protobuf.
# These four are what mmdeploy imports at run time; its other requirements
# (onnx, mmengine, numpy, prettytable, six, terminaltables, matplotlib) are
# installed above.
pip_c -q --no-deps mmdeploy aenum grpcio multiprocess dill

step "install dlu_mm in editable mode (compiles the native reassembly kernels)"
# --no-deps: the stack is in place; resolving torch again would fight the
# setuptools pin above. --no-build-isolation: the kernels are compiled
# against this venv's torch. DLU_MM_WITH_EXT=1: a kernel build failure fails
# here (a plain `pip install .` would install without the kernels instead).
DLU_MM_WITH_EXT=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  pip_c -q --no-build-isolation --no-deps -e "$ROOT"

step "check the installation"
"$PY" - <<'PY'
import mmcv, mmdet, mmseg, mmengine, mmdeploy, torch
import dlu_mm
from dlu_mm.ops import native
assert native.is_built(), 'dlu_mm._ext was not built'
print(f'[setup_env] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmdeploy {mmdeploy.__version__}, '
      f'dlu_mm {dlu_mm.__version__} (native kernels built)')
PY
echo "$WANT" > "$STAMP"
