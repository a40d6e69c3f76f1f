"""MMSegmentation decode heads whose upsampling is any upsample type:
bilinear = stock UPerHead / SegformerHead exactly, odd sizes, DLU shapes and
gradients, build-time errors, stock checkpoints, parameter counts against
the paper's formulas, and the full-size R50 UperNet-DLU config."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import CARAFEPack
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.decode_heads import SegformerHead, UPerHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import dlu_mm  # noqa: F401  (registers the heads)
from dlu_mm.complexity import UpsamplerSpec, carafe_params, dlu_params
from dlu_mm.layers import DLU, CARAFEPortable
from dlu_mm.layers.builder import registered_upsample_types
from dlu_mm.mmseg import SegformerHeadUpsample, UPerHeadUpsample, upsample_to

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = [8, 16, 24, 32]
SMALL = dict(in_channels=WIDTHS, in_index=[0, 1, 2, 3], channels=16,
             num_classes=5, norm_cfg=dict(type='BN'))
STOCK = {UPerHeadUpsample: UPerHead, SegformerHeadUpsample: SegformerHead}
TINY_DLU = dict(type='dlu', up_kernel=3, compressed_channels=8)


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build in mmseg's scope whatever scope an earlier test left current."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def _features(h, w, n=2, widths=WIDTHS):
    """Backbone-like levels at strides 1, 2, 4, 8 of (h, w), rounded up as
    strided convs with padding do (ResNet, MiT)."""
    return [torch.randn(n, c, math.ceil(h / 2**i), math.ceil(w / 2**i))
            for i, c in enumerate(widths)]


def _upsamplers(head):
    if isinstance(head, UPerHeadUpsample):
        return [*head.lateral_upsamplers, *head.fusion_upsamplers]
    return list(head.level_upsamplers)


def _randomise(module):
    """Non-trivial BN statistics and affine parameters, so eval-mode
    outputs depend on every weight."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)


@pytest.mark.parametrize('cls', [UPerHeadUpsample, SegformerHeadUpsample])
@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('size', [(32, 24), (25, 19)])
def test_bilinear_equals_stock_head(cls, align_corners, size):
    """Same weights, same inputs -> bit-identical logits, for exact
    multiples (32x24) and odd level sizes (25x19: 13x10, 7x5, 4x3)."""
    stock = STOCK[cls](align_corners=align_corners, **SMALL)
    _randomise(stock)
    head = cls(align_corners=align_corners,
               upsample_cfg=dict(type='bilinear'), **SMALL)
    assert head.load_state_dict(stock.state_dict(), strict=True)
    stock.eval()
    head.eval()
    inputs = _features(*size)
    with torch.no_grad():
        expected, got = stock(inputs), head(inputs)
    assert got.shape == (2, 5, *size)
    assert torch.equal(got, expected)
    ups = _upsamplers(head)
    assert all(isinstance(m, nn.Upsample) and m.mode == 'bilinear'
               and m.align_corners is align_corners for m in ups)


@pytest.mark.parametrize('cls,count', [(UPerHeadUpsample, 6),
                                       (SegformerHeadUpsample, 3)])
@pytest.mark.parametrize('size', [(32, 32), (25, 19)])
def test_dlu_head_shapes_and_gradients(cls, count, size):
    head = cls(upsample_cfg=TINY_DLU, **SMALL)
    ups = _upsamplers(head)
    assert len(ups) == count and all(isinstance(m, DLU) for m in ups)
    # one 2x step per FPN level, then 2x, 4x, 8x to the 1/4 scale
    expected = [2, 2, 2, 2, 4, 8] if count == 6 else [2, 4, 8]
    assert [m.scale_factor for m in ups] == expected
    assert all(m.channels == 16 and m.up_kernel == 3 for m in ups)
    out = head(_features(*size))
    assert out.shape == (2, 5, *size)
    (out**2).mean().backward()
    for i, m in enumerate(ups):
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
            assert p.grad.abs().sum() > 0, f'upsampler {i}: {name}'


@pytest.mark.parametrize('upsample_cfg', [
    dict(type='carafe_portable', up_kernel=3, compressed_channels=8),
    dict(type='deconv', upsample_kernel=3),
    dict(type='pixel_shuffle', upsample_kernel=3),
    dict(type='nearest'),
])
def test_other_upsample_types_on_odd_sizes(upsample_cfg):
    head = UPerHeadUpsample(upsample_cfg=upsample_cfg, **SMALL)
    out = head(_features(25, 19))
    assert out.shape == (2, 5, 25, 19)
    out.mean().backward()
    for m in _upsamplers(head):
        assert all(p.grad is not None for p in m.parameters())


