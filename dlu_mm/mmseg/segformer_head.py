"""SegFormer's all-MLP decode head with its per-level upsampling done by any
registered upsample layer (DLU, CARAFE, bilinear, ...)."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmseg.models.decode_heads import SegformerHead
from mmseg.registry import MODELS
from torch import Tensor

from .upsample_to import build_head_upsamplers, head_upsample_cfg, upsample_to


@MODELS.register_module()
class SegformerHeadUpsample(SegformerHead):
    """mmseg's ``SegformerHead`` whose per-level upsampling takes an
    ``upsample_cfg``.

    With L = ``len(in_channels)`` levels (strides 4, 8, 16, 32 for L = 4) and
    C = ``channels``: each level's 1x1 conv (``convs[i]``) gives (N, C, H_i,
    W_i); level 0 (the 1/4 scale) is used as is, and level i >= 1 is brought
    to (H_0, W_0) by ``level_upsamplers[i - 1]``, a layer built from
    ``upsample_cfg`` for C channels and s = 2^i (2, 4, 8). The L maps are
    then concatenated and fused by ``fusion_conv`` as in ``SegformerHead``.
    Every stock module keeps its state-dict key, so a stock SegformerHead
    checkpoint loads with only the upsamplers' keys missing (none for
    ``bilinear``).

    Args:
        upsample_cfg (dict, optional): any registered upsample type and its
            arguments (``channels`` / ``scale_factor`` are filled in per
            level). For ``bilinear`` the head's ``align_corners`` is used.
            An unknown type raises ``ValueError`` listing the registered
            types. ``None`` (default): ``SegformerHead``'s own resize with
            ``interpolate_mode`` -- the head then computes exactly what
            ``SegformerHead`` computes, for every mode it accepts
            (``'bilinear'``, ``'bicubic'``, ``'nearest'``, ...).
        interpolate_mode (str): ``SegformerHead``'s argument: the resize
            mode when ``upsample_cfg`` is None; when ``upsample_cfg`` is an
            interpolation (``bilinear`` / ``nearest``) the two must name
            the same mode (else ``ValueError``).
        **kwargs: as ``BaseDecodeHead``.

    Sizes that are not exact multiples: see
    :func:`dlu_mm.mmseg.upsample_to.upsample_to` (learned upsamplers crop
    the bottom / right excess, or resize bilinearly if short; ``bilinear``
    resizes straight to the target size as mmseg).

    Shapes: inputs, L maps (N, in_channels[i], H_i, W_i) -> logits
    (N, num_classes, H_0, W_0).
    """

    def __init__(self,
                 interpolate_mode: str = 'bilinear',
                 upsample_cfg: Optional[Dict] = None,
                 **kwargs):
        if upsample_cfg is not None:
            upsample_cfg = head_upsample_cfg(
                upsample_cfg, kwargs.get('align_corners', False))
        if upsample_cfg is not None and \
                upsample_cfg['type'] in ('bilinear', 'nearest') and \
                upsample_cfg['type'] != interpolate_mode:
            raise ValueError(
                f"upsample_cfg['type']={upsample_cfg['type']!r} does not "
                f'match interpolate_mode={interpolate_mode!r}; set both to '
                f'the same '
                f'mode (or leave interpolate_mode at its default)')
        super().__init__(interpolate_mode=interpolate_mode, **kwargs)
        self.upsample_cfg = upsample_cfg
        scales = [2**i for i in range(1, len(self.in_channels))]
        if upsample_cfg is None:  # SegformerHead's resize (no parameters)
            self.level_upsamplers = nn.ModuleList(
                nn.Upsample(scale_factor=s, mode=interpolate_mode,
                            align_corners=self.align_corners)
                for s in scales)
        else:
            self.level_upsamplers = build_head_upsamplers(
                upsample_cfg, self.channels, scales)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """L maps (1/4, 1/8, 1/16, 1/32) -> (N, num_classes, H_0, W_0)."""
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        outs = [self.convs[0](inputs[0])]
        for i in range(1, len(inputs)):
            outs.append(
                upsample_to(self.level_upsamplers[i - 1],
                            self.convs[i](inputs[i]), size, 2**i,
                            self.align_corners))
        out = self.fusion_conv(torch.cat(outs, dim=1))
        return self.cls_seg(out)
