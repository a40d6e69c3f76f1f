"""MMSegmentation adapters: decode heads whose upsampling steps are any
registered upsample layer (``upsample_cfg``), registered in
``mmseg.registry.MODELS``. Imports mmseg (and mmengine, mmcv), never mmdet
itself (mmseg's own ``mmseg.models`` imports mmdet when it is installed): an
mmseg config loads it with ``custom_imports=dict(imports=['dlu_mm.mmseg'])``."""
from .. import registration  # noqa: F401  (the upsample types they build)
from .segformer_head import SegformerHeadUpsample
from .uper_head import UPerHeadUpsample
from .upsample_to import build_head_upsamplers, head_upsample_cfg, upsample_to

__all__ = ['UPerHeadUpsample', 'SegformerHeadUpsample', 'upsample_to',
           'head_upsample_cfg', 'build_head_upsamplers']
