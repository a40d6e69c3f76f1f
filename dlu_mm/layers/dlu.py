"""DLU: Dynamic Lightweight Upsampling (Fu et al., ICPR 2024)."""
from typing import Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import normal_init, xavier_init
from mmengine.registry import MODELS
from torch import Tensor

from ..ops import reassemble, sample_kernel_space
from .upsampler_base import ReassemblyUpsampler, check_input


def normalise_kernels(kernels: Tensor, up_kernel: int) -> Tensor:
    """Softmax over each group's k*k values: (N, G*k*k, H, W) -> same."""
    n, c, h, w = kernels.shape
    kernels = kernels.view(n, c // up_kernel**2, up_kernel**2, h, w)
    return F.softmax(kernels, dim=2).view(n, c, h, w)


@MODELS.register_module(name='dlu')
class DLU(ReassemblyUpsampler):
    """Dynamic Lightweight Upsampling, a drop-in for mmcv's ``CARAFEPack``.

    Symbols: C = ``channels``, s = ``scale_factor``, k_up = ``up_kernel``,
    G = ``up_group``, k_enc = ``encoder_kernel``, d = ``encoder_dilation``,
    C_m = ``compressed_channels``.

    1. ``channel_compressor``: 1x1 conv, C -> C_m.
    2. ``kernel_space_generator``: k_enc x k_enc conv (dilation d),
       C_m -> G*k_up^2, at the input resolution, softmax over each group's
       k_up^2 values (the kernel space).
    3. ``conv_offset``: k_enc x k_enc conv, C_m -> G*2*s^2, zero-initialised;
       pixel-shuffled to (G*2, sH, sW) guidance offsets.
    4. The kernel space of group g is sampled bilinearly at
       (i//s + o_y, j//s + o_x) (:func:`dlu_mm.ops.sample_kernel_space`).
    5. The sampled kernels reassemble the input as CARAFE does
       (:func:`dlu_mm.ops.reassemble`).

    Parameters: (C*C_m + C_m) + (k_enc^2*C_m*G*k_up^2 + G*k_up^2)
    + (k_enc^2*C_m*G*2*s^2 + G*2*s^2).

    Shapes: input (N, C, H, W) -> output (N, C, sH, sW).
    """

    def build_layers(self) -> None:
        """The kernel space generator and the offset conv (the base class
        built ``channel_compressor``)."""
        k_up, groups, s = self.up_kernel, self.up_group, self.scale_factor
        self.kernel_space_generator = self.encoder_conv(groups * k_up * k_up)
        self.conv_offset = self.encoder_conv(groups * 2 * s * s)

    def init_weights(self) -> None:
        """As the reference code: Xavier-uniform, then the kernel space
        generator N(0, 0.001^2) and the offset conv zero."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m, distribution='uniform')
        normal_init(self.kernel_space_generator, std=0.001)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def predict_kernels(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (kernel_space (N, G*k^2, H, W), offsets (N, G*2*s^2, H, W),
        kernels (N, G*k^2, sH, sW))."""
        check_input(x, self.channels, 'DLU')
        compressed = self.channel_compressor(x)
        kernel_space = normalise_kernels(
            self.kernel_space_generator(compressed), self.up_kernel)
        offsets = self.conv_offset(compressed)
        kernels = sample_kernel_space(kernel_space, offsets,
                                      self.scale_factor)
        return kernel_space, offsets, kernels

    def forward(self, x: Tensor) -> Tensor:
        kernels = self.predict_kernels(x)[2]
        return reassemble(x, kernels, self.up_kernel, self.up_group,
                          self.scale_factor)
