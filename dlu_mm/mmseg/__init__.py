"""MMSegmentation adapters: decode heads whose upsampling steps are any
registered upsample layer (``upsample_cfg``), registered in
``mmseg.registry.MODELS`` when ``dlu_mm`` is imported."""
from .segformer_head import SegformerHeadUpsample
from .uper_head import UPerHeadUpsample
from .upsample_to import build_head_upsamplers, head_upsample_cfg, upsample_to

__all__ = ['UPerHeadUpsample', 'SegformerHeadUpsample', 'upsample_to',
           'head_upsample_cfg', 'build_head_upsamplers']
