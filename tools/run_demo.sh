#!/usr/bin/env bash
# The main job on built-in demo data, with its own set-up:
#   1. build/update .venv (tools/setup_env.sh),
#   2. generate the demo data set if it is not there yet
#      (tools/data/make_demo_coco.py or tools/data/make_demo_ade.py),
#   3. train with DLU upsampling (tools/train.py),
#   4. evaluate (tools/test.py): COCO bbox mAP with pycocotools for detection,
#      mIoU with mmseg's IoUMetric for segmentation.
#
# Usage: bash tools/run_demo.sh [--seg] [--baseline] [extra tools/train.py args]
#   (default)   Faster R-CNN R18-FPN, DLU in the FPN, on data/demo_coco/
#   --seg       the segmentation demo instead, on data/demo_ade/
#   --baseline  the same run with the stock upsampling instead of DLU
#               (nearest in the FPN for detection, bilinear in the decoder
#               for segmentation); --nearest and --bilinear are aliases.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TASK=det
BASELINE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seg) TASK=seg; shift ;;
    --det) TASK=det; shift ;;
    --baseline|--nearest|--bilinear) BASELINE=1; shift ;;
    *) break ;;
  esac
done

if [[ $TASK == det ]]; then
  CONFIG=configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py
  KEY=model.neck.upsample_cfg.type
  STOCK=nearest
  DATA=${DLU_MM_DEMO_COCO_ROOT:-data/demo_coco/}
  GENERATOR=tools/data/make_demo_coco.py
  MARKER=annotations/instances_val2017.json
  export DLU_MM_DEMO_COCO_ROOT=$DATA
else
  CONFIG=configs/demo/upernet-dlu_r18_demo-ade-256x256.py
  KEY=model.decode_head.upsample_cfg.type
  STOCK=bilinear
  DATA=${DLU_MM_DEMO_ADE_ROOT:-data/demo_ade/}
  GENERATOR=tools/data/make_demo_ade.py
  MARKER=annotations/validation
  export DLU_MM_DEMO_ADE_ROOT=$DATA
fi
UPSAMPLER=dlu
if [[ $BASELINE == 1 ]]; then UPSAMPLER=$STOCK; fi
WORK_DIR=work_dirs/demo-$TASK-$UPSAMPLER
PY=.venv/bin/python

bash tools/setup_env.sh
if [[ ! -e "$DATA/$MARKER" ]]; then
  echo "[demo] generating the demo data set in $DATA"
  "$PY" "$GENERATOR" --out-dir "$DATA"
fi
echo "[demo] training ($UPSAMPLER upsampling) into $WORK_DIR"
start=$(date +%s)
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" \
  --cfg-options "$KEY=$UPSAMPLER" "$@"
trained=$(date +%s)
CKPT=$(cat "$WORK_DIR/last_checkpoint")
echo "[demo] evaluating $CKPT"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" \
  --cfg-options "$KEY=$UPSAMPLER"
echo "[demo] $TASK, $UPSAMPLER upsampling: train $((trained - start)) s," \
  "test $(( $(date +%s) - trained )) s; metrics in $WORK_DIR/metrics.json"
