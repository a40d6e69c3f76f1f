# Nearest-neighbour baseline in the CARAFE/DLU topology: every upsampler the
# DLU config sets (4 in FPN_Upsample, 1 in the mask head) is nearest, so the
# rows differ in the upsampler alone. FPN_Upsample('nearest') rather than
# mmdet's stock FPN for the reasons in ./faster-rcnn_r50_fpn-nearest_1x_coco.py
# (P6 by stride-2 conv + a 4th upsampler, pad_size_divisor=64). mmdet's stock
# mask head upsamples with a 2x2 stride-2 deconv + ReLU instead; for that row
# add --cfg-options model.roi_head.mask_head.upsample_cfg.type=deconv
# (mmdet's stock Mask R-CNN, 38.2 box / 34.7 mask AP, is
# mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py).
_base_ = './mask-rcnn_r50_fpn-dlu_1x_coco.py'

model = dict(
    neck=dict(upsample_cfg=dict(_delete_=True, type='nearest')),
    roi_head=dict(
        mask_head=dict(
            upsample_cfg=dict(_delete_=True, type='nearest',
                              scale_factor=2))))
