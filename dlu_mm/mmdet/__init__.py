"""MMDetection adapters, registered in ``mmdet.registry.MODELS``:
``FPN_Upsample`` (neck) and ``FCNMaskHeadUpsample`` (mask head), both taking
any registered upsample layer in ``upsample_cfg``."""
from .fcn_mask_head_upsample import FCNMaskHeadUpsample
from .fpn_upsample import FPN_Upsample

__all__ = ['FPN_Upsample', 'FCNMaskHeadUpsample']
