# The DLU config with mmcv's own CARAFEPack (its CUDA op: GPU only;
# segformer-carafe-portable_* is the same layer on any device) in DLU's place,
# same arguments (up_kernel=5, up_group=1, encoder_kernel=3,
# encoder_dilation=1, compressed_channels=64 = CARAFEPack's defaults).
_base_ = './segformer-dlu_mit-b1_8xb2-160k_ade20k-512x512.py'

model = dict(decode_head=dict(upsample_cfg=dict(type='carafe')))
