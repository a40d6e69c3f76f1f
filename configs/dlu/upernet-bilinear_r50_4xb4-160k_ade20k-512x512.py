# UperNet R50 on ADE20K (mmseg's upernet_r50_4xb4-160k_ade20k-512x512), the
# bilinear baseline of upernet-dlu_*: the decoder's six feature upsampling
# steps (FPN top-down 3 x 2x, multi-level fusion 2x, 4x, 8x) bilinear, i.e.
# numerically the stock UPerHead (same weights, same outputs; tested), in the
# head class that takes an upsample_cfg.
#
# ImageNet-pretrained backbone as published (open-mmlab://resnet50_v1c); a
# local copy: --cfg-options model.pretrained=/path/to/resnet50_v1c.pth
# Data root: $DLU_MM_ADE_ROOT (default data/ade/ADEChallengeData2016), or
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dlu_mm.mmseg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        type='UPerHeadUpsample', upsample_cfg=dict(type='bilinear')))

data_root = '{{$DLU_MM_ADE_ROOT:data/ade/ADEChallengeData2016}}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
