# SegFormer MiT-B1 on ADE20K (mmseg's segformer_mit-b1_8xb2-160k_ade20k-
# 512x512) with DLU in the all-MLP decoder's per-level upsampling to the 1/4
# scale (after each level's 1x1 conv: 2x, 4x, 8x; level 0 untouched). DLU
# with the paper's defaults. The final resize of the logits stays bilinear.
# Baselines: segformer-bilinear_* (= stock SegformerHead),
# segformer-carafe-portable_*, segformer-carafe_* (mmcv's CUDA op).
#
# ImageNet-pretrained MiT-B1 as published (the download URL in the base
# config); a local copy:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/mit_b1.pth
# Data root: $DLU_MM_ADE_ROOT (default data/ade/ADEChallengeData2016), or
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...
_base_ = 'mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dlu_mm.mmseg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        type='SegformerHeadUpsample',
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
