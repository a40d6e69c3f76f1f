"""Registers the upsample layers in mmengine's root ``MODELS`` registry as
``dlu`` and ``carafe_portable``, so ``mmcv.cnn.build_upsample_layer(dict(
type='dlu', channels=256, scale_factor=2))`` works from any default scope.
The one module of the layers that imports mmengine."""
from mmengine.registry import MODELS

from .layers import DLU, CARAFEPortable

MODELS.register_module(name='dlu', module=DLU)
MODELS.register_module(name='carafe_portable', module=CARAFEPortable)
