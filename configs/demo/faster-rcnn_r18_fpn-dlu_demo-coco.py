# Faster R-CNN, ResNet-18 from scratch, FPN whose 4 top-down upsamplers are
# DLU (the paper's defaults: up_kernel=5, up_group=1, encoder_kernel=3,
# encoder_dilation=1, compressed_channels=64), on the generated demo set
# (tools/data/make_demo_coco.py; 256x256 images, 6 shape classes). Sized to
# train on 2 CPU cores in about 15 minutes (500 iterations of 4 images).
#
#   python tools/train.py configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py
#   # the nearest-upsampling baseline, same seed, one flag away:
#   python tools/train.py configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py \
#       --cfg-options model.neck.upsample_cfg.type=nearest
#
# Data root: $DLU_MM_DEMO_COCO_ROOT, default data/demo_coco/.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['dlu_mm.mmdet'], allow_failed_imports=False)

data_root = '{{$DLU_MM_DEMO_COCO_ROOT:data/demo_coco/}}'
classes = ('disc', 'box', 'triangle', 'star', 'ring', 'cross')
image_size = (256, 256)
max_iters = 500
widths = [64, 128, 256, 512]
neck_width = 128

model = dict(
    data_preprocessor=dict(pad_size_divisor=64),
    backbone=dict(
        depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None,
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(
        _delete_=True,
        type='FPN_Upsample',
        in_channels=widths,
        out_channels=neck_width,
        num_outs=5,
        upsample_cfg=dict(type='dlu')),
    rpn_head=dict(
        in_channels=neck_width,
        feat_channels=neck_width,
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_width),
        bbox_head=dict(
            in_channels=neck_width, fc_out_channels=256,
            num_classes=len(classes))),
    train_cfg=dict(rcnn=dict(sampler=dict(num=256))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
metainfo = dict(classes=classes)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=4)
