"""The adapters are exact supersets of the stock modules: for every
configuration in the table, which the stock module accepts and runs, stock
and adapter built with the same arguments get the same initialisation draw
for draw, one state dict loads into both strictly, and the outputs are
equal bit for bit. (The learned-upsampler extensions on top are tested in
test_mmdet_modules.py and test_mmseg_heads.py.)"""
import math
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmcv.ops import CARAFEPack
from mmdet.models.necks import FPN_CARAFE
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmseg.models.decode_heads import SegformerHead, UPerHead

import reference
from dlu_mm.layers import CARAFEPortable
from dlu_mm.mmdet import FCNMaskHeadUpsample, FPN_Upsample
from dlu_mm.mmseg import SegformerHeadUpsample, UPerHeadUpsample


class Row(NamedTuple):
    stock: type
    adapter: type
    kwargs: dict
    inputs: Callable[[], object]
    scope: str
    forward: bool = True  # False: the stock forward is CUDA-only (CARAFE)


def _levels(sizes, widths, n=2):
    return lambda: [torch.randn(n, c, h, w) for c, (h, w) in zip(widths,
                                                                 sizes)]


FPN_WIDTHS = [8, 16, 32, 64]
# odd sizes everywhere: the top-down adds crop 2x-upsampled maps
FPN_SIZES = [(33, 41), (17, 21), (9, 11), (5, 6)]
# h_i = 2 h_{i+1} - 1 on every level, P6 included: the sizes on which
# FPN_CARAFE's deconv with upsample_kernel=1 (one pixel short) runs
FPN_SIZES_K1 = [(33, 17), (17, 9), (9, 5), (5, 3)]


def fpn(upsample_cfg, sizes=FPN_SIZES, forward=True, **kw):
    args = dict(in_channels=FPN_WIDTHS, out_channels=16, num_outs=5,
                upsample_cfg=upsample_cfg)
    args.update(kw)
    return Row(FPN_CARAFE, FPN_Upsample, args,
               _levels(sizes, FPN_WIDTHS), 'mmdet', forward)


def mask_head(upsample_cfg, forward=True, **kw):
    args = dict(num_convs=2, in_channels=8, conv_out_channels=16,
                num_classes=3, upsample_cfg=upsample_cfg)
    args.update(kw)
    return Row(FCNMaskHead, FCNMaskHeadUpsample, args,
               lambda: torch.randn(3, 8, 14, 14), 'mmdet', forward)


SEG_WIDTHS = [8, 16, 24, 32]


def _seg_features(h, w, widths=SEG_WIDTHS):
    """Backbone levels at strides 1, 2, 4, 8 of (h, w), rounded up."""
    return lambda: [torch.randn(2, c, math.ceil(h / 2**i), math.ceil(w / 2**i))
                    for i, c in enumerate(widths)]


def seg_head(stock, adapter, size=(25, 19), widths=SEG_WIDTHS, **kw):
    args = dict(in_channels=widths, in_index=list(range(len(widths))),
                channels=16, num_classes=5, norm_cfg=dict(type='BN'))
    args.update(kw)
    return Row(stock, adapter, args, _seg_features(*size, widths), 'mmseg')


def carafe_layer(**kw):
    return Row(CARAFEPack, CARAFEPortable, kw,
               lambda: torch.randn(1, kw['channels'], 3, 4), 'mmdet')


