"""Make ``mmengine.analysis``'s FLOP counter exact for DLU and CARAFE.

``mmengine.analysis.FlopAnalyzer`` (fvcore's counter) jit-traces a model and
counts MACs (one fused multiply-add = one "flop") for a fixed list of aten
ops: convolutions (weights x output positions; bias adds not counted),
matmuls, norms, interpolation (nearest 1, bilinear 4 per output value) and
``aten::grid_sampler`` (4 per output value, whatever the mode). It skips
everything else, including the two ops that make an upsampler dynamic:

* the reassembly. While a jit trace runs, :func:`dlu_mm.ops.reassemble`
  records its plain-PyTorch forward, which is k_up^2 ``aten::addcmul_``
  calls, each adding one window times its kernel weight into the
  (N, C, sH, sW) output: one MAC per output value per call, so
  N*C*sH*sW*k_up^2 in all, the formula's s^2*k_up^2*C per input pixel.
  Should the custom op itself be traced (``dlu_mm::reassemble``, called
  directly, or mmcv's ``CARAFEFunction`` on CUDA), :func:`reassemble_flop_jit`
  counts the same number, and :func:`dlu_reassemble_flop_jit` counts the
  fused ``dlu_mm::dlu_reassemble`` as the reassembly plus the kernel
  sampling (4 MACs per sampled kernel value).
* ``aten::grid_sampler``: mmengine's handle assumes bilinear; ours reads the
  mode (bilinear 4, nearest 1, bicubic 16 MACs per output value), so DLU's
  kernel sampling counts 4 per sampled kernel value,
  :func:`dlu_mm.complexity.kernel_sampling_macs`.

With these handles a DLU module counts exactly
``dlu_macs(spec, with_sampling=True) * N*H*W`` and a CARAFE module
``carafe_macs(spec) * N*H*W`` (tests/test_complexity.py). Softmax, pixel
shuffle, the offset-grid arithmetic, activations and residual adds stay
uncounted, as in the paper's tables.
"""
from contextlib import contextmanager
from math import prod
from typing import Any, Dict, List, Optional

import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis import complexity_analysis as _mm_complexity
from mmengine.analysis.jit_handles import get_shape

from .complexity import (UpsamplerSpec, carafe_macs, dlu_macs,
                         interpolation_macs)
from .layers import DLU

# aten::grid_sampler's interpolation_mode argument -> MACs per output value.
_GRID_SAMPLER_MACS = {0: 4, 1: 1, 2: 16}  # bilinear, nearest, bicubic


def _numel(value) -> int:
    shape = get_shape(value)
    if shape is None:
        raise ValueError(f'cannot count an op whose output shape the trace '
                         f'did not record: {value}')
    return prod(shape)


def addcmul_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::addcmul(_)``: out = self + value * t1 * t2, one MAC per
    output value."""
    return _numel(outputs[0])


def grid_sampler_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::grid_sampler(input, grid, mode, padding, align_corners)``:
    output (N, C, H_out, W_out); MACs per output value by mode."""
    mode = inputs[2].toIValue()
    if mode not in _GRID_SAMPLER_MACS:
        raise ValueError(f'unknown grid_sampler interpolation mode {mode!r}; '
                         f'known: {sorted(_GRID_SAMPLER_MACS)}')
    return _GRID_SAMPLER_MACS[mode] * _numel(outputs[0])


def _int_argument(inputs: List[Any], outputs: List[Any], index: int) -> int:
    """Argument ``index`` (after the tensors) of a traced op: a constant
    input of a custom op, a scalar argument of a ``prim::PythonOp``."""
    node = outputs[0].node()
    if node.kind() == 'prim::PythonOp':
        return node.scalar_args()[index]
    return inputs[2 + index].toIValue()


def reassemble_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """A traced reassembly, ``(features, masks, kernel_size, group_size,
    scale_factor, ...)``: output Y (N, C, sH, sW), k_up^2 MACs per output
    value."""
    kernel_size = _int_argument(inputs, outputs, 0)
    return _numel(outputs[0]) * kernel_size * kernel_size


def dlu_reassemble_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """A traced ``dlu_mm::dlu_reassemble(features, kernel_space, offsets,
    kernel_size, group_size, scale_factor, backend)``: the reassembly
    (k_up^2 per output value) plus the kernel sampling (4 per sampled
    kernel value, G*k_up^2 per output pixel)."""
    kernel_size = inputs[3].toIValue()
    groups = inputs[4].toIValue()
    n, c, oh, ow = get_shape(outputs[0])
    kk = kernel_size * kernel_size
    return n * oh * ow * kk * (c + 4 * groups)


