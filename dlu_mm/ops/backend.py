"""Which implementation runs an op, chosen per call.

* ``native``: the compiled C++/OpenMP kernels in ``dlu_mm._ext`` (CPU
  tensors; :mod:`dlu_mm.ops.native`);
* ``triton``: the Triton kernels (CUDA tensors; CPU tensors only under
  ``TRITON_INTERPRET=1``; :mod:`dlu_mm.ops.triton_backend`);
* ``torch``: plain PyTorch, any device (:mod:`dlu_mm.ops.reassemble_torch`
  and, for DLU, :func:`dlu_mm.ops.sample_kernel_space` then the reassembly).

``auto`` (the default) takes ``native`` for CPU tensors when the extension
is built, ``triton`` for CUDA tensors when Triton is installed, else
``torch``. ``$DLU_MM_REASSEMBLE_BACKEND`` or an op's ``backend`` argument
overrides it; a backend that cannot run on the tensors given is an error.
"""
import os
from typing import Optional

import torch
from torch import Tensor

from . import native, triton_backend

BACKENDS = ('auto', 'native', 'triton', 'torch')
BACKEND_ENV = 'DLU_MM_REASSEMBLE_BACKEND'
_MODULES = {'native': native, 'triton': triton_backend}


def is_exporting() -> bool:
    """True while ONNX export, tracing or torch.export records the graph."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or \
        torch.compiler.is_exporting()


def resolve_backend(features: Tensor, backend: Optional[str] = None) -> str:
    """The backend that runs for ``features``: 'native', 'triton' or
    'torch' (see the module docstring)."""
    choice = backend or os.environ.get(BACKEND_ENV) or 'auto'
    if choice not in BACKENDS:
        raise ValueError(f'reassembly backend must be one of {BACKENDS} '
                         f'(argument backend or ${BACKEND_ENV}), got '
                         f'{choice!r}')
    if choice == 'torch':
        return 'torch'
    if choice != 'auto':
        reason = _MODULES[choice].unavailable_reason(features)
        if reason is not None:
            raise RuntimeError(
                f'reassembly backend {choice!r} was requested but cannot run '
                f'on these tensors: {reason}')
        return choice
    preferred = 'triton' if features.device.type == 'cuda' else 'native'
    return preferred if _MODULES[preferred].supports(features) else 'torch'
