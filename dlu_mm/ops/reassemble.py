"""The one CARAFE-style reassembly function that DLU and portable CARAFE share.

``reassemble(features, masks, kernel_size, group_size, scale_factor)`` has the
signature and semantics of ``mmcv.ops.carafe``:

    Y[n, c, i, j] = sum_{dy, dx < k} K[n, g*k*k + dy*k + dx, i, j]
                                     * X[n, c, i//s + dy - r, j//s + dx - r]

features X: (N, C, H, W); masks K: (N, G*k*k, sH, sW); output Y: (N, C, sH, sW);
r = (k - 1) / 2, g = c // (C / G), X is 0 outside the map.

Backends (same numbers, chosen per call):
  * ``native``: the compiled kernels in ``dlu_mm._ext`` (C++/OpenMP on CPU),
    used automatically when built and the tensors live on the CPU;
  * ``torch``: :mod:`dlu_mm.ops.reassemble_torch`, plain PyTorch, any device.
``DLU_MM_REASSEMBLE_BACKEND=torch|native|auto`` (default ``auto``) or the
``backend`` argument overrides the choice. Both backends compute the backward
pass without atomics, so gradients are deterministic.
"""
import os
from typing import Optional

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import native
from . import reassemble_torch

BACKENDS = ('auto', 'native', 'torch')
BACKEND_ENV = 'DLU_MM_REASSEMBLE_BACKEND'


def check_kernel_args(kernel_size, group_size, scale_factor) -> None:
    """Raise ``ValueError`` naming the argument when one is out of range."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) \
            or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'up_kernel (kernel_size) must be a positive odd '
                         f'integer (1, 3, 5, ...), got {kernel_size!r}')
    if isinstance(group_size, bool) or not isinstance(group_size, int) \
            or group_size < 1:
        raise ValueError(f'up_group (group_size) must be a positive integer, '
                         f'got {group_size!r}')
    if isinstance(scale_factor, bool) or not isinstance(scale_factor, int) \
            or scale_factor < 1:
        raise ValueError(f'scale_factor must be an integer >= 1, '
                         f'got {scale_factor!r}')


def _check_tensors(features: Tensor, masks: Tensor, kernel_size: int,
                   group_size: int, scale_factor: int) -> None:
    if features.dim() != 4:
        raise ValueError(f'features must be a 4-D tensor (N, C, H, W), got '
                         f'shape {tuple(features.shape)}')
    if masks.dim() != 4:
        raise ValueError(f'masks must be a 4-D tensor (N, G*k*k, sH, sW), got '
                         f'shape {tuple(masks.shape)}')
    n, c, h, w = features.shape
    if c % group_size:
        raise ValueError(f'features has {c} channels, which up_group '
                         f'(group_size)={group_size} does not divide')
    expected = (n, group_size * kernel_size**2, h * scale_factor,
                w * scale_factor)
    if tuple(masks.shape) != expected:
        raise ValueError(f'masks must have shape (N, G*k*k, sH, sW) = '
                         f'{expected} for features {tuple(features.shape)}, '
                         f'k={kernel_size}, G={group_size}, s={scale_factor};'
                         f' got {tuple(masks.shape)}')
    if features.device != masks.device:
        raise ValueError(f'features ({features.device}) and masks '
                         f'({masks.device}) must be on the same device')


def resolve_backend(features: Tensor, backend: Optional[str] = None) -> str:
    """The backend that will run for ``features``: 'native' or 'torch'."""
    choice = backend or os.environ.get(BACKEND_ENV, 'auto')
    if choice not in BACKENDS:
        raise ValueError(f'reassembly backend must be one of {BACKENDS} '
                         f'(argument or ${BACKEND_ENV}), got {choice!r}')
    if choice == 'torch':
        return 'torch'
    supported = native.supports(features)
    if choice == 'native' and not supported:
        raise RuntimeError(
            f'reassembly backend "native" was requested but cannot run on '
            f'{features.device} tensors: {native.unavailable_reason(features)}')
    return 'native' if supported else 'torch'


class ReassembleFunction(Function):
    """Autograd Function: forward and backward never build a k*k-times
    larger tensor (see :mod:`dlu_mm.ops.reassemble_torch`)."""

    @staticmethod
    def forward(ctx, features, masks, kernel_size, group_size, scale_factor,
                backend):
        ctx.args = (kernel_size, group_size, scale_factor)
        ctx.backend = backend
        ctx.save_for_backward(features, masks)
        impl = native if backend == 'native' else reassemble_torch
        with torch.autocast(features.device.type, enabled=False):
            return impl.reassemble_forward(features, masks, kernel_size,
                                           group_size, scale_factor)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        features, masks = ctx.saved_tensors
        impl = native if ctx.backend == 'native' else reassemble_torch
        with torch.autocast(features.device.type, enabled=False):
            grad_features, grad_masks = impl.reassemble_backward(
                grad_output, features, masks, *ctx.args,
                needs_features_grad=ctx.needs_input_grad[0],
                needs_masks_grad=ctx.needs_input_grad[1])
        return grad_features, grad_masks, None, None, None, None


def is_exporting() -> bool:
    """True while ONNX export, tracing or torch.export records the graph."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or \
        torch.compiler.is_exporting()


def reassemble(features: Tensor,
               masks: Tensor,
               kernel_size: int,
               group_size: int,
               scale_factor: int,
               backend: Optional[str] = None) -> Tensor:
    """Reassemble ``features`` (N, C, H, W) with normalised kernels ``masks``
    (N, G*k*k, sH, sW) into (N, C, sH, sW); see the module docstring.

    Mixed input dtypes (e.g. bf16 kernels from a conv under autocast and fp32
    features) are promoted to the wider one, which is the output dtype.
    While exporting (ONNX, tracing, ``torch.export``) the plain-op forward is
    recorded instead of the autograd Function, so graphs hold standard ops.
    """
    check_kernel_args(kernel_size, group_size, scale_factor)
    _check_tensors(features, masks, kernel_size, group_size, scale_factor)
    dtype = torch.promote_types(features.dtype, masks.dtype)
    features, masks = features.to(dtype), masks.to(dtype)
    if is_exporting():
        return reassemble_torch.reassemble_forward(features, masks,
                                                   kernel_size, group_size,
                                                   scale_factor)
    return ReassembleFunction.apply(features, masks, kernel_size, group_size,
                                    scale_factor,
                                    resolve_backend(features, backend))
