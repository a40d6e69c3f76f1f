"""Bridges between mmdeploy 1.3.1 (its last release, December 2023) and
torch >= 2.9: each class or rewriter below names the upstream change that
broke mmdeploy and what it does instead. All are registered with mmdeploy's
own rewriter registries, so they are active only inside mmdeploy's
``RewriterContext`` (its ``torch2onnx`` / ``tools/deploy.py``) and undone on
exit, like mmdeploy's own rewriters.

1. ``torch.onnx.export`` defaults to the torch.export-based ("dynamo")
   exporter since torch 2.9. mmdeploy passes no ``dynamo=`` and relies on
   the TorchScript-based exporter (its symbolic rewriters, ``dynamic_axes``
   and custom-op symbolics exist only there): every export fails in
   ``torch.export`` with a ``dynamic_shapes`` mismatch. The rewriter of
   ``torch.onnx.export`` passes ``dynamo=False`` unless the caller chose.
2. torch 2.13's ``torch.onnx.symbolic_opset9`` (now a compatibility
   module over ``torch.onnx._internal.torchscript_exporter``) no longer has
   ``_cast_Long``, which mmdeploy's RoIAlign symbolic for ONNX Runtime
   (``mmdeploy/mmcv/ops/roi_align.py``, reached from every two-stage
   detector's ``SingleRoIExtractor``) imports: the export stops with an
   ``ImportError``. :func:`roi_align__onnx` emits the same standard ONNX
   ``RoiAlign`` with a plain ``Cast``.
3. ``torch.fx``'s registry of ``fx.wrap``-ed functions
   (``torch.fx._symbolic_trace._wrapped_fns_to_patch``) became a dict keyed
   by ``(id(globals), name)``; mmdeploy's ``FunctionRewriter`` still treats
   it as a list of ``(globals, name)`` pairs and calls ``pop(-1)`` on exit
   when it grew, which raises ``KeyError: -1`` and hides whatever exception
   the export raised. :class:`FxWrapRegistryAsList` gives mmdeploy the list
   view it expects, backed by torch's dict.
"""
import inspect
import sys

import torch
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.core.rewriters import function_rewriter as _function_rewriter
from mmdeploy.core.rewriters.rewriter_utils import Checker

# Backends for which mmdeploy emits its own custom ops on purpose (TensorRT
# and PPLNN ship kernels for them); the standard-ONNX rewrites here leave
# those backends to mmdeploy.
OWN_KERNEL_BACKENDS = ('tensorrt', 'pplnn')


class ApplyWhen(Checker):
    """An mmdeploy rewriter checker: the rewrite applies unless the backend
    is one of ``skip_backends``, and only once every module in
    ``loaded_modules`` is imported (the rewritten code is then in use, and
    nothing is imported just to patch it).

    A rewriter with a checker takes precedence over mmdeploy's default one
    for the same function (mmdeploy's ``RewriterRegistry.get_records``)."""

    def __init__(self, skip_backends=OWN_KERNEL_BACKENDS, loaded_modules=()):
        super().__init__()
        self.skip_backends = tuple(skip_backends)
        self.loaded_modules = tuple(loaded_modules)

    def check(self, env) -> bool:
        backend = getattr(env.get('backend'), 'value', env.get('backend'))
        return backend not in self.skip_backends and all(
            name in sys.modules for name in self.loaded_modules)


# 1. torch >= 2.9: dynamo exporter by default ------------------------------
# (read before any rewriting: inside the context the name is the rewriter)
_EXPORT_TAKES_DYNAMO = 'dynamo' in inspect.signature(
    torch.onnx.export).parameters


@FUNCTION_REWRITER.register_rewriter(
    'torch.onnx.export', extra_checkers=ApplyWhen(skip_backends=()))
def onnx_export__torchscript(model, args, *more, **kwargs):
    """``torch.onnx.export`` with ``dynamo=False`` unless given: mmdeploy's
    symbolic rewriters and ``dynamic_axes`` belong to the TorchScript-based
    exporter, which torch < 2.9 used by default."""
    ctx = FUNCTION_REWRITER.get_context()
    if _EXPORT_TAKES_DYNAMO:
        kwargs.setdefault('dynamo', False)
    return ctx.origin_func(model, args, *more, **kwargs)


# 2. torch 2.13: no symbolic_opset9._cast_Long ------------------------------
def _const(g, values):
    return g.op('Constant', value_t=torch.tensor(values, dtype=torch.long))


@SYMBOLIC_REWRITER.register_symbolic('mmcv.ops.roi_align.__self__',
                                     extra_checkers=ApplyWhen())
def roi_align__onnx(g, input, rois, output_size, spatial_scale,
                    sampling_ratio, pool_mode, aligned):
    """mmcv's ``RoIAlignFunction`` as the standard ONNX ``RoiAlign``.

    ``rois`` (K, 5) = (batch_index, x1, y1, x2, y2) are split into the
    (K,) int64 batch indices and (K, 4) boxes ONNX takes. From opset 16,
    ``aligned=True`` is ``coordinate_transformation_mode='half_pixel'``
    (``output_half_pixel`` otherwise); below 16 the boxes are shifted by
    -0.5 / spatial_scale instead, as mmdeploy does."""
    from torch.onnx import TensorProtoDataType
    batch_indices = g.op(
        'Cast', g.op('Gather', rois, _const(g, 0), axis_i=1),
        to_i=TensorProtoDataType.INT64)
    boxes = g.op('Gather', rois, _const(g, [1, 2, 3, 4]), axis_i=1)
    attrs = dict(output_height_i=output_size[0],
                 output_width_i=output_size[1],
                 spatial_scale_f=spatial_scale,
                 sampling_ratio_i=sampling_ratio, mode_s=pool_mode)
    if g.opset >= 16:
        attrs['coordinate_transformation_mode_s'] = (
            'half_pixel' if aligned else 'output_half_pixel')
    elif aligned:
        boxes = g.op('Add', boxes, g.op('Constant', value_t=torch.tensor(
            [-0.5 / spatial_scale], dtype=torch.float)))
    return g.op('RoiAlign', input, boxes, batch_indices, **attrs)


# 3. torch.fx's wrap registry is a dict ------------------------------------
class FxWrapRegistryAsList:
    """The list of ``(globals, name)`` pairs mmdeploy 1.3.1 expects, over
    torch's dict ``{(id(globals), name): globals}`` (insertion-ordered, so
    ``pop(-1)`` removes the latest entry as it did on the list)."""

    def __init__(self, registry: dict):
        self.registry = registry

    def __len__(self):
        return len(self.registry)

    def __iter__(self):
        return iter([(globals_, name)
                     for (_, name), globals_ in self.registry.items()])

    def append(self, item):
        globals_, name = item
        self.registry[(id(globals_), name)] = globals_

    def pop(self, index=-1):
        return self.registry.pop(list(self.registry)[index])


if isinstance(_function_rewriter._wrapped_fns_to_patch, dict):
    _function_rewriter._wrapped_fns_to_patch = FxWrapRegistryAsList(
        _function_rewriter._wrapped_fns_to_patch)