TABLE = {
    # FPN_CARAFE -> FPN_Upsample
    'fpn-nearest': fpn(dict(type='nearest')),
    'fpn-nearest-align_corners': fpn(dict(type='nearest',
                                          align_corners=True)),
    'fpn-bilinear': fpn(dict(type='bilinear')),
    'fpn-bilinear-align_corners': fpn(dict(type='bilinear',
                                           align_corners=True)),
    'fpn-bilinear-start1-6outs': fpn(dict(type='bilinear'), start_level=1,
                                     num_outs=6),
    'fpn-nearest-end2': fpn(dict(type='nearest'), end_level=2, num_outs=3),
    'fpn-bilinear-bn-act-order': fpn(
        dict(type='bilinear'), norm_cfg=dict(type='BN'),
        act_cfg=dict(type='ReLU'), order=('act', 'conv', 'norm')),
    'fpn-deconv3': fpn(dict(type='deconv', upsample_kernel=3)),
    'fpn-deconv1': fpn(dict(type='deconv', upsample_kernel=1),
                       sizes=FPN_SIZES_K1),
    'fpn-pixel_shuffle1': fpn(dict(type='pixel_shuffle', upsample_kernel=1)),
    'fpn-pixel_shuffle3': fpn(dict(type='pixel_shuffle', upsample_kernel=3)),
    'fpn-carafe': fpn(dict(type='carafe', up_kernel=3, up_group=2,
                           encoder_kernel=3, encoder_dilation=1,
                           compressed_channels=8), forward=False),
    # FCNMaskHead -> FCNMaskHeadUpsample
    'mask-deconv2': mask_head(dict(type='deconv', scale_factor=2)),
    'mask-deconv4': mask_head(dict(type='deconv', scale_factor=4)),
    'mask-nearest2': mask_head(dict(type='nearest', scale_factor=2)),
    'mask-nearest1.5': mask_head(dict(type='nearest', scale_factor=1.5)),
    'mask-bilinear2.0': mask_head(dict(type='bilinear', scale_factor=2.0)),
    'mask-bilinear1.5': mask_head(dict(type='bilinear', scale_factor=1.5)),
    'mask-none': mask_head(dict(type=None)),
    'mask-deconv2-no-convs': mask_head(dict(type='deconv', scale_factor=2),
                                       num_convs=0, conv_out_channels=8),
    'mask-bilinear-no-convs-agnostic': mask_head(
        dict(type='bilinear', scale_factor=2), num_convs=0,
        class_agnostic=True),
    'mask-nearest-k1-bn': mask_head(
        dict(type='nearest', scale_factor=2), conv_kernel_size=1,
        norm_cfg=dict(type='BN')),
    'mask-carafe': mask_head(dict(type='carafe', scale_factor=2,
                                  compressed_channels=8), forward=False),
    # SegformerHead -> SegformerHeadUpsample
    'segformer-bilinear': seg_head(SegformerHead, SegformerHeadUpsample),
    'segformer-bilinear-align_corners': seg_head(
        SegformerHead, SegformerHeadUpsample, align_corners=True),
    'segformer-bicubic': seg_head(SegformerHead, SegformerHeadUpsample,
                                  interpolate_mode='bicubic'),
    'segformer-bicubic-align_corners-32x24': seg_head(
        SegformerHead, SegformerHeadUpsample, size=(32, 24),
        interpolate_mode='bicubic', align_corners=True),
    'segformer-nearest': seg_head(SegformerHead, SegformerHeadUpsample,
                                  interpolate_mode='nearest',
                                  align_corners=None),
    'segformer-area': seg_head(SegformerHead, SegformerHeadUpsample,
                               interpolate_mode='area', align_corners=None),
    'segformer-3-levels': seg_head(SegformerHead, SegformerHeadUpsample,
                                   widths=[8, 16, 24]),
    # UPerHead -> UPerHeadUpsample
    'uper': seg_head(UPerHead, UPerHeadUpsample),
    'uper-align_corners-32x24': seg_head(UPerHead, UPerHeadUpsample,
                                         size=(32, 24), align_corners=True),
    'uper-pool13-3-levels': seg_head(UPerHead, UPerHeadUpsample,
                                     widths=[8, 16, 24], pool_scales=(1, 3)),
    # mmcv's CARAFEPack -> CARAFEPortable (ragged groups: 10 channels in 4
    # groups of ceil(10/4)); mmcv's forward is CUDA-only, so the stock side
    # is the paper's loop reference on CARAFEPack's own weights
    'carafe-ragged-groups': carafe_layer(channels=10, scale_factor=2,
                                         up_kernel=3, up_group=4,
                                         compressed_channels=6),
}


def _build(cls, kwargs):
    kwargs = {k: dict(v) if isinstance(v, dict) else v  # fresh copies
              for k, v in kwargs.items()}
    if cls is FPN_CARAFE:  # it reads upsample_kernel as an attribute
        kwargs['upsample_cfg'] = ConfigDict(kwargs['upsample_cfg'])
    return cls(**kwargs)


def _init(module, seed=123):
    torch.manual_seed(seed)
    if hasattr(module, 'init_weights'):
        module.init_weights()
    return module.state_dict()


def _randomise(module):
    """Perturbed weights and BN statistics, so every output depends on
    every parameter and buffer (biases non-zero)."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2, generator=gen)


def _flat(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize('name', list(TABLE))
def test_adapter_equals_stock(name):
    row = TABLE[name]
    with DefaultScope.overwrite_default_scope(row.scope):
        torch.manual_seed(0)
        stock = _build(row.stock, row.kwargs)
        torch.manual_seed(0)
        ours = _build(row.adapter, row.kwargs)
    # same modules, keys and initialisation, draw for draw
    expected, got = _init(stock), _init(ours)
    assert list(got) == list(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    # one state dict, loaded strictly into both
    _randomise(stock)
    ours.load_state_dict(stock.state_dict(), strict=True)
    if not row.forward:
        return
    stock.eval()
    ours.eval()
    torch.manual_seed(1)
    inputs = row.inputs()
    with torch.no_grad():
        got = _flat(ours(inputs))
        if row.stock is CARAFEPack:
            np.testing.assert_allclose(
                ours.double()(inputs.double()).numpy(),
                reference.carafe(stock, inputs.double()), rtol=1e-9,
                atol=1e-9)
            return
        expected = _flat(stock(inputs))
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert a.shape == b.shape and torch.equal(a, b)
