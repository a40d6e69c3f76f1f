# UperNet R50 on ADE20K (mmseg's upernet_r50_4xb4-160k_ade20k-512x512) with
# DLU in the decoder's six feature upsampling steps, where CARAFE's paper put
# CARAFE in UperNet: the FPN top-down path (3 x 2x) and the multi-level
# fusion to the 1/4 scale (2x, 4x, 8x). DLU with the paper's defaults. The
# PPM and the final resize of the logits stay bilinear.
# Baselines: upernet-bilinear_* (= stock UperNet), upernet-carafe-portable_*,
# upernet-carafe_* (mmcv's CUDA op).
#
# ImageNet-pretrained backbone as published (open-mmlab://resnet50_v1c); a
# local copy: --cfg-options model.pretrained=/path/to/resnet50_v1c.pth
# Data root: $DLU_MM_ADE_ROOT (default data/ade/ADEChallengeData2016), or
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dlu_mm.mmseg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        type='UPerHeadUpsample',
        upsample_cfg=dict(
            type='dlu',
            up_kernel=5,
            up_group=1,
            encoder_kernel=3,
            encoder_dilation=1,
            compressed_channels=64)))

data_root = '{{$DLU_MM_ADE_ROOT:data/ade/ADEChallengeData2016}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
