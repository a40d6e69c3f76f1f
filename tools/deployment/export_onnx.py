"""Export a DLU layer, a portable CARAFE layer or a whole DLU Faster R-CNN to
ONNX with standard operators only, then check the graph with onnxruntime
against PyTorch (max abs error per output, at the export size and at a
second size that proves the height/width axes are dynamic).

Layer (the reassembly, DLU's kernel sampling and CARAFE's content encoder as
plain ONNX ops: Conv, Softmax, DepthToSpace, GridSample, Pad, Slice, Mul,
Add, ...)::

    python tools/deployment/export_onnx.py layer --type dlu --channels 64 \\
        --scale 2 --shape 1 64 20 24 --check-shape 1 64 31 17 \\
        --out work_dirs/export/dlu.onnx [--opset 17] \\
        [--exporter torchscript|dynamo] [--up-kernel 5 --up-group 1 ...]

    input ``x`` (N, C, H, W) -> output ``y`` (N, C, sH, sW); N, H, W dynamic.
    ``--init random`` (default) adds N(0, 0.1^2) noise to the freshly
    initialised weights, so the check exercises non-zero offsets and
    non-uniform kernels (a new DLU has zero offsets); ``--init default``
    exports the layer as constructed.

Model (a two-stage detector such as ``configs/demo/faster-rcnn_r18_fpn-dlu_
demo-coco.py`` or ``configs/dlu/faster-rcnn_r50_fpn-dlu_1x_coco.py``)::

    python tools/deployment/export_onnx.py model CONFIG [CHECKPOINT] \\
        --shape 1 3 256 256 --check-shape 1 3 224 288 \\
        --out work_dirs/export/faster_rcnn.onnx [--trust-checkpoint] \\
        [--cfg-options k=v ...] [--num-rois 32]

    It writes two graphs, split where mmdeploy splits two-stage detectors
    (its ``two_stage`` partition: the image to the features and the RPN's
    raw maps, then the RoI head), so that everything data-dependent (anchor
    decoding, NMS, top-k) stays outside the graphs:

    1. ``OUT``: ``image`` (N, 3, H, W), preprocessed as the model's
       ``data_preprocessor`` does (BGR->RGB if configured, mean/std
       normalised, zero-padded to ``pad_size_divisor``) ->
       ``neck_0 .. neck_{L-1}`` (N, C, H_l, W_l), the neck's pyramid, and
       ``rpn_cls_0 ..`` (N, A, H_l, W_l) / ``rpn_bbox_0 ..`` (N, 4A, H_l, W_l),
       the RPN head's raw objectness and box-delta maps per level.
       Dynamic axes: N, H, W (and every map's height and width).
    2. ``OUT`` with ``_roi`` before ``.onnx``: ``neck_0 .. neck_{R-1}`` (the
       R levels the RoI extractor reads) and ``rois`` (K, 5) as
       ``(batch_index, x1, y1, x2, y2)`` in input-image pixels ->
       ``cls_score`` (K, num_classes + 1) and ``bbox_pred``
       (K, 4 * num_classes) of the RoI box head. Unlike mmdeploy's second
       partition (which starts from already pooled RoI features), the
       multi-level RoI feature extraction is inside, as the standard ONNX
       ``RoiAlign`` (opset >= 16, ``coordinate_transformation_mode=
       half_pixel`` is mmcv's ``aligned=True``) on every level, combined by
       each RoI's level (mmdet's ``map_roi_levels``) with ``Where``; so a
       deployment needs no custom op. Dynamic axes: K and the features'
       N, H, W.

    Left to the deployment, as in mmdet's own ``predict``: proposal
    generation from graph 1 (anchors, delta decoding, NMS, top-k) and box
    decoding plus per-class NMS after graph 2. A mask head, if the config
    has one, is not exported.

    Without CHECKPOINT the model keeps its constructor initialisation (no
    pretrained download). A CHECKPOINT is read through the project's safe
    loader (:mod:`dlu_mm.engine.checkpoint`): weights-only files load
    directly; a file that needs full unpickling is refused unless it was
    written by this project's tools (``.sha256`` digest) or
    ``--trust-checkpoint`` is given.

Exporters (``--exporter``):

* ``torchscript`` (default): ``torch.onnx.export(..., dynamo=False,
  dynamic_axes=...)``; default opset 17, at least 16 (GridSample).
* ``dynamo``: ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)``
  over ``torch.export``; default and minimum opset 18 (the lowest that
  torch's ONNX translations target).

In both, the reassembly records its plain-PyTorch forward instead of the
autograd Function (:func:`dlu_mm.ops.reassemble`), mmdet's FPN_CARAFE
"add, cropping when sizes differ" becomes an unconditional crop (same
numbers; the branch would otherwise be frozen at the export size), and the
RoI extractor becomes the ``RoiAlign``/``Where`` form above.

After the export the tool asserts that every node is in the default ONNX
domain and lists the op types, runs onnxruntime (CPU) and PyTorch on the
same inputs, prints the max abs error per output, and exits with status 1
when an error exceeds ``--atol + --rtol * max|reference|`` (status 2 for
bad arguments). Graphs are written as single files (weights inside, so
below ONNX's 2 GB limit; Faster R-CNN R50 is about 130 MB + 57 MB).
"""
import argparse
import contextlib
import inspect
import os
import os.path as osp
import sys
import types
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = {'torchscript': 17, 'dynamo': 18}
MIN_OPSET = {'torchscript': 16, 'dynamo': 18}
LAYER_TYPES = ('dlu', 'carafe_portable')
STANDARD_DOMAINS = ('', 'ai.onnx')
# Export warnings that say nothing about this graph: the choice of the
# TorchScript exporter (deliberate), and a constant-folding skip.
BENIGN_WARNINGS = ('legacy TorchScript-based ONNX export',
                   'Only steps=1 can be constant folded')


