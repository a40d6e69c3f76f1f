"""Export DLU models to ONNX with standard operators only, and check each
graph with ONNX Runtime against PyTorch (max abs error per output, at the
export size and at other sizes, which proves the dynamic axes).

Whole models (detectors, instance segmentation, segmentors) go through
mmdeploy, the OpenMMLab deployment tool: its ``torch2onnx`` with this
package's rewriters (:mod:`dlu_mm.deploy`, loaded by the deploy config)::

    python tools/deployment/export_onnx.py model CONFIG [CHECKPOINT] \\
        --deploy-cfg configs/deploy/detection_onnxruntime_dynamic.py \\
        --work-dir work_dirs/export/frcnn [--img IMAGE] \\
        [--check-shape 1 3 200 232 ...] [--trust-checkpoint] \\
        [--cfg-options k=v ...] [--atol 1e-5 --rtol 1e-6] [--seed 0]

    writes ``WORK_DIR/end2end.onnx`` (the deploy config's ``save_file``),
    as mmdeploy's ``tools/deploy.py`` does: detectors as one graph with
    NMS, ``input`` (N, 3, H, W) -> ``dets`` (N, K, 5), ``labels`` (N, K)
    [, ``masks`` (N, K, 28, 28)]; segmentors ``input`` -> ``output``
    logits (N, classes, H, W). N, H and W are dynamic. The export input is
    IMAGE (default: a random 256x256 image) through the model's test
    pipeline and data preprocessor; the graph is then checked on random
    inputs at that preprocessed size and at each ``--check-shape`` (any
    H, W: the data preprocessor's padding is not applied there). See
    :mod:`dlu_mm.deploy.check` for what the PyTorch reference is.

    Without CHECKPOINT the model keeps its constructor initialisation (no
    pretrained download; saved to ``WORK_DIR/constructor_weights.pth``). A
    CHECKPOINT is read through the project's safe loader
    (:mod:`dlu_mm.engine.checkpoint`): weights-only files load directly;
    a file that needs full unpickling is refused unless
    ``--trust-checkpoint`` is given (or ``DLU_MM_TRUST_CHECKPOINTS=1``).

One layer (``dlu`` / ``carafe_portable``: the reassembly, DLU's kernel
sampling and CARAFE's content encoder as plain ONNX ops: Conv, Softmax,
DepthToSpace, GridSample, Pad, Slice, Mul, Add, ...), without mmdeploy::

    python tools/deployment/export_onnx.py layer --type dlu --channels 64 \\
        --scale 2 --shape 1 64 20 24 --check-shape 1 64 31 17 \\
        --out work_dirs/export/dlu.onnx [--opset 17] \\
        [--exporter torchscript|dynamo] [--up-kernel 5 --up-group 1 ...]

    input ``x`` (N, C, H, W) -> output ``y`` (N, C, sH, sW); N, H, W dynamic.
    ``--init random`` (default) adds N(0, 0.1^2) noise to the freshly
    initialised weights, so the check exercises non-zero offsets and
    non-uniform kernels (a new DLU has zero offsets); ``--init default``
    exports the layer as constructed.

    Exporters (``--exporter``, layers only; mmdeploy uses the TorchScript
    one):

    * ``torchscript`` (default): ``torch.onnx.export(..., dynamo=False,
      dynamic_axes=...)``; default opset 17, at least 16 (GridSample).
    * ``dynamo``: ``torch.onnx.export(..., dynamo=True,
      dynamic_shapes=...)`` over ``torch.export``; default and minimum
      opset 18 (the lowest that torch's ONNX translations target).

    In both, DLU's ops record their plain-PyTorch composition instead of
    the fused kernels (:func:`dlu_mm.ops.dlu_reassemble`).

After an export the tool asserts that every node is in the default ONNX
domain and lists the op types, runs ONNX Runtime (CPU, no custom-op
library) and PyTorch on the same inputs, prints the max abs error per
output, and exits with status 1 when an error exceeds ``--atol + --rtol *
max|reference|`` (status 2 for bad arguments).
"""
import argparse
import inspect
import os
import os.path as osp
import sys
import warnings
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from dlu_mm.onnx_check import (max_abs_errors, onnx_op_types, onnx_opset,
                               ort_session, report_errors, run_ort)

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = {'torchscript': 17, 'dynamo': 18}
MIN_OPSET = {'torchscript': 16, 'dynamo': 18}
LAYER_TYPES = ('dlu', 'carafe_portable')
# Max abs error allowed for a layer graph: LAYER_ATOL + LAYER_RTOL *
# max|reference| (float32; README quotes it, tests assert it).
LAYER_ATOL, LAYER_RTOL = 1e-5, 1e-5
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
                 opset: Optional[int] = None) -> int:
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
                 atol: float = LAYER_ATOL,
                 rtol: float = LAYER_RTOL) -> dict:
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
# Whole models, through mmdeploy
# --------------------------------------------------------------------------
def read_image(path: Optional[str]):
    """IMAGE as an (H, W, 3) uint8 BGR array, or None for the default."""
    if path is None:
        return None
    import mmcv
    if not osp.isfile(path):
        raise ValueError(f'--img {path}: no such file')
    image = mmcv.imread(path)
    if image is None:
        raise ValueError(f'--img {path}: not an image mmcv can read')
    return image


