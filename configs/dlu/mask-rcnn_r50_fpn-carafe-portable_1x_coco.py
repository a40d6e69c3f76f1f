# CARAFE without mmcv's CUDA op (dlu_mm's CARAFEPortable, mmcv CARAFEPack's
# weights and numerics) in the FPN and the mask head.
_base_ = './mask-rcnn_r50_fpn-dlu_1x_coco.py'

model = dict(
    neck=dict(upsample_cfg=dict(type='carafe_portable')),
    roi_head=dict(
        mask_head=dict(upsample_cfg=dict(type='carafe_portable'))))
