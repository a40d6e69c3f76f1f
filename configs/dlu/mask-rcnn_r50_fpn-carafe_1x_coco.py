# mmdet's CARAFE Mask R-CNN as shipped (CARAFE, mmcv's CUDA-only op, in
# FPN_CARAFE and in the mask head; 8 GPUs x 2 images, 12 epochs), run
# through dlu_mm's tools. The root of this family (see the Faster R-CNN
# twin, ./faster-rcnn_r50_fpn-carafe_1x_coco.py, for the COCO root:
# $DLU_MM_COCO_ROOT, default data/coco/).
_base_ = 'mmdet::carafe/mask-rcnn_r50_fpn-carafe_1x_coco.py'
custom_imports = dict(imports=['dlu_mm.mmdet'], allow_failed_imports=False)

data_root = '{{$DLU_MM_COCO_ROOT:data/coco/}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
