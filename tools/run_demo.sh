#!/usr/bin/env bash
# The main job on built-in demo data, with its own set-up:
#   1. build/update .venv (tools/setup_env.sh),
#   2. generate the demo COCO-format set (tools/data/make_demo_coco.py),
#   3. train Faster R-CNN R18-FPN with DLU upsampling (tools/train.py),
#   4. evaluate COCO bbox mAP with pycocotools (tools/test.py).
# Usage: bash tools/run_demo.sh [--nearest] [extra tools/train.py args]
#   --nearest   the same run with nearest-neighbour FPN upsampling
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UPSAMPLER=dlu
if [[ "${1:-}" == "--nearest" ]]; then UPSAMPLER=nearest; shift; fi
CONFIG=configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py
WORK_DIR=work_dirs/demo-coco-$UPSAMPLER
DATA=${DLU_MM_DEMO_COCO_ROOT:-data/demo_coco/}
PY=.venv/bin/python

bash tools/setup_env.sh
if [[ ! -f "$DATA/annotations/instances_val2017.json" ]]; then
  echo "[demo] generating the demo dataset in $DATA"
  "$PY" tools/data/make_demo_coco.py --out-dir "$DATA"
fi
export DLU_MM_DEMO_COCO_ROOT=$DATA
echo "[demo] training ($UPSAMPLER upsampling) into $WORK_DIR"
start=$(date +%s)
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" \
  --cfg-options model.neck.upsample_cfg.type=$UPSAMPLER "$@"
trained=$(date +%s)
echo "[demo] evaluating $(cat "$WORK_DIR/last_checkpoint")"
"$PY" tools/test.py "$CONFIG" "$(cat "$WORK_DIR/last_checkpoint")" \
  --work-dir "$WORK_DIR" --cfg-options model.neck.upsample_cfg.type=$UPSAMPLER
echo "[demo] $UPSAMPLER: train $((trained - start)) s, test $(( $(date +%s) - trained )) s; metrics in $WORK_DIR/metrics.json"