def export_model(args) -> bool:
    """The ``model`` command: export with mmdeploy, check, report."""
    from mmengine.config import Config

    from dlu_mm.deploy.check import export_and_check
    from dlu_mm.engine import install_checkpoint_loader
    install_checkpoint_loader(trust_all=args.trust_checkpoint)
    model_cfg = Config.fromfile(args.config)
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    result = export_and_check(
        model_cfg, args.deploy_cfg, args.work_dir, args.checkpoint,
        read_image(args.img), [tuple(s) for s in args.check_shape],
        args.seed)
    ops = result['ops']
    print(f'exported {result["onnx"]} (mmdeploy torch2onnx, opset '
          f'{onnx_opset(result["onnx"])}, input {result["export_shape"]})')
    print('ops (default domain only): ' + ', '.join(
        f'{name} x{count}' for name, count in sorted(ops.items())))
    ok = True
    for shape, errors in result['errors'].items():
        ok &= report_errors(f'input {shape}', errors, args.atol, args.rtol)
    return ok


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Export a DLU model (with mmdeploy) or one DLU / '
        'portable CARAFE layer to ONNX with standard ops, and check it with '
        'ONNX Runtime against PyTorch')
    sub = parser.add_subparsers(dest='what', required=True)

    def tolerance(p, atol, rtol):
        p.add_argument('--atol', type=float, default=atol,
                       help=f'max abs error allowed, plus rtol * max|ref| '
                       f'(default {atol:g})')
        p.add_argument('--rtol', type=float, default=rtol,
                       help=f'(default {rtol:g})')
        p.add_argument('--seed', type=int, default=0,
                       help='seed of the check inputs (and of --init random '
                       '/ the constructor weights)')

    model = sub.add_parser(
        'model', help='a whole detector / segmentor, with mmdeploy')
    model.add_argument('config', help='model config (mmdet / mmseg)')
    model.add_argument('checkpoint', nargs='?', default=None)
    model.add_argument('--deploy-cfg', required=True,
                       help='mmdeploy deploy config, e.g. configs/deploy/'
                       'detection_onnxruntime_dynamic.py')
    model.add_argument('--work-dir', required=True,
                       help='where mmdeploy writes the graph')
    model.add_argument('--img', default=None,
                       help='image to export with (default: a random '
                       '256x256 image)')
    model.add_argument('--check-shape', type=int, nargs=4, action='append',
                       default=[], metavar=('N', 'C', 'H', 'W'),
                       help='another preprocessed input shape to check the '
                       'graph at (repeatable), e.g. 1 3 200 232')
    model.add_argument('--trust-checkpoint', action='store_true',
                       help='allow full unpickling of a checkpoint that '
                       'fails the weights-only check')
    model.add_argument('--cfg-options', nargs='+', action=DictAction,
                       help='override model config settings, key=value')
    tolerance(model, 1e-5, 1e-6)

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
    layer.add_argument('--shape', type=int, nargs=4, required=True,
                       metavar=('N', 'C', 'H', 'W'),
                       help='input shape to export with')
    layer.add_argument('--check-shape', type=int, nargs=4, action='append',
                       default=[], metavar=('N', 'C', 'H', 'W'),
                       help='another input shape to check the exported '
                       'graph at (repeatable); e.g. odd H and W')
    layer.add_argument('--out', required=True, help='output .onnx file')
    layer.add_argument('--exporter', choices=EXPORTERS,
                       default='torchscript',
                       help='torch.onnx.export(dynamo=False) or '
                       '(dynamo=True)')
    layer.add_argument('--opset', type=int, default=None,
                       help='ONNX opset (default: 17 torchscript, 18 '
                       'dynamo)')
    tolerance(layer, LAYER_ATOL, LAYER_RTOL)
    return parser.parse_args(argv)


def validate_args(args) -> None:
    """``ValueError`` naming the flag for inconsistent arguments."""
    shapes = [('--check-shape', s) for s in args.check_shape]
    if args.what == 'layer':
        check_exporter_opset(args.exporter, args.opset)
        shapes.insert(0, ('--shape', args.shape))
    for name, s in shapes:
        _shape_arg(s, name)
        if args.what == 'layer' and s[1] != args.channels:
            raise ValueError(f'{name} {list(s)} has C={s[1]}, but '
                             f'--channels is {args.channels}')
        if args.what == 'model' and s[1] != 3:
            raise ValueError(f'{name} {list(s)} must have C=3 (the '
                             f'preprocessed image), got C={s[1]}')
    if args.what == 'model':
        for flag, path in (('CONFIG', args.config),
                           ('--deploy-cfg', args.deploy_cfg),
                           ('CHECKPOINT', args.checkpoint)):
            if path is not None and not osp.isfile(path):
                raise ValueError(f'{flag} {path}: no such file')
        read_image(args.img)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        validate_args(args)
    except ValueError as err:
        print(f'export_onnx.py: error: {err}', file=sys.stderr)
        return 2
    if args.what == 'layer':
        module = build_layer(
            args.type, args.channels, args.scale, init=args.init,
            seed=args.seed, up_kernel=args.up_kernel,
            up_group=args.up_group, encoder_kernel=args.encoder_kernel,
            encoder_dilation=args.encoder_dilation,
            compressed_channels=args.compressed_channels)
        ok = export_layer(module, tuple(args.shape), args.out, args.exporter,
                          args.opset, [tuple(s) for s in args.check_shape],
                          args.seed, args.atol, args.rtol)['ok']
    else:
        ok = export_model(args)
    print('PASS' if ok else 'FAIL: errors above tolerance')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
