# SegFormer MiT-B1 on ADE20K (mmseg's segformer_mit-b1_8xb2-160k_ade20k-
# 512x512), the bilinear baseline of segformer-dlu_*: the decoder's per-level
# upsampling (2x, 4x, 8x) bilinear, i.e. numerically the stock SegformerHead
# (same weights, same outputs; tested), in the head class that takes an
# upsample_cfg.
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
        type='SegformerHeadUpsample', upsample_cfg=dict(type='bilinear')))

data_root = '{{$DLU_MM_ADE_ROOT:data/ade/ADEChallengeData2016}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
