"""CARAFE (Wang et al., ICCV 2019) on any device: mmcv ``CARAFEPack``'s
constructor, state-dict keys, initialisation and numerics, with the reassembly
done by :func:`dlu_mm.ops.reassemble` instead of mmcv's CUDA-only op."""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import normal_init, xavier_init
from mmengine.registry import MODELS
from torch import Tensor

from ..ops import reassemble
from .dlu import normalise_kernels
from .upsampler_args import check_input, check_upsampler_args


@MODELS.register_module(name='carafe_portable')
class CARAFEPortable(nn.Module):
    """Content-Aware ReAssembly of FEatures.

    1. ``channel_compressor``: 1x1 conv, C -> C_m.
    2. ``content_encoder``: k_enc x k_enc conv (dilation d),
       C_m -> G*s^2*k_up^2, pixel-shuffled to (G*k_up^2, sH, sW) and
       softmax-normalised over each group's k_up^2 values.
    3. Reassembly with those kernels (:func:`dlu_mm.ops.reassemble`).

    Parameters: (C*C_m + C_m) + (k_enc^2*C_m*G*s^2*k_up^2 + G*s^2*k_up^2).
    Shapes: input (N, C, H, W) -> output (N, C, sH, sW).
    """

    def __init__(self,
                 channels: int,
                 scale_factor: int,
                 up_kernel: int = 5,
                 up_group: int = 1,
                 encoder_kernel: int = 3,
                 encoder_dilation: int = 1,
                 compressed_channels: int = 64):
        super().__init__()
        check_upsampler_args(channels, scale_factor, up_kernel, up_group,
                             encoder_kernel, encoder_dilation,
                             compressed_channels)
        self.channels = channels
        self.scale_factor = scale_factor
        self.up_kernel = up_kernel
        self.up_group = up_group
        self.encoder_kernel = encoder_kernel
        self.encoder_dilation = encoder_dilation
        self.compressed_channels = compressed_channels
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            compressed_channels,
            up_kernel * up_kernel * up_group * scale_factor * scale_factor,
            encoder_kernel,
            padding=(encoder_kernel - 1) * encoder_dilation // 2,
            dilation=encoder_dilation)
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m, distribution='uniform')
        normal_init(self.content_encoder, std=0.001)

    def predict_kernels(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> normalised kernels (N, G*k_up^2, sH, sW)."""
        check_input(x, self.channels, 'CARAFEPortable')
        kernels = self.content_encoder(self.channel_compressor(x))
        return normalise_kernels(F.pixel_shuffle(kernels, self.scale_factor),
                                 self.up_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return reassemble(x, self.predict_kernels(x), self.up_kernel,
                          self.up_group, self.scale_factor)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, scale_factor={self.scale_factor}'
                f', up_kernel={self.up_kernel}, up_group={self.up_group}')
