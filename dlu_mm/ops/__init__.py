"""Pure tensor functions, torch only: CARAFE's reassembly, DLU's fused
kernel sampling + reassembly and its unfused kernel space expander, each
backed by ``torch.library`` custom ops (:mod:`dlu_mm.ops.library`)."""
from .backend import BACKEND_ENV, BACKENDS, resolve_backend
from .dlu_reassemble import dlu_reassemble
from .kernel_sampling import sample_kernel_space
from .reassemble import reassemble

__all__ = ['reassemble', 'dlu_reassemble', 'sample_kernel_space',
           'resolve_backend', 'BACKENDS', 'BACKEND_ENV']
