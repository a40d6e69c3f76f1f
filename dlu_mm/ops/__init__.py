"""Pure tensor functions (no registry, no mm* imports)."""
from .kernel_sampling import sample_kernel_space
from .reassemble import reassemble, resolve_backend

__all__ = ['reassemble', 'resolve_backend', 'sample_kernel_space']
