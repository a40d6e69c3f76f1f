"""The CARAFE-style reassembly that portable CARAFE uses (and DLU's
unfused reference path):

    Y[n, c, i, j] = sum_{dy, dx < k} K[n, g*k*k + dy*k + dx, i, j]
                                     * X[n, c, i//s + dy - r, j//s + dx - r]

features X: (N, C, H, W); masks K: (N, G*k*k, sH, sW), normalised kernels;
output Y: (N, C, sH, sW); r = (k - 1) / 2, X is 0 outside the map. As in
``mmcv.ops.carafe``, channel c belongs to group g = c // ceil(C / G) (G need
not divide C). Runs as the custom op ``dlu_mm::reassemble``
(:mod:`dlu_mm.ops.library`) on the backend :func:`resolve_backend` picks;
every backend computes the backward pass without atomics.
"""
from typing import Optional

import torch
from torch import Tensor

from . import reassemble_torch
from .backend import is_exporting, resolve_backend
from .checks import check_reassemble_inputs, op_dtype
from .library import reassemble_op


def reassemble(features: Tensor,
               masks: Tensor,
               kernel_size: int,
               group_size: int,
               scale_factor: int,
               backend: Optional[str] = None) -> Tensor:
    """Reassemble ``features`` (N, C, H, W) with normalised kernels ``masks``
    (N, G*k*k, sH, sW) into (N, C, sH, sW); see the module docstring.

    Mixed input dtypes are promoted to the wider one, which is the output
    dtype; under autocast float32 inputs first take autocast's dtype
    (:func:`~dlu_mm.ops.checks.op_dtype`).
    While exporting (ONNX, tracing, ``torch.export``) the plain-op forward is
    recorded instead of the custom op, so graphs hold standard ops.
    """
    check_reassemble_inputs(features, masks, kernel_size, group_size,
                            scale_factor)
    dtype = op_dtype(features, masks)
    features, masks = features.to(dtype), masks.to(dtype)
    if is_exporting():
        return reassemble_torch.reassemble_forward(features, masks,
                                                   kernel_size, group_size,
                                                   scale_factor)
    return reassemble_op(features, masks, kernel_size, group_size,
                         scale_factor, resolve_backend(features, backend))
