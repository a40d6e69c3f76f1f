"""Upsample layers registered in mmengine's root ``MODELS`` registry, so
``mmcv.cnn.build_upsample_layer(dict(type='dlu', ...))`` works from any
default scope."""
from .carafe_portable import CARAFEPortable
from .dlu import DLU

__all__ = ['DLU', 'CARAFEPortable']
