"""Whether ``torch.compile`` sees dlu_mm as graph code: the graph breaks of
a function (``torch._dynamo.explain``) with the ones dlu_mm causes picked
out, and compiled-vs-eager outputs.

A break is dlu_mm's when the innermost frame of its user stack is in
dlu_mm's sources (a break inside mmdet or mmcv code that merely sits below
one of our adapters in the stack is theirs). The custom ops of
:mod:`dlu_mm.ops.library` are single graph nodes, so a DLU or CARAFE layer
compiles with ``fullgraph=True``.
"""
from pathlib import Path
from typing import Callable, Dict, List

import torch

PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _innermost(reason):
    stack = getattr(reason, 'user_stack', None) or []
    return stack[-1] if stack else None


def graph_breaks(fn: Callable, *args, **kwargs) -> Dict:
    """Dynamo's view of ``fn(*args, **kwargs)``: graphs, graph breaks, and
    each break's reason, place and whether dlu_mm caused it."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*args, **kwargs)
    breaks = []
    for reason in explained.break_reasons:
        frame = _innermost(reason)
        where = f'{frame.filename}:{frame.lineno}' if frame else '?'
        breaks.append(dict(
            reason=str(reason.reason).strip().splitlines()[0],
            where=where,
            dlu_mm=bool(frame) and frame.filename.startswith(PACKAGE_DIR)))
    return dict(graphs=explained.graph_count,
                graph_breaks=explained.graph_break_count, breaks=breaks,
                dlu_mm_breaks=sum(b['dlu_mm'] for b in breaks))


def flat_tensors(value) -> List[torch.Tensor]:
    """The tensors of a (nested) tuple / list / dict output, in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in flat_tensors(item)]
    return []


def compiled_vs_eager(fn: Callable, *args, backend: str = 'inductor',
                      **kwargs) -> Dict:
    """Run ``fn`` eagerly and compiled with ``backend``; the largest
    absolute difference over every output tensor and their count."""
    with torch.no_grad():
        eager = flat_tensors(fn(*args, **kwargs))
        torch._dynamo.reset()
        compiled = flat_tensors(torch.compile(fn, backend=backend)(*args,
                                                                   **kwargs))
    if len(eager) != len(compiled):
        raise AssertionError(f'compiled run returned {len(compiled)} tensors,'
                             f' eager {len(eager)}')
    diffs = [(a.float() - b.float()).abs().max().item() if a.numel() else 0.
             for a, b in zip(eager, compiled)]
    return dict(outputs=len(eager), max_abs_diff=max(diffs, default=0.),
                max_abs_value=max((a.abs().max().item() for a in eager
                                   if a.numel()), default=0.))


def config_forward(config: str, img_size=(256, 256), cfg_options=None):
    """The model of an mmdet / mmseg ``config`` (random weights, eval mode)
    and a one-argument function running its ``mode='tensor'`` forward on a
    batch of one image of ``img_size`` (mmdet: the data preprocessor's
    output for mmdet's demo inputs). Returns ``(model, fn, inputs)``."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    backbone = cfg.model.get('backbone')
    if backbone is not None:
        backbone['init_cfg'] = None  # no pretrained download
    cfg.model.pop('pretrained', None)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    h, w = img_size
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
        samples = [SegDataSample(metainfo=meta)]
        inputs = torch.randn(1, 3, h, w)
    else:
        from mmdet.testing import demo_mm_inputs
        packed = demo_mm_inputs(batch_size=1, image_shapes=(3, h, w),
                                num_items=[3])
        data = model.data_preprocessor(packed, False)
        inputs, samples = data['inputs'], data['data_samples']

    def forward(batch):
        return model(batch, samples, mode='tensor')

    return model, forward, inputs
