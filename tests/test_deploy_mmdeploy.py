"""Deployment with mmdeploy (dlu_mm.deploy): mmdeploy 1.3.1's torch2onnx
exports the demo DLU Faster R-CNN, Mask R-CNN and UperNet to plain ONNX
(standard domain only), checked with ONNX Runtime against PyTorch at the
export size and at a size that is not a multiple of 64; and each bridge /
rewriter on its own, against the function it replaces."""
import subprocess
import sys

import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdeploy.core import RewriterContext
from tool_runner import ROOT, load_tool_module, run_tool, tool_env

import dlu_mm.deploy  # noqa: F401  (registers the rewriters)
from dlu_mm.deploy import check
from dlu_mm.layers import DLU
from dlu_mm.mmseg import upsample_to
from dlu_mm.onnx_check import (max_abs_errors, onnx_op_counts, ort_session,
                               run_ort, within)

DEMO = 'configs/demo/'
DEPLOY = 'configs/deploy/'
# What README states and the tool's `model` command defaults to: max abs
# error <= ATOL + RTOL * max|reference| for every output.
ATOL, RTOL = 1e-5, 1e-6
EXPORT_SHAPE = (1, 3, 256, 256)  # the demo test pipeline's 256x256, /64
ODD_SHAPE = (1, 3, 200, 232)  # levels 50x58 .. 7x8, P6 4x4: crops


def _context(opset=17, backend='onnxruntime'):
    cfg = dict(backend_config=dict(type=backend),
               onnx_config=dict(type='onnx', opset_version=opset))
    return RewriterContext(cfg=cfg, backend=backend, opset=opset)


def _export(module, inputs, path, names, dynamic_axes, opset=17):
    """torch.onnx.export as mmdeploy calls it (no ``dynamo=``), inside
    mmdeploy's rewriter context."""
    with _context(opset), torch.no_grad():
        torch.onnx.export(module.eval(), inputs, str(path),
                          input_names=names, dynamic_axes=dynamic_axes,
                          opset_version=opset)
    return str(path)


def _ort_errors(path, module, feeds):
    with torch.no_grad():
        ref = module(*feeds.values())
    ref = ref if isinstance(ref, tuple) else (ref, )
    got = run_ort(ort_session(path), feeds)
    return max_abs_errors([f'out{i}' for i in range(len(ref))], got, ref)


def _assert_within(errors, atol=ATOL, rtol=RTOL):
    assert all(within(errors, atol, rtol).values()), errors


def test_plain_dlu_mm_imports_neither_mmdeploy_nor_the_deploy_module():
    code = ('import sys, dlu_mm, dlu_mm.mmdet, dlu_mm.mmseg; '
            "print(sorted(m for m in sys.modules if m.startswith("
            "('mmdeploy', 'dlu_mm.deploy'))))")
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                         env=tool_env(), capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == '[]'


# --------------------------------------------------------------------------
# The torch >= 2.9 bridges
# --------------------------------------------------------------------------
def test_torch_onnx_export_gets_dynamo_false_inside_mmdeploy(monkeypatch,
                                                             tmp_path):
    calls = []
    real_export = torch.onnx.export

    def spy(*args, **kwargs):
        calls.append(kwargs.get('dynamo', 'default'))
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, 'export', spy)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    path = _export(conv, (torch.randn(1, 3, 8, 8), ), tmp_path / 'c.onnx',
                   ['x'], {'x': {2: 'h', 3: 'w'}})
    assert calls == [False]
    assert torch.onnx.export is spy  # restored on exit
    _assert_within(_ort_errors(path, conv, {'x': torch.randn(1, 3, 5, 9)}))


def test_fx_wrap_registry_is_restored_on_rewriter_exit():
    """torch.fx's wrap registry is a dict; mmdeploy 1.3.1 pops it like a
    list when it grew inside the context (KeyError: -1 without the
    bridge)."""
    from torch.fx._symbolic_trace import _wrapped_fns_to_patch
    before = dict(_wrapped_fns_to_patch)
    namespace = {'__name__': 'dlu_mm_test_fx_wrap'}
    with _context():
        exec(compile('import torch.fx\ntorch.fx.wrap("len")\n', 'fx_test',
                     'exec'), namespace)
        assert len(_wrapped_fns_to_patch) == len(before) + 1
    assert dict(_wrapped_fns_to_patch) == before


def _export_all(modules, inputs, tmp_path, names, dynamic_axes, opset):
    """Export each module in one mmdeploy rewriter context (entering one
    costs about a second: mmdeploy swaps functions through the gc)."""
    paths = []
    with _context(opset), torch.no_grad():
        for i, module in enumerate(modules):
            paths.append(str(tmp_path / f'm{i}.onnx'))
            torch.onnx.export(module.eval(), inputs, paths[-1],
                              input_names=names, dynamic_axes=dynamic_axes,
                              opset_version=opset)
    return paths


