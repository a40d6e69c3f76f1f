"""UperNet's decode head with its feature upsampling done by any registered
upsample layer (DLU, CARAFE, bilinear, ...)."""
from typing import Dict, List

import torch
from mmseg.models.decode_heads import UPerHead
from mmseg.registry import MODELS
from torch import Tensor

from .upsample_to import build_head_upsamplers, head_upsample_cfg, upsample_to


@MODELS.register_module()
class UPerHeadUpsample(UPerHead):
    """mmseg's ``UPerHead`` whose FPN and fusion upsampling take an
    ``upsample_cfg``, where CARAFE's paper put its upsampler in UperNet.

    With L = ``len(in_channels)`` levels (strides 4, 8, 16, 32 for L = 4) and
    C = ``channels``, the head upsamples in 2 * (L - 1) places, each a layer
    built from ``upsample_cfg`` for C channels:

    * ``lateral_upsamplers[j]`` (s = 2), j = 0..L-2: the FPN top-down path,
      lateral j+1 (N, C, h, w) -> the size of lateral j, added to it;
    * ``fusion_upsamplers[j]`` (s = 2^(j+1): 2, 4, 8), j = 0..L-2: FPN output
      j+1 -> the 1/4 scale of output 0, before the concatenation and
      ``fpn_bottleneck``.

    The PPM's pooled-feature resizing and the final resize of the logits to
    the image size (in the segmentor) stay bilinear. Every other module, and
    its state-dict key, is ``UPerHead``'s, so a stock UPerHead checkpoint
    loads with only the upsamplers' keys missing (none for ``bilinear``).

    Args:
        upsample_cfg (dict): any registered upsample type and its arguments,
            e.g. ``dict(type='dlu', up_kernel=5, compressed_channels=64)``;
            ``channels`` / ``scale_factor`` are filled in per place. For
            ``bilinear`` the head's ``align_corners`` is used, and the head
            then computes exactly what ``UPerHead`` computes. An unknown type
            raises ``ValueError`` listing the registered types.
        pool_scales, **kwargs: as ``UPerHead`` / ``BaseDecodeHead``.

    Sizes that are not exact multiples (e.g. an odd 1/32 map): see
    :func:`dlu_mm.mmseg.upsample_to.upsample_to` -- learned upsamplers
    upsample by s, then crop the bottom / right excess (or resize bilinearly
    if short); ``bilinear`` resizes straight to the target size as mmseg.

    Shapes: inputs, L maps (N, in_channels[i], H_i, W_i) -> logits
    (N, num_classes, H_0, W_0).
    """

    def __init__(self,
                 pool_scales=(1, 2, 3, 6),
                 upsample_cfg: Dict = dict(type='bilinear'),
                 **kwargs):
        upsample_cfg = head_upsample_cfg(
            upsample_cfg, kwargs.get('align_corners', False))
        super().__init__(pool_scales=pool_scales, **kwargs)
        self.upsample_cfg = upsample_cfg
        steps = range(1, len(self.in_channels))
        self.lateral_upsamplers = build_head_upsamplers(
            upsample_cfg, self.channels, [2 for _ in steps])
        self.fusion_upsamplers = build_head_upsamplers(
            upsample_cfg, self.channels, [2**i for i in steps])

    def _forward_feature(self, inputs: List[Tensor]) -> Tensor:
        """``UPerHead._forward_feature`` with ``resize`` replaced by the
        upsamplers: L maps -> (N, C, H_0, W_0) before ``cls_seg``."""
        inputs = self._transform_inputs(inputs)
        laterals = [
            lateral_conv(inputs[i])
            for i, lateral_conv in enumerate(self.lateral_convs)
        ]
        laterals.append(self.psp_forward(inputs))

        # top-down path: level i -> level i-1, 2x
        levels = len(laterals)
        for i in range(levels - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + upsample_to(
                self.lateral_upsamplers[i - 1], laterals[i],
                laterals[i - 1].shape[2:], 2, self.align_corners)

        fpn_outs = [self.fpn_convs[i](laterals[i]) for i in range(levels - 1)]
        fpn_outs.append(laterals[-1])

        # multi-level fusion: level i -> level 0, 2^i x
        for i in range(levels - 1, 0, -1):
            fpn_outs[i] = upsample_to(
                self.fusion_upsamplers[i - 1], fpn_outs[i],
                fpn_outs[0].shape[2:], 2**i, self.align_corners)
        return self.fpn_bottleneck(torch.cat(fpn_outs, dim=1))