# --------------------------------------------------------------------------
# Generic export / check helpers
# --------------------------------------------------------------------------
def check_exporter_opset(exporter: str, opset: Optional[int]) -> int:
    """The opset to use; ``ValueError`` naming the argument when invalid."""
    if exporter not in EXPORTERS:
        raise ValueError(f'--exporter must be one of {EXPORTERS}, got '
                         f'{exporter!r}')
    if opset is None:
        return DEFAULT_OPSET[exporter]
    if opset < MIN_OPSET[exporter]:
        why = ('GridSample needs opset >= 16' if exporter == 'torchscript'
               else "torch's dynamo ONNX translations target opset >= 18")
        raise ValueError(f'--opset {opset} is too low for --exporter '
                         f'{exporter}: {why} (accepted: >= '
                         f'{MIN_OPSET[exporter]})')
    return opset


def _dynamo_shapes(module: nn.Module, input_names: Sequence[str],
                   dynamic_axes: Dict[str, Dict[int, str]]) -> tuple:
    """``dynamic_axes`` (TorchScript style, per input name) as
    ``torch.export`` ``dynamic_shapes``: one entry per positional input,
    all of them in one tuple for a ``forward(self, *inputs)``."""
    shapes = tuple({axis: torch.export.Dim.DYNAMIC
                    for axis in dynamic_axes.get(name, {})}
                   for name in input_names)
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return (shapes, )
    return shapes


def export_graph(module: nn.Module,
                 inputs: Tuple[Tensor, ...],
                 out: str,
                 input_names: Sequence[str],
                 output_names: Sequence[str],
                 dynamic_axes: Dict[str, Dict[int, str]],
                 exporter: str = 'torchscript',
                 opset: Optional[int] = None,
                 custom_translation_table=None) -> int:
    """Export ``module(*inputs)`` to ``out`` (one self-contained file).

    ``dynamic_axes`` maps input and output names to ``{axis: label}``; the
    TorchScript exporter takes it as is, the dynamo one gets the inputs'
    axes as ``Dim.DYNAMIC`` (outputs follow). Returns the opset used.
    """
    opset = check_exporter_opset(exporter, opset)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    module.eval()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', torch.jit.TracerWarning)
        if exporter == 'torchscript':
            torch.onnx.export(
                module, inputs, out, dynamo=False, opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names), dynamic_axes=dynamic_axes)
        else:
            torch.onnx.export(
                module, inputs, out, dynamo=True, opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=_dynamo_shapes(module, input_names,
                                              dynamic_axes),
                custom_translation_table=custom_translation_table,
                external_data=False)
    _summarise_tracer_warnings(caught)
    return opset


