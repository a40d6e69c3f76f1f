"""MMDetection adapters, registered in ``mmdet.registry.MODELS``:
``FPN_Upsample`` (neck) and ``FCNMaskHeadUpsample`` (mask head), both taking
any registered upsample layer in ``upsample_cfg``. Imports mmdet (and
mmengine, mmcv), never mmseg: an mmdet config loads it with
``custom_imports=dict(imports=['dlu_mm.mmdet'])``."""
from .. import registration  # noqa: F401  (the upsample types they build)
from .fcn_mask_head_upsample import FCNMaskHeadUpsample
from .fpn_upsample import FPN_Upsample

__all__ = ['FPN_Upsample', 'FCNMaskHeadUpsample']
