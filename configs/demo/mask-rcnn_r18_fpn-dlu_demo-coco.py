# Mask R-CNN twin of ./faster-rcnn_r18_fpn-dlu_demo-coco.py (same ResNet-18
# from scratch, DLU FPN of width 128, data, schedule and seed) with a mask
# branch whose 2x upsampler is DLU too (FCNMaskHeadUpsample), reading the
# generated set's polygon masks and evaluating bbox and segm.
#
#   python tools/data/make_demo_coco.py            # -> data/demo_coco/
#   python tools/train.py configs/demo/mask-rcnn_r18_fpn-dlu_demo-coco.py
#   # nearest everywhere instead of DLU, same seed:
#   python tools/train.py configs/demo/mask-rcnn_r18_fpn-dlu_demo-coco.py \
#       --cfg-options model.neck.upsample_cfg.type=nearest \
#       model.roi_head.mask_head.upsample_cfg.type=nearest
#
# Data root: $DLU_MM_DEMO_COCO_ROOT, default data/demo_coco/.
_base_ = './faster-rcnn_r18_fpn-dlu_demo-coco.py'

# What mmdet's mask-rcnn_r50_fpn.py adds to faster-rcnn_r50_fpn.py, at the
# demo's widths.
model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=_base_.neck_width,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHeadUpsample',
            num_convs=4,
            in_channels=_base_.neck_width,
            conv_out_channels=_base_.neck_width,
            num_classes=len(_base_.classes),
            upsample_cfg=dict(type='dlu', scale_factor=2),
            loss_mask=dict(
                type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rcnn=dict(assigner=dict(match_low_quality=True), mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=_base_.image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_base_.image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
