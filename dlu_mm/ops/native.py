"""Loader for the compiled CPU kernels (``dlu_mm._ext``, C++/OpenMP).

``setup.py`` builds ``dlu_mm._ext`` from ``dlu_mm/ops/csrc``. When the
extension is missing the package still imports, the plain-PyTorch path is
used, and a warning says so once.

The kernels keep the large buffers their outputs release and reuse them for
the next outputs of the same size (``csrc/output_buffers.cpp``: a fresh
multi-MiB buffer costs a page fault and the kernel's zeroing per page);
``DLU_MM_OUTPUT_CACHE_MIB`` (default 1024) or
:func:`set_output_cache_capacity` bound it, 0 turns it off.
"""
import importlib
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

try:
    _ext = importlib.import_module('dlu_mm._ext')
    _IMPORT_ERROR = None
except ImportError as err:  # not built (e.g. a plain source checkout)
    _ext = None
    _IMPORT_ERROR = err

_warned = False
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def is_built() -> bool:
    return _ext is not None


def _require_built(what: str):
    if _ext is None:
        raise RuntimeError(f'dlu_mm: {what} needs dlu_mm._ext, which is not '
                           f'built ({_IMPORT_ERROR})')
    return _ext


def cached_output_bytes() -> int:
    """Bytes of released output buffers the native kernels keep for reuse."""
    return _require_built('cached_output_bytes()').cached_output_bytes()


def set_output_cache_capacity(capacity_bytes: int) -> int:
    """Bounds the native kernels' output cache (0 turns it off and frees
    what it holds); returns the previous capacity in bytes."""
    if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes,
                                                          int) \
            or capacity_bytes < 0:
        raise ValueError('set_output_cache_capacity: capacity_bytes must be '
                         f'an int >= 0 (0 turns the cache off), got '
                         f'{capacity_bytes!r}')
    return _require_built('set_output_cache_capacity()') \
        .set_output_cache_capacity(capacity_bytes)


def unavailable_reason(features: Tensor) -> Optional[str]:
    """Why the native kernels cannot run on ``features``; None if they can."""
    if _ext is None:
        return (f'dlu_mm._ext is not built ({_IMPORT_ERROR}); reinstall with '
                f'`pip install --no-build-isolation -e .`')
    if features.device.type != 'cpu':
        return f'no native kernel for device {features.device.type}'
    if features.dtype not in DTYPES:
        return f'no native kernel for dtype {features.dtype}'
    return None


def supports(features: Tensor) -> bool:
    """Whether the native kernels run on ``features``; warns once when they
    would but the extension is not built."""
    global _warned
    reason = unavailable_reason(features)
    if reason is not None and _ext is None and not _warned \
            and features.device.type == 'cpu':
        _warned = True
        warnings.warn(f'dlu_mm: using the plain-PyTorch reassembly: {reason}')
    return reason is None


def reassemble_forward(features: Tensor, masks: Tensor, kernel_size: int,
                       group_size: int, scale_factor: int) -> Tensor:
    return _ext.reassemble_forward(features, masks, kernel_size, group_size,
                                   scale_factor)


def reassemble_backward(grad_output: Tensor, features: Tensor, masks: Tensor,
                        kernel_size: int, group_size: int, scale_factor: int,
                        needs_features_grad: bool, needs_masks_grad: bool
                        ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    grad_features, grad_masks = _ext.reassemble_backward(
        grad_output, features, masks, kernel_size, group_size, scale_factor,
        needs_features_grad, needs_masks_grad)
    return (grad_features if needs_features_grad else None,
            grad_masks if needs_masks_grad else None)


def dlu_reassemble_forward(features: Tensor, kernel_space: Tensor,
                           offsets: Tensor, kernel_size: int, group_size: int,
                           scale_factor: int) -> Tensor:
    return _ext.dlu_reassemble_forward(features, kernel_space, offsets,
                                       kernel_size, group_size, scale_factor)


def dlu_reassemble_backward(
        grad_output: Tensor, features: Tensor, kernel_space: Tensor,
        offsets: Tensor, kernel_size: int, group_size: int,
        scale_factor: int, needs_features_grad: bool,
        needs_sampling_grads: bool
) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    grads = _ext.dlu_reassemble_backward(
        grad_output, features, kernel_space, offsets, kernel_size,
        group_size, scale_factor, needs_features_grad, needs_sampling_grads)
    return (grads[0] if needs_features_grad else None,
            *(g if needs_sampling_grads else None for g in grads[1:]))