class _Doubler(nn.Module):
    """A stand-in learned upsampler: repeats each pixel s*s times."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x.repeat_interleave(self.s, 2).repeat_interleave(self.s, 3)


def test_upsample_to_crops_or_resizes_learned_and_resizes_interpolation():
    x = torch.randn(1, 3, 4, 3)
    up = _Doubler(4)
    full = up(x)  # (16, 12)
    # larger than the target: cropped at the bottom / right
    assert torch.equal(upsample_to(up, x, (13, 12), 4), full[..., :13, :])
    assert torch.equal(upsample_to(up, x, (16, 9), 4), full[..., :, :9])
    # smaller: bilinear resize of the upsampled map (align_corners honoured)
    for ac in (False, True):
        expected = F.interpolate(full, size=(19, 14), mode='bilinear',
                                 align_corners=ac)
        assert torch.equal(upsample_to(up, x, (19, 14), 4, ac), expected)
    # mixed: crop the larger side, then resize the other
    expected = F.interpolate(full[..., :13, :], size=(13, 15),
                             mode='bilinear', align_corners=False)
    assert torch.equal(upsample_to(up, x, (13, 15), 4), expected)
    # interpolation layers go straight to the target size, as mmseg
    bil = nn.Upsample(scale_factor=4, mode='bilinear', align_corners=False)
    assert torch.equal(upsample_to(bil, x, (13, 10), 4),
                       F.interpolate(x, size=(13, 10), mode='bilinear'))
    with pytest.raises(ValueError, match=r'not 4x apart'):
        upsample_to(up, x, (12, 12), 4)  # 16 - 12 >= s
    with pytest.raises(ValueError, match=r'not 4x apart'):
        upsample_to(up, x, (16, 16), 4)  # 16 - 12 short by s


def test_dlu_head_on_odd_sizes_equals_crop_of_upsampled_maps():
    """The documented rule inside a head: with ceil-rounded levels the
    upsampled map is larger and is cropped; compare the FPN top-down and
    fusion steps with an explicit crop of each upsampler's output."""
    torch.manual_seed(0)
    head = UPerHeadUpsample(upsample_cfg=TINY_DLU, **SMALL).eval()
    inputs = _features(25, 19, n=1)
    with torch.no_grad():
        got = head(inputs)
        lat = [conv(inputs[i]) for i, conv in enumerate(head.lateral_convs)]
        lat.append(head.psp_forward(inputs))
        for i in range(3, 0, -1):
            h, w = lat[i - 1].shape[2:]
            lat[i - 1] = lat[i - 1] + \
                head.lateral_upsamplers[i - 1](lat[i])[..., :h, :w]
        outs = [head.fpn_convs[i](lat[i]) for i in range(3)] + [lat[3]]
        for i in range(3, 0, -1):
            outs[i] = head.fusion_upsamplers[i - 1](outs[i])[..., :25, :19]
        expected = head.cls_seg(head.fpn_bottleneck(torch.cat(outs, 1)))
    assert got.shape == (1, 5, 25, 19)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize('cls', [UPerHeadUpsample, SegformerHeadUpsample])
def test_build_time_errors_name_the_value(cls):
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type=cls.__name__,
                          upsample_cfg=dict(type='dlu2'), **SMALL))
    message = str(err.value)
    assert "upsample_cfg['type']='dlu2'" in message
    assert str(registered_upsample_types()) in message
    assert all(t in message for t in ('dlu', 'carafe_portable', 'bilinear'))
    with pytest.raises(ValueError, match=r"align_corners.*=True.*False"):
        cls(upsample_cfg=dict(type='bilinear', align_corners=True), **SMALL)
    with pytest.raises(ValueError, match=r"scale_factor'\]=2 does not match"):
        cls(upsample_cfg=dict(type='dlu', scale_factor=2), **SMALL)


def test_segformer_interpolate_mode_must_match_interpolation_type():
    with pytest.raises(ValueError, match=r"'nearest'.*interpolate_mode="
                                         r"'bilinear'"):
        SegformerHeadUpsample(upsample_cfg=dict(type='nearest'), **SMALL)


@pytest.mark.parametrize('cls', [UPerHeadUpsample, SegformerHeadUpsample])
def test_stock_checkpoint_loads_with_only_upsampler_keys_missing(cls):
    stock = STOCK[cls](**SMALL)
    head = cls(upsample_cfg=TINY_DLU, **SMALL)
    result = head.load_state_dict(stock.state_dict(), strict=False)
    assert result.unexpected_keys == []
    upsampler_keys = {k for k in head.state_dict()
                      if k.split('.')[0] in ('lateral_upsamplers',
                                             'fusion_upsamplers',
                                             'level_upsamplers')}
    assert upsampler_keys and set(result.missing_keys) == upsampler_keys
    for key, value in stock.state_dict().items():
        assert torch.equal(head.state_dict()[key], value)


