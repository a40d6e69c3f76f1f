"""Parameter / MAC formulas against built modules and traced counts, the
paper's complexity table, dlu_mm.analysis (layer and model costs) and
tools/analysis/complexity.py run as a user would."""
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import complexity_analysis, get_model_complexity_info
from mmengine.registry import MODELS

from dlu_mm import DLU, CARAFEPortable
from dlu_mm.analysis import layer_costs, model_costs
from dlu_mm.complexity import (UpsamplerSpec, carafe_macs, carafe_params,
                               dlu_macs, dlu_params, dysample_macs,
                               dysample_params, interpolation_macs,
                               kernel_sampling_macs, reassembly_macs)
from dlu_mm.flop_counting import flop_analyzer, registered_flop_handles
from dlu_mm.layers.builder import build_upsampler
from tool_runner import run_tool

# (C, s, k_up, G, k_enc, C_m)
SPECS = [(256, 2, 5, 1, 3, 64), (16, 4, 3, 2, 1, 8), (12, 3, 5, 3, 5, 4),
         (8, 1, 1, 4, 3, 6)]
# The paper's table (/work/shared/PAPER.md), C=256, C_m=64, k=5, k_e=3, G=1:
# s -> DLU params, CARAFE params, DLU MACs/px, CARAFE MACs/px.
PAPER = {2: (35489, 74148, 60992, 99584), 4: (49337, 247248, 151616, 349184),
         8: (104729, 939648, 514112, 1347584),
         16: (326297, 3709248, 1964096, 5341184)}

ROOT = Path(__file__).resolve().parents[1]
TOOL = 'tools/analysis/complexity.py'


def _spec(c, s, k, g, ke, cm):
    return UpsamplerSpec(c, s, k, g, ke, cm)


def _modules(c, s, k, g, ke, cm):
    kw = dict(up_kernel=k, up_group=g, encoder_kernel=ke,
              compressed_channels=cm)
    return DLU(c, s, **kw), CARAFEPortable(c, s, **kw)


