# Bilinear baseline (align_corners=False) in the CARAFE/DLU topology; see
# ./faster-rcnn_r50_fpn-nearest_1x_coco.py.
_base_ = './faster-rcnn_r50_fpn-nearest_1x_coco.py'

model = dict(neck=dict(upsample_cfg=dict(type='bilinear')))
