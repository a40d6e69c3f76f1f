"""Triton kernels of the reassembly and of the fused DLU op (CUDA tensors;
CPU tensors under ``TRITON_INTERPRET=1``). Placeholder until the kernels
land: reports itself unavailable."""
from typing import Optional

from torch import Tensor


def unavailable_reason(features: Tensor) -> Optional[str]:
    return 'the Triton kernels are not written yet'


def supports(features: Tensor) -> bool:
    return False
