"""FPN_Upsample and FCNMaskHeadUpsample with the layers mmdet's FPN_CARAFE
and FCNMaskHead refuse: portable CARAFE (CARAFE's keys and init), DLU and a
user's layer (shapes, gradients, init kept, build-time errors). Equality
with the stock modules for their own configurations is in
test_adapter_supersets.py."""
import pytest
import torch
import torch.nn as nn
from mmdet.models.necks import FPN_CARAFE
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmengine.registry import MODELS as ROOT_MODELS

from dlu_mm.layers import DLU
from dlu_mm.mmdet import FCNMaskHeadUpsample, FPN_Upsample

WIDTHS = [8, 16, 32, 64]
C = 16  # neck width
# Backbone maps of a 65x81 image at strides 2..16 (odd sizes everywhere: the
# top-down adds crop 2x-upsampled maps, e.g. 2*17 = 34 rows onto 33).
SIZES = [(33, 41), (17, 21), (9, 11), (5, 6)]


def _inputs(sizes=SIZES):
    return [torch.randn(2, w, h, wd) for w, (h, wd) in zip(WIDTHS, sizes)]


def _neck_args(upsample_cfg, **kw):
    return dict(dict(in_channels=WIDTHS, out_channels=C, num_outs=5),
                upsample_cfg=upsample_cfg, **kw)


def _seeded_init(module, seed=123):
    torch.manual_seed(seed)
    module.init_weights()
    return module.state_dict()


def _assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_neck_carafe_keys_and_init_match_fpn_carafe():
    cfg = dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3,
               encoder_dilation=1, compressed_channels=16)
    ref = FPN_CARAFE(**_neck_args(dict(cfg)))  # mmcv's CUDA op: build only
    same = FPN_Upsample(**_neck_args(dict(cfg)))
    portable = FPN_Upsample(**_neck_args(dict(cfg, type='carafe_portable')))
    ref_state = _seeded_init(ref)
    assert any(k.startswith('upsample_modules.3.content_encoder')
               for k in ref_state)
    _assert_same_state(ref_state, _seeded_init(same))
    # CARAFEPortable is no CARAFEPack, yet gets CARAFE's init back after the
    # neck's xavier pass, draw for draw
    _assert_same_state(ref_state, _seeded_init(portable))
    portable.load_state_dict(ref.state_dict(), strict=True)
    out = portable(_inputs())
    assert [o.shape[-2:] for o in out][:4] == [torch.Size(s) for s in SIZES]


def _dlu_neck():
    return FPN_Upsample(**_neck_args(dict(
        type='dlu', up_kernel=5, up_group=1, encoder_kernel=3,
        encoder_dilation=1, compressed_channels=16)))


def test_neck_dlu_shapes_and_gradients():
    neck = _dlu_neck()
    neck.init_weights()
    assert len(neck.upsample_modules) == 4
    assert all(isinstance(m, DLU) and m.channels == C and m.scale_factor == 2
               for m in neck.upsample_modules)
    out = neck(_inputs())
    assert [tuple(o.shape) for o in out] == [
        (2, C, h, w) for h, w in SIZES + [(3, 3)]]
    sum((o * torch.randn_like(o)).sum() for o in out).backward()
    for name, p in neck.upsample_modules.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name  # conv_offset too, though zero


def test_neck_keeps_dlu_init():
    neck = _dlu_neck()
    for p in neck.parameters():  # as if trained
        nn.init.normal_(p)
    FPN_CARAFE.init_weights(neck)  # the stock init clobbers DLU's...
    offset = neck.upsample_modules[0].conv_offset
    assert offset.weight.abs().sum() > 0
    neck = _dlu_neck()
    for p in neck.parameters():
        nn.init.normal_(p)
    neck.init_weights()  # ...FPN_Upsample's gives it back
    for m in neck.upsample_modules:
        assert not m.conv_offset.weight.any()
        assert not m.conv_offset.bias.any()
        # N(0, 0.001^2), not the neck's xavier (std ~0.06 for this conv)
        assert m.kernel_space_generator.weight.std() < 0.002
        assert not m.kernel_space_generator.bias.any()


class ToyUpsample(nn.Module):
    """A user's layer: nearest upsampling then a 1x1 conv."""

    def __init__(self, channels, scale_factor, gain=0.5):
        super().__init__()
        self.scale_factor = scale_factor
        self.conv = nn.Conv2d(channels, channels, 1)
        self.gain = gain
        self.init_weights()

    def init_weights(self):
        nn.init.constant_(self.conv.weight, self.gain)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(
            x, scale_factor=self.scale_factor, mode='nearest'))


