# The DLU config with CARAFE in DLU's place, as in CARAFE's paper: dlu_mm's
# portable CARAFE (mmcv CARAFEPack's weights, keys and numerics, on CPU and
# any GPU), same arguments (up_kernel=5, up_group=1, encoder_kernel=3,
# encoder_dilation=1, compressed_channels=64 = CARAFEPack's defaults).
_base_ = './upernet-dlu_r50_4xb4-160k_ade20k-512x512.py'

model = dict(decode_head=dict(upsample_cfg=dict(type='carafe_portable')))
