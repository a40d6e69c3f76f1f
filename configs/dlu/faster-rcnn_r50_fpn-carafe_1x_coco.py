# mmdet's CARAFE Faster R-CNN as shipped (FPN_CARAFE with mmcv's CUDA-only
# CARAFE op; 8 GPUs x 2 images, 12 epochs), run through dlu_mm's tools. The
# root of this family: -dlu swaps the upsampler type, and -carafe-portable,
# -nearest, -bilinear change that type again, so every row of the results
# table shares this topology, schedule and pad_size_divisor=64.
#
# COCO root: $DLU_MM_COCO_ROOT (default data/coco/, as mmdet), e.g.
#   DLU_MM_COCO_ROOT=/datasets/coco/ python tools/train.py <config>
# or per key, as in any mmdet config (R=/datasets/coco/):
#   --cfg-options train_dataloader.dataset.data_root=$R \
#     val_dataloader.dataset.data_root=$R \
#     test_dataloader.dataset.data_root=$R \
#     val_evaluator.ann_file=${R}annotations/instances_val2017.json \
#     test_evaluator.ann_file=${R}annotations/instances_val2017.json
_base_ = 'mmdet::carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py'
custom_imports = dict(imports=['dlu_mm.mmdet'], allow_failed_imports=False)

# mmdet's dataset base composed its paths from its own data_root when it was
# read, so each of them is set again here.
data_root = '{{$DLU_MM_COCO_ROOT:data/coco/}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
