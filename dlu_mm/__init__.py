"""dlu_mm: DLU (Dynamic Lightweight Upsampling) for OpenMMLab.

``import dlu_mm`` registers the ``dlu`` and ``carafe_portable`` upsample
layers in mmengine's root registry and, for each of mmdet / mmseg that is
installed, its adapters (necks, heads) in that framework's registry.
"""
import importlib.util

from .layers import DLU, CARAFEPortable

__version__ = '0.1.0'
__all__ = ['DLU', 'CARAFEPortable', '__version__']

if importlib.util.find_spec('mmengine') is not None:
    from . import registration  # noqa: F401
if importlib.util.find_spec('mmdet') is not None:
    from . import mmdet  # noqa: F401
if importlib.util.find_spec('mmseg') is not None:
    from . import mmseg  # noqa: F401
