"""configs/dlu/*-rcnn_*: the DLU configs are mmdet's CARAFE configs with
only the type names swapped, the baselines build, the COCO root follows
$DLU_MM_COCO_ROOT, and the R50 models take a loss step on CPU."""
import numpy as np
import pytest
import torch
from mmcv.ops import CARAFEPack
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import dlu_mm  # noqa: F401
from dlu_mm.layers import DLU, CARAFEPortable

DLU_CFG = 'configs/dlu/{}_r50_fpn-dlu_1x_coco.py'
MMDET_CARAFE = "_base_ = 'mmdet::carafe/{}_r50_fpn-carafe_1x_coco.py'\n"
ENV = 'DLU_MM_COCO_ROOT'


@pytest.fixture(autouse=True)
def _default_root_and_scope(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def _load(path):
    return Config.fromfile(path).to_dict()


def _mmdet_carafe(model, tmp_path):
    """mmdet's shipped config, loaded the way ours load their base."""
    path = tmp_path / f'mmdet_{model}.py'
    path.write_text(MMDET_CARAFE.format(model))
    return _load(str(path))


def _diff(a, b, path=()):
    """Key paths where two nested dicts/lists differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {p for k in a.keys() | b.keys()
                for p in _diff(a.get(k, '<missing>'), b.get(k, '<missing>'),
                               path + (k, ))}
    if (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
            and len(a) == len(b)):
        return {p for i, (x, y) in enumerate(zip(a, b))
                for p in _diff(x, y, path + (i, ))}
    return set() if a == b else {path}


SWAPS = {  # key path in `model` -> (mmdet's carafe config, ours)
    ('neck', 'type'): ('FPN_CARAFE', 'FPN_Upsample'),
    ('neck', 'upsample_cfg', 'type'): ('carafe', 'dlu'),
    ('roi_head', 'mask_head', 'type'): ('FCNMaskHead', 'FCNMaskHeadUpsample'),
    ('roi_head', 'mask_head', 'upsample_cfg', 'type'): ('carafe', 'dlu'),
}


def _get(cfg, path):
    for key in path:
        cfg = cfg[key]
    return cfg


@pytest.mark.parametrize('model', ['faster-rcnn', 'mask-rcnn'])
def test_dlu_config_is_mmdet_carafe_with_types_swapped(model, tmp_path):
    ours = _load(DLU_CFG.format(model))
    ref = _mmdet_carafe(model, tmp_path)
    expected = {p for p in SWAPS if p[0] == 'neck' or model == 'mask-rcnn'}
    assert _diff(ref['model'], ours['model']) == expected
    for path in expected:
        assert (_get(ref['model'], path), _get(ours['model'], path)) \
            == SWAPS[path]
    # schedule, optimizer, batch, data (at the default root), evaluators,
    # hooks, runtime: all mmdet's, the plugin import aside
    assert ours['train_dataloader']['batch_size'] == 2
    assert ours['optim_wrapper']['optimizer']['lr'] == 0.02
    assert ours['model']['data_preprocessor']['pad_size_divisor'] == 64
    assert ours.pop('custom_imports') == dict(imports=['dlu_mm.mmdet'],
                                              allow_failed_imports=False)
    assert _diff(ref, ours) == {('model', ) + p for p in expected}


BASELINES = {  # name -> (neck type, its upsamplers, mask head upsampler)
    'nearest': ('FPN_Upsample', torch.nn.Upsample, torch.nn.Upsample),
    'bilinear': ('FPN_Upsample', torch.nn.Upsample, torch.nn.Upsample),
    'carafe-portable': ('FPN_Upsample', CARAFEPortable, CARAFEPortable),
    'carafe': ('FPN_CARAFE', CARAFEPack, CARAFEPack),
}


@pytest.mark.parametrize('upsampler', list(BASELINES))
@pytest.mark.parametrize('model', ['faster-rcnn', 'mask-rcnn'])
def test_baselines_change_only_the_upsampler_and_build(model, upsampler):
    cfg = Config.fromfile(
        f'configs/dlu/{model}_r50_fpn-{upsampler}_1x_coco.py')
    dlu = _load(DLU_CFG.format(model))
    upsampler_keys = [('model', 'neck', 'type'),
                      ('model', 'neck', 'upsample_cfg'),
                      ('model', 'roi_head', 'mask_head', 'type'),
                      ('model', 'roi_head', 'mask_head', 'upsample_cfg')]
    changed = _diff(dlu, cfg.to_dict())
    assert changed and all(
        any(p[:len(k)] == k for k in upsampler_keys) for p in changed)
    cfg.model.backbone.init_cfg = None
    net = MODELS.build(cfg.model)
    neck_type, up_cls, mask_up_cls = BASELINES[upsampler]
    assert type(net.neck).__name__ == neck_type
    assert len(net.neck.upsample_modules) == 4
    for m in net.neck.upsample_modules:
        assert type(m) is up_cls
        if up_cls is torch.nn.Upsample:
            assert (m.mode, m.scale_factor) == (upsampler, 2)
    if model == 'mask-rcnn':
        up = net.roi_head.mask_head.upsample
        assert type(up) is mask_up_cls and up.scale_factor == 2
        if up_cls is torch.nn.Upsample:
            assert up.mode == upsampler


CONFIGS = [f'configs/dlu/{m}_r50_fpn-{u}_1x_coco.py'
           for m in ('faster-rcnn', 'mask-rcnn')
           for u in ('dlu', 'carafe', 'nearest')]


@pytest.mark.parametrize('config', CONFIGS)
def test_coco_root_follows_env(config, monkeypatch):
    monkeypatch.setenv(ENV, '/datasets/coco2017/')
    cfg = Config.fromfile(config)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/datasets/coco2017/'
    for evaluator in ('val_evaluator', 'test_evaluator'):
        assert cfg[evaluator].ann_file == \
            '/datasets/coco2017/annotations/instances_val2017.json'
    assert cfg.train_dataloader.dataset.ann_file == \
        'annotations/instances_train2017.json'


def _batch(with_mask):
    """One 128x160 image with two boxes (and their masks)."""
    h, w = 128, 160
    boxes = torch.tensor([[10., 20., 70., 100.], [80., 30., 150., 90.]])
    gt = InstanceData(bboxes=boxes, labels=torch.tensor([0, 1]))
    if with_mask:
        masks = np.zeros((2, h, w), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        gt.masks = BitmapMasks(masks, h, w)
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        scale_factor=(1., 1.), batch_input_shape=(h, w)))
    sample.gt_instances = gt
    return dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)],
                data_samples=[sample])


@pytest.mark.parametrize('model', ['faster-rcnn', 'mask-rcnn'])
def test_r50_loss_step_reaches_dlu(model):
    cfg = Config.fromfile(DLU_CFG.format(model))
    cfg.model.backbone.init_cfg = None  # no pretrained download
    # the model as configured; only fewer RoIs sampled (512 -> 32), as the
    # 1024-wide bbox FCs on 512 RoIs would dominate the test's CPU time
    cfg.model.train_cfg.rcnn.sampler.num = 32
    net = MODELS.build(cfg.model)
    net.neck.init_weights()  # DLU's own init (zero offsets) in effect
    net.backbone.requires_grad_(False)  # its backward is most of the cost
    net.train()
    with_mask = cfg.model.type == 'MaskRCNN'
    data = net.data_preprocessor(_batch(with_mask), training=True)
    losses = net.loss(data['inputs'], data['data_samples'])
    assert ('loss_mask' in losses) == with_mask
    loss, log = net.parse_losses(losses)
    assert torch.isfinite(loss) and all(
        torch.isfinite(torch.as_tensor(v)) for v in log.values())
    loss.backward()
    dlus = list(net.neck.upsample_modules)
    if with_mask:
        dlus.append(net.roi_head.mask_head.upsample)
    assert len(dlus) == (5 if with_mask else 4)
    for m in dlus:
        assert isinstance(m, DLU)
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_demo_mask_config(monkeypatch):
    """The Mask R-CNN demo twin: DLU in the FPN and the mask head, masks
    loaded, bbox + segm evaluated, data from $DLU_MM_DEMO_COCO_ROOT. (Its
    training and testing run in test_mmdet_e2e.py.)"""
    monkeypatch.setenv('DLU_MM_DEMO_COCO_ROOT', '/tmp/demo_coco/')
    cfg = Config.fromfile('configs/demo/mask-rcnn_r18_fpn-dlu_demo-coco.py')
    faster = Config.fromfile(
        'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py')
    for key in ('train_cfg', 'optim_wrapper', 'param_scheduler',
                'randomness'):
        assert cfg[key] == faster[key], key
    assert _diff(faster.model.to_dict(), cfg.model.to_dict()) >= {
        ('type', ), ('roi_head', 'mask_head'),
        ('roi_head', 'mask_roi_extractor')}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.data_root == '/tmp/demo_coco/'
        assert dataset.metainfo == faster[loader].dataset.metainfo
        assert dict(type='LoadAnnotations', with_bbox=True,
                    with_mask=True) in dataset.pipeline
    for evaluator in ('val_evaluator', 'test_evaluator'):
        assert cfg[evaluator].metric == ['bbox', 'segm']
        assert cfg[evaluator].ann_file == \
            '/tmp/demo_coco/annotations/instances_val2017.json'
    net = MODELS.build(cfg.model)
    head = net.roi_head.mask_head
    assert type(head).__name__ == 'FCNMaskHeadUpsample'
    assert isinstance(head.upsample, DLU)
    assert (head.upsample.channels, head.upsample.scale_factor) == (128, 2)
    assert head.conv_logits.out_channels == len(faster.classes) == 6
    assert all(isinstance(m, DLU) for m in net.neck.upsample_modules)
