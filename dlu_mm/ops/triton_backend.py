"""The ``triton`` backend: launches the kernels of
:mod:`dlu_mm.ops.triton_kernels` for CUDA tensors (and for CPU tensors when
``TRITON_INTERPRET=1`` runs Triton's interpreter, which is how the tests
check them without a GPU). Triton is imported on first use only; without
it (or without CUDA) this backend reports itself unavailable and the
package runs as before.

Same functions and semantics as :mod:`dlu_mm.ops.native`. Inputs are made
contiguous (non-contiguous inputs are copied), sums are accumulated in
float32 (float64 for float64 inputs), and outputs come in the inputs'
dtype. Every gradient is computed without atomics except DLU's
kernel-space gradient (a scatter): :func:`dlu_mm.ops.dlu_reassemble` does
not call the fused backward while ``torch.use_deterministic_algorithms``
is on (it then runs the sampling and the Triton reassembly unfused, both
deterministic).
"""
import importlib.util
import os
import sys
from typing import Optional, Tuple

import torch
from torch import Tensor

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
BLOCK_C = 16  # channels per program
BLOCK_P = 64  # output pixels per program
# DLU's fused kernels: 128 pixels (tools/analysis/triton_blocks.py on an
# H200, 1x256x120x120 fp32 s=2: forward 0.91 vs 1.26 ms at 64, forward +
# backward 3.68 vs 4.12 ms; the reassembly alone was slower at 128)
BLOCK_P_SAMPLED = 128
BLOCK_E = 256  # input pixels x sub-pixels per program of the features' grad
NUM_WARPS = 4  # per program (tools/analysis/triton_blocks.py times others)
_kernels = None


def _interpreting() -> bool:
    """Whether Triton interprets kernels in this process. Triton decides
    when it is first imported (``TRITON_INTERPRET=1``): its own library
    functions are then interpreted ones."""
    triton = sys.modules.get('triton')
    if triton is None:
        return os.environ.get('TRITON_INTERPRET') == '1'
    return type(triton.language.zeros).__name__ == 'InterpretedFunction'


def unavailable_reason(features: Tensor) -> Optional[str]:
    """Why the Triton kernels cannot run on ``features``; None if they
    can."""
    if importlib.util.find_spec('triton') is None:
        return 'Triton is not installed (pip install triton)'
    if features.device.type == 'cpu' and not _interpreting():
        return ('the Triton kernels run on CUDA tensors (CPU tensors only in '
                "Triton's interpreter: TRITON_INTERPRET=1 set before triton "
                'is first imported)')
    if features.device.type not in ('cpu', 'cuda'):
        return f'no Triton kernel for device {features.device.type}'
    if features.dtype not in DTYPES:
        return f'no Triton kernel for dtype {features.dtype}'
    return None


def supports(features: Tensor) -> bool:
    return unavailable_reason(features) is None


def _load():
    """The kernels, imported on first use. Triton fixes at its own import
    whether kernels are compiled or interpreted (``TRITON_INTERPRET``), so
    one process runs one kind."""
    global _kernels
    if _kernels is None:
        from . import triton_kernels
        _kernels = triton_kernels
    return _kernels


def _accumulator(dtype: torch.dtype):
    import triton.language as tl
    return tl.float64 if dtype == torch.float64 else tl.float32


def _geometry(features: Tensor, group_size: int):
    n, c, h, w = features.shape
    return n, c, h, w, -(-c // group_size)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _reassembly_forward(features: Tensor, kernels: Tensor, offsets: Tensor,
                        kernel_size: int, group_size: int, scale_factor: int,
                        sampled: bool) -> Tensor:
    n, c, h, w, cg = _geometry(features, group_size)
    s = scale_factor
    out = features.new_empty(n, c, h * s, w * s)
    if out.numel() == 0:
        return out
    block_p = BLOCK_P_SAMPLED if sampled else BLOCK_P
    grid = (_cdiv(h * s * w * s, block_p), _cdiv(cg, BLOCK_C),
            n * group_size)
    _load()._forward[grid](
        features.contiguous(), kernels.contiguous(), offsets.contiguous(),
        out, c, h, w, group_size, cg, K=kernel_size, S=s, SAMPLED=sampled,
        ACC=_accumulator(features.dtype), BLOCK_C=BLOCK_C, BLOCK_P=block_p,
        num_warps=NUM_WARPS)
    return out


