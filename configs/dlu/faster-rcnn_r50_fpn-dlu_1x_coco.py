# DLU (Fu et al., ICPR 2024) in mmdet's CARAFE Faster R-CNN setting: the same
# config as mmdet's carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py (via
# ./faster-rcnn_r50_fpn-carafe_1x_coco.py, which only adds the data root)
# with FPN_CARAFE -> FPN_Upsample and upsample type 'carafe' -> 'dlu'; every
# other value (up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1,
# compressed_channels=64, schedule, batch, lr, pad_size_divisor=64) is
# CARAFE's. The DLU README reports 38.6 box AP on COCO val2017.
_base_ = './faster-rcnn_r50_fpn-carafe_1x_coco.py'

model = dict(neck=dict(type='FPN_Upsample', upsample_cfg=dict(type='dlu')))
