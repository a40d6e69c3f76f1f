"""torch.compile sees dlu_mm as graph code: the layers compile with
fullgraph=True (Inductor for DLU) and match eager in values and gradients;
in whole models Dynamo finds no graph break caused by dlu_mm (the DLU
UperNet is one graph); mmengine's Runner trains the demo detector with
``compile`` set, with eager's losses."""
import re

import pytest
import torch

from dlu_mm.analysis.compile_check import (compiled_vs_eager, config_forward,
                                           graph_breaks)
from dlu_mm.layers import DLU, CARAFEPortable
from tool_runner import load_tool_module, run_tool

FASTER = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'
UPERNET = 'configs/demo/upernet-dlu_r18_demo-ade-256x256.py'


@pytest.mark.parametrize('layer_type,backend', [(DLU, 'inductor'),
                                                (CARAFEPortable,
                                                 'aot_eager')])
def test_layers_compile_in_one_graph(layer_type, backend):
    # float64: Inductor reorders float32 sums (weight gradients differed
    # from eager by 3.5e-6 relative), float64 leaves no room for that
    torch.manual_seed(0)
    layer = layer_type(8, 2, up_group=2, compressed_channels=4).double()
    for conv in layer.modules():
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.normal_(conv.weight, std=0.3)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64, requires_grad=True)
    eager = layer(x)
    eager_grads = torch.autograd.grad(eager.square().sum(),
                                      (x, *layer.parameters()))
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend=backend)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), (x, *layer.parameters()))
    torch.testing.assert_close(out, eager)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b)
    assert graph_breaks(layer, x)['graph_breaks'] == 0


@pytest.mark.parametrize('config,whole_graph', [(FASTER, False),
                                                (UPERNET, True)])
def test_models_have_no_graph_break_caused_by_dlu_mm(config, whole_graph):
    """The detector breaks in mmdet/mmcv code (data-dependent RPN
    branches, mmcv's pybind NMS and RoIAlign), never in dlu_mm's; the
    segmentor with DLU in its decoder is a single graph."""
    _, forward, inputs = config_forward(config, (128, 128))
    report = graph_breaks(forward, inputs)
    assert report['dlu_mm_breaks'] == 0, report['breaks']
    if whole_graph:
        assert report['graph_breaks'] == 0 and report['graphs'] == 1
    else:
        assert report['graph_breaks'] > 0  # mmdet's own
        assert all('/dlu_mm/' not in b['where'] for b in report['breaks'])
    result = compiled_vs_eager(forward, inputs, backend='aot_eager')
    assert result['outputs'] >= 1
    assert result['max_abs_diff'] <= 1e-5 * max(result['max_abs_value'], 1)


def test_runner_compile_trains_the_demo_detector(tmp_path):
    """``compile`` in the config (mmengine's Runner compiles train_step):
    the losses of two iterations equal an eager run's."""
    gen = load_tool_module('tools/data/make_demo_coco.py')
    root = tmp_path / 'data'
    gen.make_demo_coco(str(root), num_train=4, num_val=2,
                       image_size=(96, 96), seed=0)
    env = {'DLU_MM_DEMO_COCO_ROOT': f'{root}/'}
    options = ['train_cfg.max_iters=2', 'train_cfg.val_interval=100',
               'default_hooks.logger.interval=1',
               'train_dataloader.batch_size=2', 'randomness.seed=0']
    losses = {}
    for name, extra in (('eager', []), ('compiled',
                                        ['compile.backend=eager'])):
        out = run_tool(['tools/train.py', FASTER, '--work-dir',
                        tmp_path / name, '--cfg-options', *options, *extra],
                       env=env).stdout
        losses[name] = [float(v) for v in re.findall(
            r'Iter\(train\) \[\d/2\].*? loss: ([0-9.]+)', out)]
    assert 'Model has been "compiled"' in out
    assert len(losses['compiled']) == 2
    assert losses['compiled'] == pytest.approx(losses['eager'], rel=1e-4)
