# Bilinear baseline (align_corners=False) in the FPN and the mask head; see
# ./mask-rcnn_r50_fpn-nearest_1x_coco.py.
_base_ = './mask-rcnn_r50_fpn-nearest_1x_coco.py'

model = dict(
    neck=dict(upsample_cfg=dict(type='bilinear')),
    roi_head=dict(mask_head=dict(upsample_cfg=dict(type='bilinear'))))
