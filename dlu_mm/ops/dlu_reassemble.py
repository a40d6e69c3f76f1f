"""DLU's kernel space expander fused into the reassembly.

For output pixel (i, j) and group g, with q = (i // s, j // s) its source
pixel and O = pixel_shuffle(offsets, s) (channel 2g the column offset, 2g+1
the row offset of group g), the sampling point in input pixels is

    (y, x) = (clamp(i//s + O[2g+1, i, j], 0, H-1),
              clamp(j//s + O[2g, i, j], 0, W-1))

the kernel of group g at (i, j) is the kernel space of group g sampled
bilinearly there,

    K_g(i, j)[t] = sum_{corners (y', x')} w(y', x') S[g*k*k + t, y', x'],

and the output is CARAFE's reassembly with those kernels:

    Y[c, i, j] = sum_{dy, dx < k} K_g(i, j)[dy*k + dx]
                 * X[c, i//s + dy - r, j//s + dx - r],   g = c // ceil(C/G).

This is ``reassemble(features, sample_kernel_space(kernel_space, offsets,
s), ...)`` -- grid_sample's ``align_corners=True``, ``padding_mode='border'``
semantics, including its gradients: zero with respect to a coordinate
clamped to or lying on the border, and at an interior integer coordinate
the one-sided derivative towards the next pixel. The fused kernels
(``native`` on CPU, ``triton`` on CUDA) compute it without writing the
(N, G*k*k, sH, sW) kernels to memory, forward and backward; the native
backward uses no atomics, Triton's scatters the kernel-space gradient with
atomic adds, so under ``torch.use_deterministic_algorithms(True)`` the
Triton backend runs the composition (deterministic sampling, Triton
reassembly). The ``torch`` backend and export run the composition itself.
"""
from typing import Optional

import torch
from torch import Tensor

from . import reassemble_torch
from .backend import is_exporting, resolve_backend
from .checks import check_dlu_inputs, op_dtype
from .kernel_sampling import sample_kernel_space
from .library import dlu_reassemble_op, reassemble_op


def dlu_reassemble(features: Tensor,
                   kernel_space: Tensor,
                   offsets: Tensor,
                   kernel_size: int,
                   group_size: int,
                   scale_factor: int,
                   backend: Optional[str] = None) -> Tensor:
    """DLU's output (N, C, sH, sW) from the input ``features`` (N, C, H, W),
    its normalised ``kernel_space`` (N, G*k*k, H, W) and guidance
    ``offsets`` (N, G*2*s*s, H, W); see the module docstring.

    Inputs of mixed dtypes are promoted to the widest, the output's dtype;
    under autocast float32 inputs first take autocast's dtype
    (:func:`~dlu_mm.ops.checks.op_dtype`).
    """
    check_dlu_inputs(features, kernel_space, offsets, kernel_size,
                     group_size, scale_factor)
    dtype = op_dtype(features, kernel_space, offsets)
    features, kernel_space, offsets = (t.to(dtype) for t in (
        features, kernel_space, offsets))
    if is_exporting():
        kernels = sample_kernel_space(kernel_space, offsets, scale_factor)
        return reassemble_torch.reassemble_forward(features, kernels,
                                                   kernel_size, group_size,
                                                   scale_factor)
    chosen = resolve_backend(features, backend)
    if chosen == 'torch' or (chosen == 'triton' and
                             torch.are_deterministic_algorithms_enabled()):
        # the plain path; and Triton's deterministic one (its fused backward
        # scatters the kernel-space gradient with atomic adds)
        kernels = sample_kernel_space(kernel_space, offsets, scale_factor)
        return reassemble_op(features, kernels, kernel_size, group_size,
                             scale_factor, chosen)
    return dlu_reassemble_op(features, kernel_space, offsets, kernel_size,
                             group_size, scale_factor, chosen)