def _summarise_tracer_warnings(caught) -> None:
    """One line per source location instead of a wall of TracerWarnings:
    they come from argument checks on shapes (constants at trace time); the
    check at a second input size is what proves the graph generalises."""
    sites = {}
    for w in caught:
        if any(text in str(w.message) for text in BENIGN_WARNINGS):
            continue
        if issubclass(w.category, torch.jit.TracerWarning):
            key = f'{osp.relpath(w.filename)}:{w.lineno}'
            sites[key] = sites.get(key, 0) + 1
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if sites:
        print(f'TracerWarnings (shape checks traced as constants) at: '
              f'{", ".join(sorted(sites))}')


def _graph_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _graph_nodes(attr.g)
            for sub in attr.graphs:
                yield from _graph_nodes(sub)


def onnx_op_types(path: str) -> List[str]:
    """Sorted op types of the graph at ``path``; ``RuntimeError`` if any
    node (subgraphs and local functions included) is outside the default
    ONNX domain, or the model fails ``onnx.checker``."""
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model)
    nodes = list(_graph_nodes(model.graph))
    for function in model.functions:
        nodes.extend(function.node)
    custom = sorted({f'{n.domain}::{n.op_type}' for n in nodes
                     if n.domain not in STANDARD_DOMAINS})
    local = sorted({f.name for f in model.functions})
    if custom or local:
        raise RuntimeError(f'{path} is not standard ONNX: custom-domain ops '
                           f'{custom}, local functions {local}')
    return sorted({n.op_type for n in nodes})


def onnx_opset(path: str) -> int:
    import onnx
    model = onnx.load(path, load_external_data=False)
    return max(o.version for o in model.opset_import
               if o.domain in STANDARD_DOMAINS)


def ort_session(path: str):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def run_ort(session, inputs: Dict[str, Tensor]) -> List[np.ndarray]:
    return session.run(None, {k: v.detach().cpu().numpy()
                              for k, v in inputs.items()})


def max_abs_errors(names: Sequence[str], got: Sequence[np.ndarray],
                   expected: Sequence[Tensor]) -> Dict[str, Tuple[float,
                                                                   float]]:
    """``{name: (max |got - expected|, max |expected|)}``; a shape mismatch
    raises ``AssertionError`` naming the output."""
    errors = {}
    for name, a, b in zip(names, got, expected):
        b = b.detach().cpu().numpy()
        if a.shape != b.shape:
            raise AssertionError(f'output {name}: onnxruntime shape '
                                 f'{a.shape} != PyTorch shape {b.shape}')
        errors[name] = (float(np.abs(a - b).max()) if a.size else 0.0,
                        float(np.abs(b).max()) if b.size else 0.0)
    return errors


def report_errors(title: str, errors: Dict[str, Tuple[float, float]],
                  atol: float, rtol: float) -> bool:
    """Print the per-output errors; True when all are within tolerance."""
    ok = True
    print(f'{title}: max abs error per output (onnxruntime vs PyTorch)')
    for name, (err, scale) in errors.items():
        bound = atol + rtol * scale
        flag = 'ok' if err <= bound else f'FAIL (> {bound:.3g})'
        ok &= err <= bound
        print(f'  {name:<14s} {err:.3e}  (max |ref| {scale:.3g})  {flag}')
    return ok


