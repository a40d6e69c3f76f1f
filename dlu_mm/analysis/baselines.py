"""A model config with its upsamplers replaced by a fixed interpolation: the
baseline the analysis tools measure a learned upsampler against."""
import copy
from typing import Dict, Tuple

from ..layers.builder import iter_upsample_cfgs


def baseline_cfg(model_cfg, upsample_type: str = 'nearest'
                 ) -> Tuple[Dict, int]:
    """A copy of ``model_cfg`` (a ConfigDict) with every ``upsample_cfg``
    that has a ``type`` replaced by ``dict(type=upsample_type)`` (keeping a
    ``scale_factor`` key, which some heads read); returns (cfg, number of
    replacements)."""
    from mmengine.config import ConfigDict

    model = copy.deepcopy(plain_dict(model_cfg))
    count = 0
    for _, owner in iter_upsample_cfgs(model):
        up = owner['upsample_cfg']
        if 'type' in up:
            count += 1
            owner['upsample_cfg'] = dict(type=upsample_type, **{
                k: v for k, v in up.items() if k == 'scale_factor'})
    return ConfigDict(model), count


def plain_dict(cfg):
    """ConfigDict -> dict, recursively (a deep copy of anything else)."""
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else copy.deepcopy(cfg)
