"""mmdet's FCN mask head with any registered upsample layer."""
from typing import Dict

import torch.nn as nn
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS
from mmengine.model import BaseModule

from ..layers.builder import build_upsampler, check_upsample_cfg

# The types FCNMaskHead builds itself (its own deconv has kernel = stride =
# scale_factor, which differs from the builder's FPN-style deconv).
_STOCK_TYPES = (None, 'deconv', 'nearest', 'bilinear', 'carafe')


@MODELS.register_module()
class FCNMaskHeadUpsample(FCNMaskHead):
    """:class:`mmdet.models.roi_heads.mask_heads.FCNMaskHead` whose
    ``upsample_cfg['type']`` may be any registered upsample layer.

    For FCNMaskHead's own types (None, ``'deconv'``, ``'nearest'``,
    ``'bilinear'``, ``'carafe'``) it is exactly FCNMaskHead (modules,
    state-dict keys, init, forward). Any other type registered as an upsample
    layer (``'dlu'``, ``'carafe_portable'``, ``'pixel_shuffle'``, a user's)
    is built by :func:`dlu_mm.layers.builder.build_upsampler` for the
    width C = ``conv_out_channels`` (``in_channels`` if ``num_convs=0``) and
    s = ``upsample_cfg['scale_factor']``, stored as ``upsample`` (as
    FCNMaskHead's), and followed by the 1x1 ``conv_logits``, C ->
    ``num_classes`` (1 if class-agnostic); such a layer keeps its own
    ``init_weights``.

    ``upsample_cfg['scale_factor']`` defaults to 2 (FCNMaskHead's default
    upsampler is ``dict(type='deconv', scale_factor=2)``) when left out.
    FCNMaskHead's own types take it as FCNMaskHead does (e.g. ``nearest``
    with 1.5, ``bilinear`` with 2.0); any other type needs a positive
    integer.
    For DLU, ``dict(type='dlu', scale_factor=2, up_kernel=5, up_group=1,
    encoder_kernel=3, encoder_dilation=1, compressed_channels=64)`` mirrors
    mmdet's CARAFE Mask R-CNN setting.

    Shapes: RoI features (R, in_channels, h, w), h = w = 14 in Mask R-CNN
    -> mask logits (R, num_classes, s*h, s*w).

    Raises:
        ValueError: at build time, for an unknown ``upsample_cfg['type']``
            (listing the registered upsample types), a ``scale_factor``
            that is not a positive integer for a type other than
            FCNMaskHead's own, or upsampler arguments that
            disagree with the head (e.g. ``channels``).
    """

    def __init__(self,
                 *args,
                 upsample_cfg: Dict = dict(type='deconv', scale_factor=2),
                 **kwargs) -> None:
        owner = 'FCNMaskHeadUpsample upsample_cfg'
        if not isinstance(upsample_cfg, dict) or 'type' not in upsample_cfg:
            raise ValueError(f"{owner} must be a dict with a 'type' key (type"
                             f" None for no upsampling), got {upsample_cfg!r}")
        cfg = dict(upsample_cfg)
        if cfg['type'] is not None:
            cfg.setdefault('scale_factor', 2)
        if cfg['type'] in _STOCK_TYPES:  # FCNMaskHead's own (any scale)
            super().__init__(*args, upsample_cfg=cfg, **kwargs)
            return
        check_upsample_cfg(cfg, owner)  # unknown type: lists accepted ones
        scale = cfg.pop('scale_factor')
        if not (isinstance(scale, int) and not isinstance(scale, bool)
                and scale > 0):
            raise ValueError(f"{owner}['scale_factor'] must be a positive "
                             f"integer for type {cfg['type']!r}, got "
                             f'{scale!r}')
        # FCNMaskHead builds convs and conv_logits (C -> classes, as for every
        # non-deconv type); a parameter-free nearest upsampler holds the
        # place of the configured one.
        super().__init__(
            *args, upsample_cfg=dict(type='nearest', scale_factor=scale),
            **kwargs)
        self.upsample_cfg = cfg
        self.upsample_method = cfg['type']
        channels = (self.conv_out_channels
                    if self.num_convs > 0 else self.in_channels)
        self.upsample = build_upsampler(cfg, channels, scale, owner=owner)

    def init_weights(self) -> None:
        """FCNMaskHead's init, generalised: where it re-runs CARAFEPack's own
        ``init_weights`` on ``upsample``, any upsampler that has one re-runs
        it (the stock types get exactly FCNMaskHead's init)."""
        BaseModule.init_weights(self)  # FCNMaskHead's super().init_weights()
        for m in [self.upsample, self.conv_logits]:
            if m is None:
                continue
            elif m is self.upsample and callable(
                    getattr(m, 'init_weights', None)):
                m.init_weights()
            elif hasattr(m, 'weight') and hasattr(m, 'bias'):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu')
                nn.init.constant_(m.bias, 0)