def _bn(node):
    """The config with SyncBN replaced by BN (CPU, one process)."""
    if isinstance(node, dict):
        node = {k: _bn(v) for k, v in node.items()}
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
    elif isinstance(node, list):
        node = [_bn(v) for v in node]
    return node


def _config(name):
    return Config.fromfile(str(ROOT / 'configs' / 'dlu' / name))


CONFIGS = {
    'upernet': '{}_r50_4xb4-160k_ade20k-512x512.py',
    'segformer': '{}_mit-b1_8xb2-160k_ade20k-512x512.py',
}
STOCK_CONFIGS = {
    'upernet': 'upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
    'segformer': 'segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py',
}
LAYERS = {'dlu': DLU, 'carafe-portable': CARAFEPortable,
          'carafe': CARAFEPack, 'bilinear': nn.Upsample}


@pytest.mark.parametrize('model', ['upernet', 'segformer'])
@pytest.mark.parametrize('upsampler', list(LAYERS))
def test_config_decoder_and_parameter_delta(model, upsampler, monkeypatch,
                                            tmp_path):
    """Each configs/dlu file: the stock config's decode head with its type
    and upsampling swapped, data roots following $DLU_MM_ADE_ROOT, and (for
    DLU / CARAFE) exactly the formula's extra parameters over the stock
    head, summed over its upsamplers."""
    monkeypatch.setenv('DLU_MM_ADE_ROOT', '/somewhere/ade')
    cfg = _config(CONFIGS[model].format(f'{model}-{upsampler}'))
    stock_file = tmp_path / 'stock.py'
    stock_file.write_text(f"_base_ = 'mmseg::{STOCK_CONFIGS[model]}'\n")
    stock_cfg = Config.fromfile(str(stock_file))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/somewhere/ade'
    head_cfg = _bn(cfg.model.decode_head.to_dict())
    stock_head_cfg = _bn(stock_cfg.model.decode_head.to_dict())
    # only the type and the upsampling differ from the stock decoder
    assert {k: v for k, v in head_cfg.items()
            if k not in ('type', 'upsample_cfg')} == \
        {k: v for k, v in stock_head_cfg.items() if k != 'type'}
    assert cfg.model.backbone == stock_cfg.model.backbone
    assert cfg.model.get('pretrained') == stock_cfg.model.get('pretrained')
    head = MODELS.build(head_cfg)
    ups = _upsamplers(head)
    assert all(type(m) is LAYERS[upsampler] for m in ups)
    if upsampler in ('bilinear', 'carafe'):
        return
    assert head_cfg['upsample_cfg'] == dict(
        type=upsampler.replace('-', '_'), up_kernel=5, up_group=1,
        encoder_kernel=3, encoder_dilation=1, compressed_channels=64)
    formula = dlu_params if upsampler == 'dlu' else carafe_params
    scales = [2, 2, 2, 2, 4, 8] if model == 'upernet' else [2, 4, 8]
    expected = sum(formula(UpsamplerSpec(channels=head.channels,
                                         scale_factor=s)) for s in scales)
    stock = MODELS.build(stock_head_cfg)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(head) - count(stock) == expected


def test_r50_upernet_dlu_config_forward_backward():
    """The full-size UperNet-R50-DLU model of the config (no pretrained
    weights, BN for SyncBN) on two 64x64 images: finite losses and
    gradients in every decoder upsampler."""
    cfg = _config(CONFIGS['upernet'].format('upernet-dlu'))
    model_cfg = _bn(cfg.model.to_dict())
    model_cfg.update(pretrained=None)
    model_cfg['data_preprocessor']['size'] = (64, 64)
    model = MODELS.build(model_cfg)
    model.init_weights()
    ups = _upsamplers(model.decode_head)
    assert len(ups) == 6 and all(type(m) is DLU for m in ups)
    assert all(m.channels == 512 for m in ups)
    # the paper's initialisation survives the model's init_weights
    assert all(not m.conv_offset.weight.any() for m in ups)
    samples = []
    for _ in range(2):  # 2 images: the PPM's 1x1 pooled BN needs a batch
        sample = SegDataSample(metainfo=dict(
            img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 150, (1, 64, 64), dtype=torch.long))
        samples.append(sample)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
              for _ in samples]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training=True)
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    for m in ups:
        grads = [p.grad for p in m.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
