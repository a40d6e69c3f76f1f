"""``import dlu_mm`` makes the layers buildable from any default scope."""
import pytest
import torch
from mmcv.cnn import build_upsample_layer
from mmengine.registry import DefaultScope

import dlu_mm
from dlu_mm.layers import DLU, CARAFEPortable


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg', 'mmengine'])
@pytest.mark.parametrize('type_,cls', [('dlu', DLU),
                                       ('carafe_portable', CARAFEPortable)])
def test_build_upsample_layer_from_any_scope(scope, type_, cls):
    cfg = dict(type=type_, channels=32, scale_factor=2, up_kernel=3)
    if scope is None:
        layer = build_upsample_layer(cfg)
    else:
        with DefaultScope.overwrite_default_scope(scope):
            if scope in ('mmdet', 'mmseg'):
                __import__(scope + '.registry')
            layer = build_upsample_layer(cfg)
    assert type(layer) is cls and layer.up_kernel == 3
    assert layer(torch.randn(1, 32, 4, 5)).shape == (1, 32, 8, 10)


def test_mmcv_carafe_is_left_alone():
    from mmcv.ops import CARAFEPack
    layer = build_upsample_layer(dict(type='carafe', channels=8,
                                      scale_factor=2))
    assert type(layer) is CARAFEPack
    assert dlu_mm.__version__
