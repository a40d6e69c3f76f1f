"""FPN whose top-down upsamplers are any registered upsample layer."""
from typing import Dict, List, Optional, Sequence

from mmcv.cnn.bricks.upsample import PixelShufflePack
from mmcv.ops.carafe import CARAFEPack
from mmdet.models.necks import FPN_CARAFE
from mmdet.registry import MODELS

from ..layers.builder import build_upsampler, check_upsample_cfg

# Upsamplers whose own initialisation FPN_CARAFE.init_weights already leaves
# in place: it re-runs CARAFEPack.init_weights itself, and PixelShufflePack's
# own init is the very xavier-uniform pass the neck applies to every conv.
_INIT_KEPT_BY_FPN_CARAFE = (CARAFEPack, PixelShufflePack)


def _check_int_list(name: str, value) -> None:
    if not (isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in value)):
        raise ValueError(f'FPN_Upsample {name} must be a non-empty list of '
                         f'positive ints (one width per backbone level, e.g. '
                         f'[256, 512, 1024, 2048]), got {value!r}')


@MODELS.register_module()
class FPN_Upsample(FPN_CARAFE):
    """mmdet's ``FPN_CARAFE`` with any registered upsample layer.

    Same arguments, topology, forward, state-dict keys and initialisation as
    :class:`mmdet.models.necks.FPN_CARAFE`; ``upsample_cfg['type']`` may be
    any of :func:`dlu_mm.layers.builder.registered_upsample_types`
    (``'dlu'``, ``'carafe'`` (mmcv, CUDA only), ``'carafe_portable'``,
    ``'nearest'``, ``'bilinear'``, ``'deconv'``, ``'pixel_shuffle'``, or a
    layer a user registered in mmengine's ``MODELS``).

    Topology (L = ``len(in_channels)``, C = ``out_channels``, for the
    default ``start_level=0, end_level=-1, num_outs=L+1``):

    * lateral 1x1 convs ``lateral_convs[i]``: C_i -> C on input i, plus one
      extra lateral, a 3x3 stride-2 conv on the last input (P6 input);
    * top-down: ``laterals[i-1] += upsample_modules[i-1](laterals[i])`` for
      i = L .. 1, each upsampler 2x on C channels (so L upsamplers, the
      first of them bringing P6 into P5); where a level has an odd size the
      upsampled map is cropped to the finer level before the add;
    * 3x3 output convs ``fpn_convs[i]``.

    The upsamplers are built with :func:`dlu_mm.layers.builder.
    build_upsampler`, which fills their per-type arguments (``channels`` = C,
    ``scale_factor`` = 2, deconv/pixel-shuffle kernels from
    ``upsample_kernel``) as FPN_CARAFE does for its own types. One
    deliberate difference: FPN_CARAFE's deconv (``output_padding = (k-1)//2``)
    works only for ``upsample_kernel=3`` (mmdet's value, where the two necks
    are identical): k=1 comes out one pixel short and k>=5 is rejected by
    PyTorch, whereas the builder's output padding makes every k exactly 2x
    (for k=1 the two agree on every pixel FPN_CARAFE keeps).
    As FPN_CARAFE, ``nearest`` / ``bilinear`` upsamplers always get
    ``align_corners`` None / False, whatever ``upsample_cfg`` says. A
    ``channels`` or ``scale_factor`` in ``upsample_cfg`` that disagrees
    with the neck (which FPN_CARAFE silently overrides) is an error.

    DLU as in the paper (mmdet's CARAFE setting with DLU swapped in):
    ``upsample_cfg=dict(type='dlu', up_kernel=5, up_group=1,
    encoder_kernel=3, encoder_dilation=1, compressed_channels=64)``, i.e.
    k_up = 5, G = 1, k_enc = 3, d = 1, C_m = 64, s = 2, C = 256.

    Initialisation: FPN_CARAFE's (ConvModule init, xavier-uniform on every
    conv, CARAFEPack re-initialised), after which every other upsampler that
    has an ``init_weights`` (DLU: kernel space generator N(0, 0.001^2),
    zero ``conv_offset``; ``carafe_portable``; a user's layer) re-runs it,
    so the upsampler's own initialisation wins over the neck's xavier pass
    (PixelShufflePack's own init *is* that xavier pass; it is left as is,
    so every FPN_CARAFE type gets FPN_CARAFE's init draw for draw).

    Args:
        in_channels (list[int]): widths C_i of the backbone levels.
        out_channels (int): width C of every pyramid level.
        num_outs (int): number of pyramid levels returned.
        start_level, end_level, norm_cfg, act_cfg, order: as FPN_CARAFE.
        upsample_cfg (dict): ``type`` plus that layer's own arguments;
            ``channels``/``scale_factor`` are filled in.
        init_cfg: must be None (as FPN_CARAFE).

    Shapes: inputs ``[(N, C_i, H_i, W_i)]`` with H_i = ceil(H_{i-1} / 2)
    -> ``num_outs`` maps ``(N, C, H_j, W_j)``, the extra level(s) at
    ceil(H_{L-1} / 2), ...

    Raises:
        ValueError: at build time, for an unknown ``upsample_cfg['type']``
            (listing the registered upsample types), a malformed
            ``in_channels``, or upsampler arguments that disagree with the
            neck (e.g. ``channels`` != ``out_channels``).
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 norm_cfg: Optional[Dict] = None,
                 act_cfg: Optional[Dict] = None,
                 order: Sequence[str] = ('conv', 'norm', 'act'),
                 upsample_cfg: Dict = dict(
                     type='carafe',
                     up_kernel=5,
                     up_group=1,
                     encoder_kernel=3,
                     encoder_dilation=1),
                 init_cfg=None):
        owner = 'FPN_Upsample upsample_cfg'
        check_upsample_cfg(upsample_cfg, owner)
        _check_int_list('in_channels', in_channels)
        # FPN_CARAFE builds the topology; nearest upsamplers (no parameters)
        # hold the places that the configured upsamplers then take.
        super().__init__(
            in_channels, out_channels, num_outs, start_level=start_level,
            end_level=end_level, norm_cfg=norm_cfg, act_cfg=act_cfg,
            order=order, upsample_cfg=dict(type='nearest'),
            init_cfg=init_cfg)
        self.upsample_cfg = dict(upsample_cfg)
        self.upsample = self.upsample_cfg['type']
        if self.upsample in ('nearest', 'bilinear'):
            # FPN_CARAFE's own choice, whatever the config says
            self.upsample_cfg['align_corners'] = (
                None if self.upsample == 'nearest' else False)
        for i in range(len(self.upsample_modules)):
            self.upsample_modules[i] = build_upsampler(
                self.upsample_cfg, out_channels, 2, owner=owner)

    def init_weights(self) -> None:
        """FPN_CARAFE's init, then each upsampler's own ``init_weights``
        where FPN_CARAFE's xavier pass overwrote it."""
        super().init_weights()
        for m in self.upsample_modules:
            if (callable(getattr(m, 'init_weights', None))
                    and not isinstance(m, _INIT_KEPT_BY_FPN_CARAFE)):
                m.init_weights()
