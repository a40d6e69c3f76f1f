"""Mixed precision on CPU. mmengine's ``AmpOptimWrapper`` refuses devices
other than CUDA/NPU/MLU; on CPU, bf16 autocast needs no loss scaling.

mmcv's CPU kernels for ``nms`` and ``roi_align`` have no bfloat16 variant
(and ``nms`` wants boxes and scores of one dtype), so while a
:class:`CPUAmpOptimWrapper` context is active they run in float32, the way
autocast itself runs its fp32-list ops: low-precision CPU inputs are cast up,
the op runs, and the float32 result flows on (autograd casts the gradient
back). Outside that context, and on other devices, they are untouched.
"""
import functools
import importlib
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


_LOW_PRECISION = (torch.bfloat16, torch.float16)
_fp32_ops_active = 0


def _float32_on_cpu_autocast(fn, cast_args, cast_back=False):
    """Wrap ``fn`` so that, while CPU autocast is on under our wrapper, the
    positional tensor arguments at ``cast_args`` that are low-precision CPU
    tensors are cast to float32 first; with ``cast_back`` the result is cast
    to the dtype of the first of them (callers such as mmdet's RoI extractor
    write it into a tensor of that dtype, as on CUDA where the op runs in
    fp16 itself)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not (_fp32_ops_active and torch.is_autocast_enabled('cpu')):
            return fn(*args, **kwargs)
        args = list(args)
        out_dtype = None
        for i in cast_args:
            arg = args[i]
            if isinstance(arg, torch.Tensor) and arg.device.type == 'cpu' \
                    and arg.dtype in _LOW_PRECISION:
                out_dtype = out_dtype or arg.dtype
                args[i] = arg.float()
        out = fn(*args, **kwargs)
        return out.to(out_dtype) if cast_back and out_dtype else out

    wrapper.dlu_mm_fp32_wrapped = True
    return wrapper


def _install_fp32_ops() -> None:
    """Wrap mmcv's ``nms`` and ``roi_align`` once (idempotent)."""
    nms_module = importlib.import_module('mmcv.ops.nms')
    roi_align_module = importlib.import_module('mmcv.ops.roi_align')
    if not getattr(roi_align_module.roi_align, 'dlu_mm_fp32_wrapped', False):
        roi_align_module.roi_align = _float32_on_cpu_autocast(
            roi_align_module.roi_align, (0, 1), cast_back=True)
    forward = nms_module.NMSop.forward
    if not getattr(forward, 'dlu_mm_fp32_wrapped', False):
        # forward(ctx, bboxes, scores, ...): cast bboxes and scores
        nms_module.NMSop.forward = staticmethod(
            _float32_on_cpu_autocast(forward, (1, 2)))


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast('cpu')``.

    Args:
        dtype (str): 'bfloat16' (default) or 'float16'.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"CPUAmpOptimWrapper dtype must be 'bfloat16' or "
                             f"'float16', got {dtype!r}")
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)
        _install_fp32_ops()

    @contextmanager
    def optim_context(self, model):
        global _fp32_ops_active
        _fp32_ops_active += 1
        try:
            with super().optim_context(model), torch.autocast(
                    'cpu', dtype=self.cast_dtype):
                yield
        finally:
            _fp32_ops_active -= 1
