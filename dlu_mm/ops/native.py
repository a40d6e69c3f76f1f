"""Loader for the compiled CPU kernels (``dlu_mm._ext``, C++/OpenMP).

``setup.py`` builds ``dlu_mm._ext`` from ``dlu_mm/ops/csrc``. When the
extension is missing the package still imports, the plain-PyTorch path is
used, and a warning says so once.
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