@pytest.fixture
def toy_type():
    name = 'toy_upsample_for_test'
    ROOT_MODELS.register_module(name=name, module=ToyUpsample, force=True)
    yield name
    ROOT_MODELS._module_dict.pop(name)


def test_neck_with_user_registered_layer(toy_type):
    neck = FPN_Upsample(**_neck_args(dict(type=toy_type, gain=0.25)))
    neck.init_weights()
    for m in neck.upsample_modules:
        assert isinstance(m, ToyUpsample)
        assert (m.conv.weight == 0.25).all()  # its own init won
    out = neck(_inputs())
    assert [tuple(o.shape[-2:]) for o in out] == SIZES + [(3, 3)]
    out[0].sum().backward()
    assert neck.upsample_modules[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('cfg,match', [
    (dict(type='foo'), r"FPN_Upsample upsample_cfg\['type'\]='foo' is not a "
     r"registered upsample layer; registered upsample types: \[.*'dlu'.*\]"),
    (dict(type=None), r"upsample_cfg\['type'\]=None .*'nearest'"),
    (dict(up_kernel=5), r"FPN_Upsample upsample_cfg must be a dict with a "
     r"'type' key"),
    (dict(type='dlu', channels=8), r"upsample_cfg\['channels'\]=8 does not "
     r'match'),
    (dict(type='deconv'), r"needs a positive integer 'upsample_kernel'"),
])
def test_neck_build_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        FPN_Upsample(**_neck_args(cfg))


def test_neck_bad_in_channels():
    with pytest.raises(ValueError, match=r'FPN_Upsample in_channels must be '
                       r'a non-empty list of positive ints.*got 256'):
        FPN_Upsample(in_channels=256, out_channels=C, num_outs=5,
                     upsample_cfg=dict(type='dlu'))


HEAD = dict(num_convs=2, in_channels=8, conv_out_channels=16, num_classes=3)


def test_mask_head_carafe_keys_and_portable_init():
    cfg = dict(type='carafe', scale_factor=2, compressed_channels=8)
    ref = FCNMaskHead(**HEAD, upsample_cfg=dict(cfg))
    portable = FCNMaskHeadUpsample(
        **HEAD, upsample_cfg=dict(cfg, type='carafe_portable'))
    assert list(FCNMaskHeadUpsample(**HEAD, upsample_cfg=dict(cfg))
                .state_dict()) == list(ref.state_dict())
    _assert_same_state(_seeded_init(ref), _seeded_init(portable))
    portable.load_state_dict(ref.state_dict(), strict=True)
    assert portable(torch.randn(2, 8, 14, 14)).shape == (2, 3, 28, 28)


@pytest.mark.parametrize('cfg', [
    dict(type='dlu', compressed_channels=8),  # scale_factor defaults to 2
    dict(type='dlu', scale_factor=4, compressed_channels=8),
    dict(type='pixel_shuffle', scale_factor=2, upsample_kernel=3)],
    ids=['dlu-x2', 'dlu-x4', 'pixel_shuffle'])
def test_mask_head_any_upsampler(cfg):
    head = FCNMaskHeadUpsample(**HEAD, upsample_cfg=cfg)
    for p in head.parameters():
        nn.init.normal_(p)
    head.init_weights()
    s = cfg.get('scale_factor', 2)
    if cfg['type'] == 'dlu':
        assert isinstance(head.upsample, DLU)
        assert (head.upsample.channels, head.upsample.scale_factor) == (16, s)
        assert not head.upsample.conv_offset.weight.any()
    assert [k.split('.')[0] for k in head.state_dict()].count('upsample') > 0
    logits = head(torch.randn(3, 8, 14, 14))
    assert logits.shape == (3, 3, 14 * s, 14 * s)
    (logits * torch.randn_like(logits)).sum().backward()
    for name, p in head.upsample.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('cfg,match', [
    (dict(type='foo', scale_factor=2),
     r"FCNMaskHeadUpsample upsample_cfg\['type'\]='foo' is not a registered "
     r"upsample layer; registered upsample types: \[.*'dlu'.*\]"),
    (dict(type='dlu', scale_factor=0),
     r"FCNMaskHeadUpsample upsample_cfg\['scale_factor'\] must be a positive "
     r"integer for type 'dlu', got 0"),
    (dict(type='dlu', scale_factor=2.0),
     r"scale_factor'\] must be a positive integer for type 'dlu', got 2.0"),
    (dict(type='dlu', channels=32),
     r"upsample_cfg\['channels'\]=32 does not match"),
    (dict(scale_factor=2), r"must be a dict with a 'type' key"),
])
def test_mask_head_build_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        FCNMaskHeadUpsample(**HEAD, upsample_cfg=cfg)