def _shape_arg(values: Sequence[int], name: str) -> None:
    if len(values) != 4 or any(v < 1 for v in values):
        raise ValueError(f'{name} must be 4 positive ints (N C H W), got '
                         f'{list(values)}')


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------
def build_layer(layer_type: str, channels: int, scale: int,
                init: str = 'random', seed: int = 0,
                **layer_args) -> nn.Module:
    """A ``dlu`` / ``carafe_portable`` layer in eval mode; with
    ``init='random'`` every parameter gets N(0, 0.1^2) noise added."""
    import dlu_mm  # noqa: F401  (registers the layers)
    from mmengine.registry import MODELS
    if layer_type not in LAYER_TYPES:
        raise ValueError(f'--type must be one of {LAYER_TYPES}, got '
                         f'{layer_type!r}')
    if init not in ('random', 'default'):
        raise ValueError(f"--init must be 'random' or 'default', got "
                         f'{init!r}')
    torch.manual_seed(seed)
    layer = MODELS.build(dict(type=layer_type, channels=channels,
                              scale_factor=scale, **layer_args))
    if init == 'random':
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return layer.eval()


LAYER_DYNAMIC_AXES = {
    'x': {0: 'batch', 2: 'height', 3: 'width'},
    'y': {0: 'batch', 2: 'out_height', 3: 'out_width'},
}


def export_layer(layer: nn.Module, shape: Sequence[int], out: str,
                 exporter: str = 'torchscript', opset: Optional[int] = None,
                 check_shapes: Sequence[Sequence[int]] = (), seed: int = 0,
                 atol: float = 1e-4, rtol: float = 0.0) -> dict:
    """Export ``layer`` at input ``shape`` and check it at that shape and at
    each of ``check_shapes``. Returns ``{'opset', 'ops', 'errors': {shape:
    {name: (err, scale)}}, 'ok'}``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator)
    opset = export_graph(layer, (x, ), out, ['x'], ['y'], LAYER_DYNAMIC_AXES,
                         exporter, opset)
    result = dict(opset=onnx_opset(out), ops=onnx_op_types(out), errors={},
                  ok=True)
    print(f'exported {out} ({exporter}, opset {result["opset"]})')
    print(f'ops (default domain only): {", ".join(result["ops"])}')
    session = ort_session(out)
    for check_shape in [tuple(shape), *map(tuple, check_shapes)]:
        x = torch.randn(*check_shape, generator=generator)
        with torch.no_grad():
            ref = layer(x)
        errors = max_abs_errors(['y'], run_ort(session, {'x': x}), [ref])
        result['errors'][check_shape] = errors
        result['ok'] &= report_errors(f'input {check_shape}', errors, atol,
                                      rtol)
    return result


# --------------------------------------------------------------------------
# Two-stage detectors
# --------------------------------------------------------------------------
def _roi_align_impl(features: Tensor, boxes: Tensor, batch_indices: Tensor,
                    output_height: int, output_width: int,
                    spatial_scale: float, sampling_ratio: int,
                    aligned: bool) -> Tensor:
    """mmcv's average RoIAlign: boxes (K, 4) x1 y1 x2 y2 in image pixels,
    batch_indices (K,) int64 -> (K, C, output_height, output_width)."""
    from mmcv.ops import roi_align
    rois = torch.cat([batch_indices.to(boxes.dtype)[:, None], boxes], dim=1)
    return roi_align(features, rois, (output_height, output_width),
                     spatial_scale, sampling_ratio, 'avg', aligned)


def _roi_align_fake(features, boxes, batch_indices, output_height,
                    output_width, spatial_scale, sampling_ratio, aligned):
    return features.new_empty(boxes.shape[0], features.shape[1],
                              output_height, output_width)


def _define_roi_align_op():
    """``torch.ops.dlu_mm_export.roi_align``: mmcv's RoIAlign as one op that
    both exporters translate to the standard ONNX ``RoiAlign`` (defined
    once per process, however often this file is loaded)."""
    if not hasattr(torch.ops.dlu_mm_export, 'roi_align'):
        op = torch.library.custom_op('dlu_mm_export::roi_align',
                                     _roi_align_impl, mutates_args=())
        op.register_fake(_roi_align_fake)
    return torch.ops.dlu_mm_export.roi_align


def _roi_align_symbolic(g, features, boxes, batch_indices, output_height,
                        output_width, spatial_scale, sampling_ratio,
                        aligned):
    """TorchScript exporter: ``dlu_mm_export::roi_align`` -> ``RoiAlign``."""
    from torch.onnx import symbolic_helper as sh
    attrs = [sh._parse_arg(v, kind) for v, kind in [
        (output_height, 'i'), (output_width, 'i'), (spatial_scale, 'f'),
        (sampling_ratio, 'i'), (aligned, 'b')]]
    return g.op('RoiAlign', features, boxes, batch_indices,
                output_height_i=attrs[0], output_width_i=attrs[1],
                spatial_scale_f=attrs[2], sampling_ratio_i=attrs[3],
                mode_s='avg', coordinate_transformation_mode_s='half_pixel'
                if attrs[4] else 'output_half_pixel')


def _roi_align_onnxscript(features, boxes, batch_indices,
                          output_height: int, output_width: int,
                          spatial_scale: float, sampling_ratio: int,
                          aligned: bool):
    """Dynamo exporter: ``dlu_mm_export::roi_align`` -> ``RoiAlign``."""
    from onnxscript import opset18 as op
    return op.RoiAlign(
        features, boxes, batch_indices, output_height=output_height,
        output_width=output_width, spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio, mode='avg',
        coordinate_transformation_mode='half_pixel' if aligned
        else 'output_half_pixel')


for _opset in range(MIN_OPSET['torchscript'], 21):
    torch.onnx.register_custom_op_symbolic('dlu_mm_export::roi_align',
                                           _roi_align_symbolic, _opset)
roi_align_op = _define_roi_align_op()
ROI_ALIGN_TRANSLATION = {roi_align_op.default: _roi_align_onnxscript}


def _add_cropped(self, a: Tensor, b: Tensor) -> Tensor:
    """FPN_CARAFE.tensor_add without the size test: ``b`` cropped to ``a``
    (a no-op crop when they agree), so one graph serves every size."""
    return a + b[:, :, :a.size(2), :a.size(3)]


@contextlib.contextmanager
def deploy_rewrites(model: nn.Module):
    """Export-time rewrites of mmdet code whose Python branches on tensor
    sizes would be frozen at the export size (what mmdeploy's rewriters
    do); numerically identical, undone on exit."""
    from mmdet.models.necks import FPN_CARAFE
    patched = [m for m in model.modules() if isinstance(m, FPN_CARAFE)]
    for m in patched:
        m.tensor_add = types.MethodType(_add_cropped, m)
    try:
        yield
    finally:
        for m in patched:
            del m.tensor_add


class DetectorRawOutputs(nn.Module):
    """Graph 1: image (N, 3, H, W) -> neck levels, then the RPN head's
    objectness (N, A, H_l, W_l) and box deltas (N, 4A, H_l, W_l) per level.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        feats = self.detector.extract_feat(image)
        cls_scores, bbox_preds = self.detector.rpn_head(feats)
        return (*feats, *cls_scores, *bbox_preds)