def _count(model, *inputs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return flop_analyzer(model, inputs, warn_unsupported=False)


@pytest.mark.parametrize('c,s,k,g,ke,cm', SPECS)
def test_parameter_formulas_equal_brute_count(c, s, k, g, ke, cm):
    dlu, carafe = _modules(c, s, k, g, ke, cm)
    spec = _spec(c, s, k, g, ke, cm)
    assert sum(p.numel() for p in dlu.parameters()) == dlu_params(spec)
    assert sum(p.numel() for p in carafe.parameters()) == carafe_params(spec)


@pytest.mark.parametrize('c,s,k,g,ke,cm', SPECS)
def test_traced_macs_equal_formulas(c, s, k, g, ke, cm):
    """Module-level counts with our handles: DLU = dlu_macs(with the kernel
    sampling), CARAFE = carafe_macs; each handle's share is its term."""
    dlu, carafe = _modules(c, s, k, g, ke, cm)
    spec = _spec(c, s, k, g, ke, cm)
    n, h, w = 2, 5, 3
    x = torch.randn(n, c, h, w)
    traced = _count(dlu, x)
    assert traced.total() == dlu_macs(spec, with_sampling=True) * n * h * w
    ops = traced.by_operator()
    assert ops['addcmul_'] == reassembly_macs(spec) * n * h * w
    assert ops['grid_sampler'] == kernel_sampling_macs(spec) * n * h * w
    assert _count(carafe, x).total() == carafe_macs(spec) * n * h * w


def test_traced_custom_ops_counted():
    """If the custom ops themselves show up in a trace (called directly),
    the handles count k_up^2 MACs per output value for the reassembly, and
    for the fused DLU op the kernel sampling on top."""

    class Reassemble(nn.Module):
        def forward(self, x, masks):
            return torch.ops.dlu_mm.reassemble(x, masks, 3, 2, 2, 'torch')

    class DLUOp(nn.Module):
        def forward(self, x, space, offsets):
            return torch.ops.dlu_mm.dlu_reassemble(x, space, offsets, 3, 2, 2,
                                                   'torch')

    x, masks = torch.randn(1, 4, 3, 5), torch.rand(1, 18, 6, 10)
    traced = _count(Reassemble(), x, masks)
    assert set(traced.by_operator()) == {'reassemble'}
    spec = UpsamplerSpec(channels=4, scale_factor=2, up_kernel=3, up_group=2)
    assert traced.total() == reassembly_macs(spec) * 3 * 5
    space, offsets = torch.rand(1, 18, 3, 5), torch.randn(1, 16, 3, 5)
    traced = _count(DLUOp(), x, space, offsets)
    assert set(traced.by_operator()) == {'dlu_reassemble'}
    assert traced.total() == (reassembly_macs(spec) +
                              kernel_sampling_macs(spec)) * 3 * 5


@pytest.mark.parametrize('mode,per_value', [('bilinear', 4), ('nearest', 1),
                                            ('bicubic', 16)])
def test_grid_sampler_counts_by_mode(mode, per_value):

    class Sample(nn.Module):
        def forward(self, x, grid):
            return F.grid_sample(x, grid, mode=mode, align_corners=True)

    x, grid = torch.randn(2, 3, 4, 4), torch.rand(2, 5, 7, 2) * 2 - 1
    assert _count(Sample(), x, grid).total() == per_value * 2 * 3 * 5 * 7


def test_handles_registered_for_get_model_complexity_info():
    dlu = DLU(16, 2, compressed_channels=8)
    spec = UpsamplerSpec(16, 2, compressed_channels=8)
    before = dict(complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        plain = get_model_complexity_info(dlu, (16, 4, 4), show_table=False,
                                          show_arch=False)['flops']
        with registered_flop_handles():
            ours = get_model_complexity_info(
                dlu, (16, 4, 4), show_table=False, show_arch=False)['flops']
    assert ours == dlu_macs(spec, with_sampling=True) * 16
    assert plain == ours - reassembly_macs(spec) * 16  # mmengine alone
    assert complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS == before


def test_paper_table_and_headline():
    for s, row in PAPER.items():
        spec = UpsamplerSpec(scale_factor=s)
        assert (dlu_params(spec), carafe_params(spec), dlu_macs(spec),
                carafe_macs(spec)) == row
    assert layer_costs.PAPER_TABLE == PAPER
    red = layer_costs.reductions(UpsamplerSpec(), [16])['16']
    assert round(100 * red['params']) == 91
    assert red['macs_paper_count'] >= 0.63
    # PAPER.md: counting the kernel sampling makes the 16x saving 62.7%
    assert round(100 * red['macs_with_sampling'], 1) == 62.7


def test_baseline_formulas():
    spec = UpsamplerSpec(channels=256, scale_factor=2)
    assert interpolation_macs(spec, 'nearest') == 4 * 256
    assert interpolation_macs(spec, 'bilinear') == 16 * 256
    with pytest.raises(ValueError, match="'bicubic'"):
        interpolation_macs(spec, 'bicubic')
    # DySample "lp", static scope, groups=4: one 1x1 offset conv
    conv = nn.Conv2d(256, 2 * 4 * 4, 1)
    assert dysample_params(spec) == sum(p.numel() for p in conv.parameters())

    class DySampleLP(nn.Module):  # the op structure, for the MAC count
        def __init__(self):
            super().__init__()
            self.offset = conv

        def forward(self, x):
            n, c, h, w = x.shape
            off = F.pixel_shuffle(self.offset(x) * 0.25, 2)  # (n, 8, 2h, 2w)
            grid = off.view(n * 4, 2, 2 * h, 2 * w).permute(0, 2, 3, 1)
            return F.grid_sample(x.reshape(n * 4, c // 4, h, w), grid,
                                 align_corners=False).view(n, c, 2 * h, 2 * w)

    assert _count(DySampleLP(), torch.randn(1, 256, 3, 4)).total() == \
        dysample_macs(spec) * 12


def test_layer_report_rows_and_paper_check():
    result = layer_costs.layer_report(UpsamplerSpec(), [2, 16], (8, 4))
    names = ['nearest', 'bilinear', 'DySample', 'CARAFE', 'DLU',
             'DLU+sampling']
    rows = result['rows']
    assert [(r['scale'], r['upsampler']) for r in rows] == \
        [(s, n) for s in (2, 16) for n in names]
    dlu16 = rows[names.index('DLU') + len(names)]
    assert dlu16['params'] == PAPER[16][0]
    assert dlu16['macs'] == PAPER[16][2] * 8 * 4
    assert all(c['match'] for c in result['paper_check'].values())
    assert round(100 * result['dlu_vs_carafe']['16']['params']) == 91
    # other settings than the paper's: no paper check
    other = layer_costs.layer_report(UpsamplerSpec(channels=64), [2], (4, 4))
    assert other['paper_check'] is None


def test_layer_cli_writes_png_and_json(tmp_path):
    out = run_tool([TOOL, '--scales', '2', '16', '--size', '8', '4',
                    '--out-dir', tmp_path]).stdout
    assert 'DLU+sampling' in out and 'match the paper' in out
    png = (tmp_path / 'upsampler_complexity.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    data = json.loads((tmp_path / 'upsampler_complexity.json').read_text())
    expected = layer_costs.layer_report(UpsamplerSpec(), [2, 16], (8, 4))
    assert data == json.loads(json.dumps(expected))


def test_layer_cli_rejects_bad_arguments():
    proc = run_tool([TOOL, '--up-kernel', '4'], check=False)
    assert proc.returncode == 2
    assert '--up-kernel must be odd' in proc.stdout


def test_baseline_cfg_swaps_every_typed_upsample_cfg():
    from mmengine.config import ConfigDict

    from dlu_mm.analysis.baselines import baseline_cfg
    cfg = ConfigDict(
        type='Net',
        neck=dict(upsample_cfg=dict(type='dlu', up_kernel=3,
                                    scale_factor=2)),
        heads=[dict(upsample_cfg=dict(type='carafe_portable'))],
        aux=dict(upsample_cfg=dict(mode='bilinear')))
    base, replaced = baseline_cfg(cfg, 'bilinear')
    assert replaced == 2
    assert base.neck.upsample_cfg == dict(type='bilinear', scale_factor=2)
    assert base.heads[0].upsample_cfg == dict(type='bilinear')
    assert base.aux.upsample_cfg == dict(mode='bilinear')  # no type: kept
    assert cfg.neck.upsample_cfg.type == 'dlu'  # the input is untouched


@MODELS.register_module(name='TinyUpsampleNet', force=True)
class TinyUpsampleNet(nn.Module):
    """Image (N, 3, H, W) -> stride-2 stem -> 2x upsample, and a stride-4
    branch -> 4x upsample by a nested head's upsampler."""

    def __init__(self, upsample_cfg, head):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = build_upsampler(upsample_cfg, 8, 2)
        self.head_up = build_upsampler(head['upsample_cfg'], 8, 4)

    def forward(self, x):
        y = self.stem(x)
        return self.up(y) + self.head_up(self.down(y))[..., :2 * y.shape[2],
                                                        :2 * y.shape[3]]


def test_config_mode_delta_equals_upsampler_formulas(tmp_path):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(
        "model = dict(type='TinyUpsampleNet',\n"
        "    upsample_cfg=dict(type='dlu', up_kernel=3,"
        " compressed_channels=4),\n"
        "    head=dict(upsample_cfg=dict(type='carafe_portable',"
        " up_group=2, compressed_channels=6)))\n")
    result = model_costs.config_report(str(cfg), (20, 28))
    path = model_costs.write_config_report(result, tmp_path)
    assert path == tmp_path / 'tiny_complexity.json'
    data = json.loads(path.read_text())
    assert data['delta_vs_baseline'] == json.loads(json.dumps(
        result['delta_vs_baseline']))
    dlu = UpsamplerSpec(8, 2, up_kernel=3, compressed_channels=4)
    car = UpsamplerSpec(8, 4, up_group=2, compressed_channels=6)
    # stem: 10x14; the stride-4 branch: 5x7
    expected = (dlu_macs(dlu, with_sampling=True) -
                interpolation_macs(dlu, 'nearest')) * 10 * 14 + \
        (carafe_macs(car) - interpolation_macs(car, 'nearest')) * 5 * 7
    assert data['upsample_cfgs_replaced'] == 2
    assert data['delta_vs_baseline']['macs'] == expected
    assert data['delta_vs_baseline']['params'] == dlu_params(dlu) + \
        carafe_params(car)
    ups = {u['name']: u for u in data['model']['upsamplers']}
    assert set(ups) == {'up', 'head_up'}
    assert ups['up']['input_shapes'] == [[1, 8, 10, 14]]
    assert all(u['macs'] == u['formula_macs'] for u in ups.values())
    base = {u['name']: u for u in data['baseline']['upsamplers']}
    assert base['up']['type'] == 'Upsample' and base['up']['params'] == 0
    assert data['model']['upsampler_macs'] == sum(u['macs']
                                                  for u in ups.values())


def test_config_mode_on_an_mmseg_config_builds_the_baseline():
    """mmseg's EncoderDecoder edits its config while building; the
    baseline (bilinear) must still build from the untouched config."""
    result = model_costs.config_report(
        str(ROOT / 'configs/dlu/upernet-dlu_r50_4xb4-160k_ade20k-512x512.py'),
        (64, 64), baseline='bilinear')
    assert 'baseline_error' not in result
    assert result['upsample_cfgs_replaced'] == 1
    # six DLUs in the decoder (3 x 2x, then 2x, 4x, 8x), 512 channels
    assert result['delta_vs_baseline']['params'] == sum(
        dlu_params(UpsamplerSpec(512, s)) for s in (2, 2, 2, 2, 4, 8))
