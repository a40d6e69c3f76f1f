"""Upsample layers as plain ``nn.Module``s (torch only). ``import dlu_mm``
registers them in mmengine's root ``MODELS`` (:mod:`dlu_mm.registration`)
when mmengine is installed."""
from .carafe_portable import CARAFEPortable
from .dlu import DLU
from .upsampler_base import KernelPrediction

__all__ = ['DLU', 'CARAFEPortable', 'KernelPrediction']