def _features_grad(grad_output: Tensor, features: Tensor, kernels: Tensor,
                   offsets: Tensor, kernel_size: int, group_size: int,
                   scale_factor: int, sampled: bool) -> Tensor:
    n, c, h, w, cg = _geometry(features, group_size)
    grad = torch.empty_like(features, memory_format=torch.contiguous_format)
    if grad.numel() == 0:
        return grad
    sub_pixels = 1 << (scale_factor**2 - 1).bit_length()  # S*S, a power of 2
    block_q = max(1, BLOCK_E // sub_pixels)
    grid = (_cdiv(h * w, block_q), _cdiv(cg, BLOCK_C), n * group_size)
    _load()._features_grad[grid](
        grad_output.contiguous(), kernels.contiguous(), offsets.contiguous(),
        grad, c, h, w, group_size, cg, K=kernel_size, S=scale_factor,
        SAMPLED=sampled, ACC=_accumulator(features.dtype), BLOCK_C=BLOCK_C,
        BLOCK_Q=block_q, SS=sub_pixels, num_warps=NUM_WARPS)
    return grad


def reassemble_forward(features: Tensor, masks: Tensor, kernel_size: int,
                       group_size: int, scale_factor: int) -> Tensor:
    return _reassembly_forward(features, masks, masks, kernel_size,
                               group_size, scale_factor, sampled=False)


def reassemble_backward(grad_output: Tensor, features: Tensor, masks: Tensor,
                        kernel_size: int, group_size: int, scale_factor: int,
                        needs_features_grad: bool, needs_masks_grad: bool
                        ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    grad_features = grad_masks = None
    if needs_features_grad:
        grad_features = _features_grad(grad_output, features, masks, masks,
                                       kernel_size, group_size, scale_factor,
                                       sampled=False)
    if needs_masks_grad:
        n, c, h, w, cg = _geometry(features, group_size)
        s = scale_factor
        grad_masks = torch.empty_like(masks,
                                      memory_format=torch.contiguous_format)
        if grad_masks.numel():
            grid = (_cdiv(h * s * w * s, BLOCK_P), kernel_size**2,
                    n * group_size)
            _load()._masks_grad[grid](
                grad_output.contiguous(), features.contiguous(), grad_masks,
                c, h, w, group_size, cg, K=kernel_size, S=s,
                ACC=_accumulator(features.dtype), BLOCK_C=BLOCK_C,
                BLOCK_P=BLOCK_P, num_warps=NUM_WARPS)
    return grad_features, grad_masks


def dlu_reassemble_forward(features: Tensor, kernel_space: Tensor,
                           offsets: Tensor, kernel_size: int, group_size: int,
                           scale_factor: int) -> Tensor:
    return _reassembly_forward(features, kernel_space, offsets, kernel_size,
                               group_size, scale_factor, sampled=True)


def dlu_reassemble_backward(
        grad_output: Tensor, features: Tensor, kernel_space: Tensor,
        offsets: Tensor, kernel_size: int, group_size: int,
        scale_factor: int, needs_features_grad: bool,
        needs_sampling_grads: bool
) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    grad_features = grad_space = grad_offsets = None
    if needs_features_grad:
        grad_features = _features_grad(grad_output, features, kernel_space,
                                       offsets, kernel_size, group_size,
                                       scale_factor, sampled=True)
    if needs_sampling_grads:
        n, c, h, w, cg = _geometry(features, group_size)
        s = scale_factor
        wide = torch.float64 if features.dtype == torch.float64 else \
            torch.float32
        grad_space = torch.zeros(kernel_space.shape, dtype=wide,
                                 device=kernel_space.device)
        grad_offsets = torch.empty_like(
            offsets, memory_format=torch.contiguous_format)
        if grad_offsets.numel():
            grid = (_cdiv(h * s * w * s, BLOCK_P_SAMPLED), 1,
                    n * group_size)
            _load()._sampling_grad[grid](
                grad_output.contiguous(), features.contiguous(),
                kernel_space.contiguous(), offsets.contiguous(), grad_space,
                grad_offsets, c, h, w, group_size, cg, K=kernel_size, S=s,
                ACC=_accumulator(features.dtype), BLOCK_C=BLOCK_C,
                BLOCK_P=BLOCK_P_SAMPLED, num_warps=NUM_WARPS)
        grad_space = grad_space.to(kernel_space.dtype)
    return grad_features, grad_space, grad_offsets
