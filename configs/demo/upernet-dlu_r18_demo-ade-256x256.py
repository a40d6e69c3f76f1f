# UperNet, ResNet-18 from scratch, whose decoder's six feature upsamplers
# (FPN top-down 3 x 2x, multi-level fusion 2x, 4x, 8x) are DLU (the paper's
# defaults: up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1,
# compressed_channels=64), on the generated demo set
# (tools/data/make_demo_ade.py; ADE20K layout, 256x256 images, 5 "stuff" and
# 6 shape classes, label 0 = other, ignored). Sized to train on 2 CPU cores
# in about 8-10 minutes (800 iterations of 4 images at ~0.6-0.7 s each).
#
#   python tools/train.py configs/demo/upernet-dlu_r18_demo-ade-256x256.py
#   # the bilinear baseline (= mmseg's UPerHead), same seed, one flag away:
#   python tools/train.py configs/demo/upernet-dlu_r18_demo-ade-256x256.py \
#       --cfg-options model.decode_head.upsample_cfg.type=bilinear
#
# Data root: $DLU_MM_DEMO_ADE_ROOT, default data/demo_ade/.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dlu_mm.mmseg'], allow_failed_imports=False)

data_root = '{{$DLU_MM_DEMO_ADE_ROOT:data/demo_ade/}}'
classes = ('sky', 'grass', 'road', 'water', 'wall', 'disc', 'box',
           'triangle', 'star', 'ring', 'cross')
crop_size = (256, 256)
max_iters = 800
widths = [64, 128, 256, 512]
decoder_width = 64
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        type='ResNet', depth=18, norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(
        type='UPerHeadUpsample',
        in_channels=widths,
        channels=decoder_width,
        num_classes=len(classes),
        norm_cfg=norm_cfg,
        upsample_cfg=dict(type='dlu')),
    auxiliary_head=dict(
        in_channels=widths[2],
        channels=decoder_width,
        num_classes=len(classes),
        norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# ADE20KDataset only takes subsets of ADE20K's 150 names; the demo set has
# its own, in the same layout and label convention (0 = other).
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=dict(classes=classes),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='PolyLR', eta_min=1e-4, power=0.9, by_epoch=False, begin=50,
         end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False)