FLOP_HANDLES = {
    'aten::addcmul': addcmul_flop_jit,
    'aten::addcmul_': addcmul_flop_jit,
    'aten::grid_sampler': grid_sampler_flop_jit,
    'dlu_mm::reassemble': reassemble_flop_jit,
    'dlu_mm::dlu_reassemble': dlu_reassemble_flop_jit,
    'prim::PythonOp.CARAFEFunction': reassemble_flop_jit,  # mmcv, CUDA
}


def flop_analyzer(model: nn.Module, inputs, warn_unsupported: bool = True
                  ) -> FlopAnalyzer:
    """``mmengine.analysis.FlopAnalyzer`` with :data:`FLOP_HANDLES` added.
    ``.total()`` is in MACs (FLOPs = 2 x MACs)."""
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**FLOP_HANDLES)
    return analyzer.unsupported_ops_warnings(warn_unsupported)


@contextmanager
def registered_flop_handles():
    """Within the block, every new ``FlopAnalyzer`` (also the one inside
    ``mmengine.analysis.get_model_complexity_info`` and so mmdet's / mmseg's
    ``tools/analysis_tools/get_flops.py``) has :data:`FLOP_HANDLES`."""
    table = _mm_complexity._DEFAULT_SUPPORTED_FLOP_OPS
    saved = {name: table[name] for name in FLOP_HANDLES if name in table}
    table.update(FLOP_HANDLES)
    try:
        yield
    finally:
        for name in FLOP_HANDLES:
            table.pop(name, None)
        table.update(saved)


def upsampler_spec(module: nn.Module) -> Optional[UpsamplerSpec]:
    """The :class:`UpsamplerSpec` of a CARAFE-style layer (DLU,
    CARAFEPortable, mmcv CARAFEPack: same attribute names), else None."""
    names = ('channels', 'scale_factor', 'up_kernel', 'up_group',
             'encoder_kernel', 'compressed_channels')
    if not all(isinstance(getattr(module, n, None), int) for n in names):
        return None
    return UpsamplerSpec(**{n: getattr(module, n) for n in names})


def upsampler_kind(module: nn.Module) -> Optional[str]:
    """'dlu', 'carafe' (portable or mmcv), 'nearest', 'bilinear', or None
    for a layer without a formula here."""
    if isinstance(module, DLU):
        return 'dlu'
    if upsampler_spec(module) is not None and hasattr(module,
                                                      'content_encoder'):
        return 'carafe'
    if isinstance(module, nn.Upsample) and module.mode in ('nearest',
                                                           'bilinear'):
        return module.mode
    return None


def upsampler_formula_macs(module: nn.Module,
                           input_shape) -> Optional[int]:
    """MACs of one call of an upsampler on an (N, C, H, W) input, from
    :mod:`dlu_mm.complexity` (DLU with its kernel sampling, as traced), or
    None for a layer without a formula (deconv, pixel shuffle, a user's).
    ``nn.Upsample`` needs an integer ``scale_factor`` (a ``size`` target
    has no per-pixel formula)."""
    n, c, h, w = input_shape
    kind = upsampler_kind(module)
    if kind == 'dlu':
        return dlu_macs(upsampler_spec(module), with_sampling=True) * n * h * w
    if kind == 'carafe':
        return carafe_macs(upsampler_spec(module)) * n * h * w
    if kind in ('nearest', 'bilinear'):
        s = module.scale_factor
        if isinstance(s, tuple) and len(set(s)) == 1:
            s = s[0]
        if isinstance(s, float) and s.is_integer():
            s = int(s)
        if not isinstance(s, int):
            return None
        spec = UpsamplerSpec(channels=c, scale_factor=s)
        return interpolation_macs(spec, kind) * n * h * w
    return None


def counted_ops_note() -> Dict[str, str]:
    """What the counts include, for the tools to print."""
    return {
        'unit': 'MACs (one multiply-accumulate = 1); FLOPs = 2 x MACs',
        'conv/linear/matmul': 'weights x output positions, bias adds not '
                              'counted (mmengine)',
        'norm layers': 'mmengine: batch norm in eval 1-2 per value',
        'interpolation': 'nearest 1, bilinear 4 per output value (mmengine)',
        'reassembly (DLU, CARAFE)': 'k_up^2 per output value (dlu_mm '
                                    'handle)',
        'grid_sampler (DLU kernel sampling)': 'bilinear 4 per sampled value '
                                              '(dlu_mm handle)',
        'not counted': 'softmax, pixel shuffle, activations, elementwise '
                       'adds/muls, offset-grid arithmetic',
    }
