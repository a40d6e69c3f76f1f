"""dlu_mm: DLU (Dynamic Lightweight Upsampling) for OpenMMLab.

The core imports torch only: :mod:`dlu_mm.ops` (the tensor functions) and
:mod:`dlu_mm.layers` (``DLU``, ``CARAFEPortable``, plain ``nn.Module``s).

``import dlu_mm`` also arranges (:mod:`dlu_mm.integrations`) that the
``dlu`` / ``carafe_portable`` upsample types are registered in mmengine's root
registry and the mmdet / mmseg adapters in theirs as soon as mmengine /
``mmdet.models`` / ``mmseg.models`` are imported, without importing any of
them itself. A config loads the adapter it needs directly:
``custom_imports=dict(imports=['dlu_mm.mmdet'])`` (or ``'dlu_mm.mmseg'``).
"""
from . import integrations
from .layers import DLU, CARAFEPortable

__version__ = '0.1.0'
__all__ = ['DLU', 'CARAFEPortable', '__version__']

integrations.install()
