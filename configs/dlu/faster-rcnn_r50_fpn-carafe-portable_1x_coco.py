# CARAFE without mmcv's CUDA op: dlu_mm's CARAFEPortable (same weights, keys
# and numerics as mmcv's CARAFEPack) in the DLU config's place, so CARAFE
# runs wherever DLU does (CPU, any GPU) and its checkpoints load both ways.
_base_ = './faster-rcnn_r50_fpn-dlu_1x_coco.py'

model = dict(neck=dict(upsample_cfg=dict(type='carafe_portable')))