@pytest.mark.parametrize('opset', [11, 17])
def test_roi_align_exports_to_onnx_roialign(tmp_path, opset):
    from mmcv.ops import RoIAlign
    layers = [RoIAlign(7, spatial_scale=0.25, sampling_ratio=2,
                       aligned=aligned) for aligned in (True, False)]
    generator = torch.Generator().manual_seed(0)

    def rois(k, h, w):
        xy = torch.rand(k, 2, generator=generator) * torch.tensor([w, h])
        wh = 8 + torch.rand(k, 2, generator=generator) * 48
        batch = torch.randint(0, 2, (k, 1), generator=generator).float()
        return torch.cat([batch, xy, xy + wh], 1)

    feat = torch.randn(2, 8, 16, 20, generator=generator)
    paths = _export_all(layers, (feat, rois(5, 64, 80)), tmp_path,
                        ['feat', 'rois'], {'feat': {2: 'h', 3: 'w'},
                                           'rois': {0: 'k'}}, opset)
    feeds = {'feat': torch.randn(2, 8, 13, 22, generator=generator),
             'rois': rois(9, 52, 88)}
    for layer, path in zip(layers, paths):
        assert onnx_op_counts(path)['RoiAlign'] == 1
        _assert_within(_ort_errors(path, layer, feeds))


class _GridSample(nn.Module):

    def __init__(self, mode, padding_mode, align_corners):
        super().__init__()
        self.args = dict(mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)

    def forward(self, x, grid):
        return F.grid_sample(x, grid, **self.args)


@pytest.mark.parametrize('opset', [16, 20])
def test_grid_sample_exports_to_onnx_gridsample(tmp_path, opset):
    modules = [_GridSample('bilinear', 'border', True),  # DLU's
               _GridSample('nearest', 'zeros', False),
               _GridSample('bicubic', 'reflection', False)]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 7, generator=generator)
    grid = torch.rand(2, 5, 4, 2, generator=generator) * 2.4 - 1.2
    paths = _export_all(modules, (x, grid), tmp_path, ['x', 'grid'],
                        {'x': {2: 'h', 3: 'w'}, 'grid': {1: 'gh', 2: 'gw'}},
                        opset)
    x = torch.randn(2, 3, 9, 5, generator=generator)
    grid = torch.rand(2, 9, 3, 2, generator=generator) * 2.4 - 1.2
    for module, path in zip(modules, paths):
        assert onnx_op_counts(path) == {'GridSample': 1}
        # nearest: sampling points off pixel midpoints (ties round apart)
        g = torch.round(grid * 8) / 8 + 0.01 \
            if module.args['mode'] == 'nearest' else grid
        _assert_within(_ort_errors(path, module, {'x': x, 'grid': g}))


def test_grid_sample_below_opset_16_stays_mmdeploy_op(tmp_path):
    path = _export(_GridSample('bilinear', 'zeros', False),
                   (torch.randn(1, 1, 4, 4), torch.zeros(1, 2, 2, 2)),
                   tmp_path / 'g.onnx', ['x', 'grid'], {}, opset=11)
    nodes = onnx.load(path).graph.node
    assert [(n.domain, n.op_type) for n in nodes] == [('mmdeploy',
                                                        'grid_sampler')]