class RoIBoxHead(nn.Module):
    """Graph 2: R neck levels and rois (K, 5) -> cls_score
    (K, num_classes + 1), bbox_pred (K, 4 * num_classes).

    mmdet's ``SingleRoIExtractor`` with its data-dependent gather replaced
    by RoIAlign of every RoI on every level and a per-level ``where`` on
    ``map_roi_levels``; then the optional shared head and the box head.
    """

    def __init__(self, roi_head: nn.Module):
        super().__init__()
        from mmcv.ops import RoIAlign
        self.roi_head = roi_head
        extractor = roi_head.bbox_roi_extractor
        for layer in extractor.roi_layers:
            if not isinstance(layer, RoIAlign) or layer.pool_mode != 'avg' \
                    or layer.use_torchvision:
                raise ValueError(
                    f'bbox_roi_extractor.roi_layer must be mmcv RoIAlign '
                    f"with pool_mode='avg' for the ONNX export, got {layer}")
        self.num_levels = extractor.num_inputs

    def extract(self, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        extractor = self.roi_head.bbox_roi_extractor
        rois = rois.type_as(feats[0])
        boxes = rois[:, 1:5]
        batch_indices = rois[:, 0].to(torch.int64)
        levels = extractor.map_roi_levels(rois, len(feats))
        roi_feats = None
        for i, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
            level_feats = roi_align_op(
                feat, boxes, batch_indices, int(layer.output_size[0]),
                int(layer.output_size[1]), float(layer.spatial_scale),
                int(layer.sampling_ratio), bool(layer.aligned))
            if roi_feats is None:
                roi_feats = level_feats
            else:
                roi_feats = torch.where((levels == i)[:, None, None, None],
                                        level_feats, roi_feats)
        return roi_feats

    def forward(self, *feats_and_rois: Tensor) -> Tuple[Tensor, Tensor]:
        *feats, rois = feats_and_rois
        bbox_feats = self.extract(feats, rois)
        if self.roi_head.with_shared_head:
            bbox_feats = self.roi_head.shared_head(bbox_feats)
        return self.roi_head.bbox_head(bbox_feats)


def roi_graph_path(out: str) -> str:
    stem, ext = osp.splitext(out)
    return f'{stem}_roi{ext or ".onnx"}'


def build_detector(config: str, checkpoint: Optional[str] = None,
                   cfg_options: Optional[dict] = None,
                   trust_checkpoint: bool = False) -> nn.Module:
    """The config's two-stage detector in eval mode on the CPU, with
    ``checkpoint`` loaded through the project's safe loader."""
    import dlu_mm  # noqa: F401  (registers DLU and FPN_Upsample)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from dlu_mm.engine import install_checkpoint_loader
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = MODELS.build(cfg.model)
    missing = [name for name in ('rpn_head', 'roi_head')
               if getattr(model, name, None) is None]
    if missing or not hasattr(model.roi_head, 'bbox_roi_extractor'):
        raise ValueError(f'CONFIG {config} must describe a two-stage '
                         f'detector with an RPN and a bbox RoI head '
                         f'(e.g. Faster R-CNN); {type(model).__name__} lacks '
                         f'{missing or ["roi_head.bbox_roi_extractor"]}')
    if checkpoint is not None:
        install_checkpoint_loader(trust_all=trust_checkpoint)
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval()


def make_check_rois(num_images: int, height: int, width: int, num: int,
                    generator: torch.Generator) -> Tensor:
    """``num`` RoIs (K, 5) = (batch_index, x1, y1, x2, y2): scales
    sqrt(w h) log-spaced over [8, 1024] pixels (so every level of mmdet's
    ``map_roi_levels``, boundaries 112 / 224 / 448, gets some), aspect
    ratios in [1/2, 2], centres inside the image."""
    scales = torch.logspace(float(np.log10(8)), float(np.log10(1024)), num)
    scales = scales[torch.randperm(num, generator=generator)]
    ratios = torch.exp(torch.empty(num).uniform_(
        -float(np.log(2)), float(np.log(2)), generator=generator))
    sides = torch.stack([scales * ratios.sqrt(), scales / ratios.sqrt()], 1)
    centres = torch.rand(num, 2, generator=generator) * torch.tensor(
        [width, height], dtype=torch.float32)
    batch = torch.randint(0, num_images, (num, 1), generator=generator)
    return torch.cat([batch.float(), centres - sides / 2,
                      centres + sides / 2], dim=1)


def export_detector(model: nn.Module, shape: Sequence[int], out: str,
                    exporter: str = 'torchscript',
                    opset: Optional[int] = None,
                    check_shapes: Sequence[Sequence[int]] = (),
                    num_rois: int = 32, seed: int = 0, atol: float = 1e-4,
                    rtol: float = 1e-4) -> dict:
    """Export graph 1 to ``out`` and graph 2 to :func:`roi_graph_path`, then
    check both at ``shape`` and each of ``check_shapes``: graph 1 against
    ``extract_feat`` + ``rpn_head``, graph 2 (fed graph 1's onnxruntime
    features and generated RoIs) against ``roi_head._bbox_forward``.
    Returns ``{'opset', 'ops', 'roi_ops', 'errors': {shape: {name: (err,
    scale)}}, 'ok'}``."""
    if num_rois < 2:
        raise ValueError(f'--num-rois must be >= 2, got {num_rois}')
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(*shape, generator=generator)
    raw = DetectorRawOutputs(model).eval()
    roi = RoIBoxHead(model.roi_head).eval()
    with torch.no_grad():
        outs = raw(image)
    num_levels = len(outs) // 3
    feat_names = [f'neck_{i}' for i in range(num_levels)]
    out_names = feat_names + [f'rpn_cls_{i}' for i in range(num_levels)] + \
        [f'rpn_bbox_{i}' for i in range(num_levels)]
    axes = {'image': {0: 'batch', 2: 'height', 3: 'width'}}
    for name in out_names:
        axes[name] = {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    roi_out = roi_graph_path(out)
    roi_inputs = feat_names[:roi.num_levels]
    roi_axes = {name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
                for name in roi_inputs}
    roi_axes.update(rois={0: 'num_rois'}, cls_score={0: 'num_rois'},
                    bbox_pred={0: 'num_rois'})
    rois = make_check_rois(shape[0], shape[2], shape[3], num_rois, generator)

    with deploy_rewrites(model):
        export_graph(raw, (image, ), out, ['image'], out_names, axes,
                     exporter, opset)
        export_graph(roi, (*outs[:roi.num_levels], rois), roi_out,
                     roi_inputs + ['rois'], ['cls_score', 'bbox_pred'],
                     roi_axes, exporter, opset,
                     custom_translation_table=ROI_ALIGN_TRANSLATION)
    result = dict(opset=onnx_opset(out), ops=onnx_op_types(out),
                  roi_ops=onnx_op_types(roi_out), errors={}, ok=True)
    print(f'exported {out} and {roi_out} ({exporter}, opset '
          f'{result["opset"]})')
    print(f'{osp.basename(out)} ops (default domain only): '
          f'{", ".join(result["ops"])}')
    print(f'{osp.basename(roi_out)} ops (default domain only): '
          f'{", ".join(result["roi_ops"])}')

    session, roi_session = ort_session(out), ort_session(roi_out)
    extractor = model.roi_head.bbox_roi_extractor
    for check_shape in [tuple(shape), *map(tuple, check_shapes)]:
        image = torch.randn(*check_shape, generator=generator)
        rois = make_check_rois(check_shape[0], check_shape[2],
                               check_shape[3], num_rois, generator)
        with torch.no_grad():
            ref = raw(image)
            ref_roi = model.roi_head._bbox_forward(ref, rois)
            levels = extractor.map_roi_levels(rois, roi.num_levels)
        got = run_ort(session, {'image': image})
        errors = max_abs_errors(out_names, got, ref)
        feed = {name: torch.from_numpy(a)
                for name, a in zip(roi_inputs, got)}
        feed['rois'] = rois
        errors.update(max_abs_errors(
            ['cls_score', 'bbox_pred'], run_ort(roi_session, feed),
            [ref_roi['cls_score'], ref_roi['bbox_pred']]))
        result['errors'][check_shape] = errors
        counts = torch.bincount(levels, minlength=roi.num_levels).tolist()
        result['ok'] &= report_errors(
            f'image {check_shape}, {num_rois} RoIs per level {counts}',
            errors, atol, rtol)
    return result


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Export DLU / portable CARAFE layers or a two-stage '
        'detector to ONNX (standard ops) and check it with onnxruntime')
    sub = parser.add_subparsers(dest='what', required=True)

    def common(p, default_atol, default_rtol):
        p.add_argument('--shape', type=int, nargs=4, required=True,
                       metavar=('N', 'C', 'H', 'W'),
                       help='input shape to export with')
        p.add_argument('--check-shape', type=int, nargs=4, action='append',
                       default=[], metavar=('N', 'C', 'H', 'W'),
                       help='another input shape to check the exported '
                       'graph at (repeatable); e.g. odd H and W')
        p.add_argument('--out', required=True, help='output .onnx file')
        p.add_argument('--exporter', choices=EXPORTERS,
                       default='torchscript',
                       help='torch.onnx.export(dynamo=False) or '
                       '(dynamo=True)')
        p.add_argument('--opset', type=int, default=None,
                       help='ONNX opset (default: 17 torchscript, 18 '
                       'dynamo)')
        p.add_argument('--atol', type=float, default=default_atol,
                       help='max abs error allowed (plus rtol * max|ref|)')
        p.add_argument('--rtol', type=float, default=default_rtol)
        p.add_argument('--seed', type=int, default=0,
                       help='seed of the check inputs (and --init random)')

    layer = sub.add_parser('layer', help='one upsample layer')
    layer.add_argument('--type', choices=LAYER_TYPES, required=True)
    layer.add_argument('--channels', type=int, required=True, help='C')
    layer.add_argument('--scale', type=int, default=2, help='s')
    layer.add_argument('--up-kernel', type=int, default=5, help='k_up')
    layer.add_argument('--up-group', type=int, default=1, help='G')
    layer.add_argument('--encoder-kernel', type=int, default=3, help='k_enc')
    layer.add_argument('--encoder-dilation', type=int, default=1)
    layer.add_argument('--compressed-channels', type=int, default=64,
                       help='C_m')
    layer.add_argument('--init', choices=('random', 'default'),
                       default='random',
                       help='random: add N(0, 0.1^2) to every weight so '
                       'the check exercises offsets and kernels')
    common(layer, 1e-4, 0.0)

    model = sub.add_parser('model', help='a two-stage detector (two graphs)')
    model.add_argument('config')
    model.add_argument('checkpoint', nargs='?', default=None)
    model.add_argument('--trust-checkpoint', action='store_true',
                       help='allow full unpickling of a checkpoint that '
                       'fails the weights-only check and was not written '
                       "by this project's tools")
    model.add_argument('--cfg-options', nargs='+', action=DictAction,
                       help='override config settings, key=value')
    model.add_argument('--num-rois', type=int, default=32,
                       help='RoIs fed to the RoI-head graph in the check')
    common(model, 1e-4, 1e-4)
    return parser.parse_args(argv)


def validate_args(args) -> None:
    """``ValueError`` naming the flag for inconsistent arguments."""
    check_exporter_opset(args.exporter, args.opset)
    shapes = [('--shape', args.shape)] + [('--check-shape', s)
                                          for s in args.check_shape]
    for name, s in shapes:
        _shape_arg(s, name)
        if args.what == 'layer' and s[1] != args.channels:
            raise ValueError(f'{name} {list(s)} has C={s[1]}, but '
                             f'--channels is {args.channels}')
        if args.what == 'model' and s[1] != 3:
            raise ValueError(f'{name} {list(s)} must have C=3 (the '
                             f'preprocessed image), got C={s[1]}')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        validate_args(args)
    except ValueError as err:
        print(f'export_onnx.py: error: {err}', file=sys.stderr)
        return 2
    shape, checks = tuple(args.shape), [tuple(s) for s in args.check_shape]
    if args.what == 'layer':
        module = build_layer(
            args.type, args.channels, args.scale, init=args.init,
            seed=args.seed, up_kernel=args.up_kernel,
            up_group=args.up_group, encoder_kernel=args.encoder_kernel,
            encoder_dilation=args.encoder_dilation,
            compressed_channels=args.compressed_channels)
        result = export_layer(module, shape, args.out, args.exporter,
                              args.opset, checks, args.seed, args.atol,
                              args.rtol)
    else:
        model = build_detector(args.config, args.checkpoint,
                               args.cfg_options, args.trust_checkpoint)
        divisor = getattr(model.data_preprocessor, 'pad_size_divisor', 1)
        for s in (shape, *checks):
            if s[2] % divisor or s[3] % divisor:
                print(f'note: {list(s)}: the data preprocessor pads H and W '
                      f'to multiples of {divisor}; other sizes are exported '
                      f'and checked all the same')
        result = export_detector(model, shape, args.out, args.exporter,
                                 args.opset, checks, args.num_rois,
                                 args.seed, args.atol, args.rtol)
    print('PASS' if result['ok'] else 'FAIL: errors above tolerance')
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
