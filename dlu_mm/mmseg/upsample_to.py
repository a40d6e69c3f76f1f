"""Build a decode head's upsamplers and apply one to reach a target size.

Decode heads upsample a feature map ``x`` of shape (N, C, h, w) to the size
(H, W) of a finer level, where H ~ s*h for the level ratio s. mmseg's heads do
it with ``resize(x, size=(H, W), mode='bilinear')``; here the step is any
registered upsample type (``dlu``, ``carafe``, ``carafe_portable``,
``deconv``, ``pixel_shuffle``, ``bilinear``, ``nearest``, ...), built by
:func:`build_head_upsamplers` and applied by :func:`upsample_to`.
"""
from typing import Dict, Optional, Sequence

import torch.nn as nn
from mmseg.models.utils import resize
from torch import Tensor

from ..layers.builder import build_upsampler, check_upsample_cfg


def head_upsample_cfg(upsample_cfg: Dict, align_corners: bool,
                      owner: str = 'upsample_cfg') -> Dict:
    """``upsample_cfg`` with the head's ``align_corners`` filled in for the
    ``bilinear`` type (a value the config sets itself must agree with the
    head's, else ``ValueError``); an unknown type raises ``ValueError``
    listing the registered upsample types."""
    check_upsample_cfg(upsample_cfg, owner)
    cfg = dict(upsample_cfg)
    if cfg['type'] == 'bilinear':
        if 'align_corners' in cfg and cfg['align_corners'] != align_corners:
            raise ValueError(
                f"{owner}['align_corners']={cfg['align_corners']!r} does not "
                f"match the head's align_corners={align_corners!r}; leave it "
                f'out and it is filled in')
        cfg['align_corners'] = align_corners
    return cfg


def build_head_upsamplers(upsample_cfg: Dict, channels: int,
                          scale_factors: Sequence[int],
                          owner: str = 'upsample_cfg') -> nn.ModuleList:
    """One layer per s in ``scale_factors``, each upsampling C =
    ``channels`` features s times as ``upsample_cfg`` (from
    :func:`head_upsample_cfg`) says."""
    return nn.ModuleList(
        build_upsampler(upsample_cfg, channels, s, owner)
        for s in scale_factors)


def upsample_to(upsampler: nn.Module,
                x: Tensor,
                size: Sequence[int],
                scale_factor: int,
                align_corners: Optional[bool] = False) -> Tensor:
    """Upsample ``x`` (N, C, h, w) to (N, C, H, W), ``size`` = (H, W).

    * An interpolation layer (``bilinear`` / ``nearest``, i.e.
      ``nn.Upsample``) resizes straight to ``size`` with its own mode and
      ``align_corners``: exactly mmseg's ``resize(x, size=size, ...)``, for
      any size (for exact multiples, H = s*h, this also equals upsampling by
      s, since F.interpolate then uses the same 1/s source step).
    * Any other layer (DLU, CARAFE, deconv, pixel shuffle) upsamples by s to
      (s*h, s*w); each dimension that came out larger than the target is
      cropped at the bottom / right (``y[..., :H, :W]``), and if one came
      out smaller the (cropped) result is resized bilinearly to (H, W) with
      ``align_corners``. Backbones whose strided convs round up (ResNet,
      MiT: h = ceil(H/s)) give s*h >= H, the extra rows and columns lying
      past the image's bottom / right edge, so the crop keeps every output
      pixel aligned with the finer level's pixel; rounding down gives
      s*h < H, and the resize covers the missing border.

    A size that is s or more pixels off s*h in either direction (levels
    that are not s times apart) raises ``ValueError``.
    """
    size = tuple(int(v) for v in size)
    if isinstance(upsampler, nn.Upsample):
        return resize(x, size=size, mode=upsampler.mode,
                      align_corners=upsampler.align_corners)
    low = tuple(x.shape[2:])
    for got, want in zip(low, size):
        if abs(got * scale_factor - want) >= scale_factor:
            raise ValueError(
                f'cannot upsample a {low} feature map {scale_factor}x to '
                f'{size}: the levels are not {scale_factor}x apart (expected '
                f'each target side within {scale_factor - 1} pixels of '
                f'{scale_factor} times the input side)')
    out = upsampler(x)
    out = out[..., :size[0], :size[1]]
    if tuple(out.shape[2:]) != size:
        out = resize(out, size=size, mode='bilinear',
                     align_corners=align_corners)
    return out
