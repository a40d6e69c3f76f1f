# DLU in mmdet's CARAFE Mask R-CNN setting: mmdet's
# carafe/mask-rcnn_r50_fpn-carafe_1x_coco.py (via
# ./mask-rcnn_r50_fpn-carafe_1x_coco.py, which only adds the data root) with
# FPN_CARAFE -> FPN_Upsample, FCNMaskHead -> FCNMaskHeadUpsample and both
# upsample types 'carafe' -> 'dlu'; all other values are CARAFE's.
_base_ = './mask-rcnn_r50_fpn-carafe_1x_coco.py'

model = dict(
    neck=dict(type='FPN_Upsample', upsample_cfg=dict(type='dlu')),
    roi_head=dict(
        mask_head=dict(
            type='FCNMaskHeadUpsample', upsample_cfg=dict(type='dlu'))))