# --------------------------------------------------------------------------
# Rewrites of size-dependent model code
# --------------------------------------------------------------------------
@pytest.mark.parametrize('upsample', ['nearest', 'dlu'])
def test_fpn_add_crops_at_any_size(tmp_path, upsample):
    from dlu_mm.mmdet import FPN_Upsample
    neck = FPN_Upsample([8, 16, 32], 8, num_outs=4,
                        upsample_cfg=dict(type=upsample)).eval()

    def levels(h, w):
        sizes = [(h, w), ((h + 1) // 2, (w + 1) // 2),
                 ((h + 3) // 4, (w + 3) // 4)]
        return [torch.randn(1, c, *s) for c, s in zip((8, 16, 32), sizes)]

    class Neck(nn.Module):

        def __init__(self):
            super().__init__()
            self.neck = neck

        def forward(self, *feats):
            return self.neck(list(feats))

    module = Neck().eval()
    names = ['c2', 'c3', 'c4']
    path = _export(module, tuple(levels(16, 16)), tmp_path / 'fpn.onnx',
                   names, {n: {2: f'{n}h', 3: f'{n}w'} for n in names})
    feeds = dict(zip(names, levels(13, 10)))  # every level odd somewhere
    _assert_within(_ort_errors(path, module, feeds))


def test_fpn_add_rewrite_is_the_stock_add():
    from mmdet.models.necks import FPN_CARAFE

    from dlu_mm.deploy.rewriters import fpn_carafe__tensor_add
    neck = FPN_CARAFE.__new__(FPN_CARAFE)  # tensor_add uses no state
    a, b = torch.randn(2, 3, 5, 7), torch.randn(2, 3, 6, 8)
    for x, y in ((a, b), (a, b[:, :, :5, :7])):
        assert torch.equal(fpn_carafe__tensor_add(None, x, y),
                           FPN_CARAFE.tensor_add(neck, x, y))


class _UpsampleStep(nn.Module):
    """A decode head's step: DLU by s, fitted to ``high``'s size. It calls
    ``upsample_to`` as the heads do, through a module global (mmdeploy
    swaps functions where modules hold them, not in closures)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.up = DLU(8, scale, compressed_channels=8)
        with torch.no_grad():
            self.up.conv_offset.weight.normal_(0, 0.1)
            self.up.kernel_space_generator.weight.normal_(0, 0.1)

    def forward(self, low, high):
        return upsample_to(self.up, low, high.shape[2:], self.scale)


def test_decode_head_upsampling_follows_the_input_size(tmp_path):
    module = _UpsampleStep(4).eval()
    path = _export(module, (torch.randn(1, 8, 4, 4), torch.randn(1, 8, 16,
                                                                  16)),
                   tmp_path / 'u.onnx', ['low', 'high'],
                   {'low': {0: 'n', 2: 'lh', 3: 'lw'},
                    'high': {0: 'n', 2: 'hh', 3: 'hw'}})
    # ceil-mode levels (crop: 4 * 4 = 16 > 13) and floor-mode ones
    # (bilinear resize: 4 * 3 = 12 < 15)
    for low, high in (((1, 8, 4, 3), (1, 8, 13, 10)),
                      ((2, 8, 3, 4), (2, 8, 15, 16))):
        feeds = {'low': torch.randn(*low), 'high': torch.randn(*high)}
        _assert_within(_ort_errors(path, module, feeds))


def test_adaptive_avg_pool_is_exact_at_any_size(tmp_path):
    pool = nn.AdaptiveAvgPool2d((3, 6)).eval()
    path = _export(pool, (torch.randn(1, 4, 8, 8), ), tmp_path / 'p.onnx',
                   ['x'], {'x': {0: 'n', 2: 'h', 3: 'w'}})
    assert 'MatMul' in onnx_op_counts(path)
    for shape in ((1, 4, 8, 8), (2, 4, 7, 13), (1, 4, 2, 5)):
        _assert_within(_ort_errors(path, pool, {'x': torch.randn(*shape)}))
    x = torch.randn(2, 4, 11, 9)
    expected = F.adaptive_avg_pool2d(x, (3, 6))
    with _context():  # the eager rewrite (mmdeploy's reference runs)
        got = F.adaptive_avg_pool2d(x, (3, 6))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------
# Whole models through mmdeploy's torch2onnx
# --------------------------------------------------------------------------
def _perturbed_checkpoint(model_cfg, deploy_cfg, path):
    """The model's constructor weights with non-zero DLU offsets and
    kernel spaces that vary (a new DLU samples a nearly uniform kernel
    space at zero offsets, which would hide kernel-sampling errors), and
    classifier weights large enough that scores are well apart (the
    graphs are compared detection by detection, in order)."""
    torch.manual_seed(0)
    model = check.build_reference_model(model_cfg, deploy_cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith('weight'):
                continue
            if 'conv_offset' in name:
                p.normal_(0, 0.05)
            elif 'kernel_space_generator' in name:
                p.normal_(0, 0.1)
            elif 'fc_cls' in name or 'rpn_cls' in name:
                p.normal_(0, 1.0)
    torch.save({'state_dict': model.state_dict()}, path)
    return path, model


def _num_dlu(model):
    return sum(isinstance(m, DLU) for m in model.modules())


@pytest.mark.parametrize('config,deploy_cfg,second_shape', [
    ('mask-rcnn_r18_fpn-dlu_demo-coco.py', 'instance-seg_onnxruntime_dynamic',
     ODD_SHAPE),
    ('upernet-dlu_r18_demo-ade-256x256.py',
     'segmentation_onnxruntime_dynamic', (2, 3, 200, 232)),
])
def test_mmdeploy_exports_dlu_model_to_plain_onnx(tmp_path, config,
                                                  deploy_cfg, second_shape):
    model_cfg, deploy_cfg = DEMO + config, f'{DEPLOY}{deploy_cfg}.py'
    ckpt, model = _perturbed_checkpoint(model_cfg, deploy_cfg,
                                        str(tmp_path / 'w.pth'))
    result = check.export_and_check(model_cfg, deploy_cfg,
                                    str(tmp_path / 'export'), ckpt,
                                    check_shapes=[second_shape])
    # export_and_check raised if any node were outside the ONNX domain
    assert result['export_shape'] == EXPORT_SHAPE
    assert result['ops']['GridSample'] == _num_dlu(model)
    if 'rcnn' in config:
        assert result['ops']['RoiAlign'] == 8  # 4 levels, box + mask
    assert set(result['errors']) == {EXPORT_SHAPE, second_shape}
    for shape, errors in result['errors'].items():
        _assert_within(errors)
        print(shape, {k: f'{e:.1e}' for k, (e, _) in errors.items()})


def test_export_tool_faster_rcnn_with_mmdeploy(tmp_path):
    """The tool's `model` command: mmdeploy export of the demo Faster
    R-CNN, checked at 256x256 and at 200x232 with README's tolerance
    (the tool's default), standard ops only."""
    model_cfg = DEMO + 'faster-rcnn_r18_fpn-dlu_demo-coco.py'
    deploy_cfg = DEPLOY + 'detection_onnxruntime_dynamic.py'
    ckpt, _ = _perturbed_checkpoint(model_cfg, deploy_cfg,
                                    str(tmp_path / 'w.pth'))
    work_dir = tmp_path / 'export'
    proc = run_tool(['tools/deployment/export_onnx.py', 'model', model_cfg,
                     ckpt, '--deploy-cfg', deploy_cfg, '--work-dir',
                     work_dir, '--check-shape', *map(str, ODD_SHAPE)])
    out = proc.stdout
    assert out.rstrip().endswith('PASS'), out[-3000:]
    assert f'input {EXPORT_SHAPE}: max abs error' in out
    assert f'input {ODD_SHAPE}: max abs error' in out
    for name in ('dets[boxes]', 'dets[scores]', 'labels'):
        assert out.count(f'  {name} ') == 2, out[-3000:]
    ops = onnx_op_counts(str(work_dir / 'end2end.onnx'))
    assert ops['GridSample'] == 4 and ops['RoiAlign'] == 4
    assert ops['NonMaxSuppression'] >= 1
    print(out[out.index('input (1, 3, 256, 256)'):])


@pytest.fixture(scope='module')
def tool():
    return load_tool_module('tools/deployment/export_onnx.py')


def test_export_tool_model_arguments_are_checked(tool, tmp_path, capsys):
    config = DEMO + 'faster-rcnn_r18_fpn-dlu_demo-coco.py'
    deploy_cfg = DEPLOY + 'detection_onnxruntime_dynamic.py'
    cases = [
        (['--deploy-cfg', DEPLOY + 'nope.py'],
         f'--deploy-cfg {DEPLOY}nope.py: no such file'),
        (['--deploy-cfg', deploy_cfg, '--check-shape', '1', '1', '64', '64'],
         '--check-shape [1, 1, 64, 64] must have C=3'),
        (['--deploy-cfg', deploy_cfg, '--img', str(tmp_path / 'no.jpg')],
         f'--img {tmp_path}/no.jpg: no such file'),
    ]
    for extra, message in cases:
        assert tool.main(['model', config, '--work-dir', str(tmp_path),
                          *extra]) == 2
        assert message in capsys.readouterr().err


def test_export_tool_refuses_pickled_checkpoint_unless_trusted(tool,
                                                               tmp_path):
    """The `model` command reads CHECKPOINT through the project's safe
    loader, also when mmdeploy loads it."""
    from dlu_mm.engine import install_checkpoint_loader
    from dlu_mm.engine.checkpoint import CheckpointError
    config = DEMO + 'faster-rcnn_r18_fpn-dlu_demo-coco.py'
    pickled = tmp_path / 'pickled.pth'
    torch.save({'state_dict': {}, 'meta': {'fn': getattr}}, pickled)
    args = tool.parse_args(['model', config, str(pickled), '--deploy-cfg',
                            DEPLOY + 'detection_onnxruntime_dynamic.py',
                            '--work-dir', str(tmp_path / 'out')])
    try:
        with pytest.raises(CheckpointError, match='--trust-checkpoint'):
            tool.export_model(args)
    finally:
        install_checkpoint_loader()
    assert not (tmp_path / 'out' / 'end2end.onnx').exists()
