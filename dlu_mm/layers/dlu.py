"""DLU: Dynamic Lightweight Upsampling (Fu et al., ICPR 2024). Torch only."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops import dlu_reassemble
from .upsampler_base import (KernelPrediction, ReassemblyUpsampler,
                             check_input, normal_init, normalise_kernels,
                             xavier_uniform_init)


class DLU(ReassemblyUpsampler):
    """Dynamic Lightweight Upsampling, a drop-in for mmcv's ``CARAFEPack``.

    Symbols: C = ``channels``, s = ``scale_factor``, k_up = ``up_kernel``,
    G = ``up_group``, k_enc = ``encoder_kernel``, d = ``encoder_dilation``,
    C_m = ``compressed_channels``.

    1. ``channel_compressor``: 1x1 conv, C -> C_m.
    2. ``kernel_space_generator``: k_enc x k_enc conv (dilation d),
       C_m -> G*k_up^2, at the input resolution, softmax over each group's
       k_up^2 values (the kernel space).
    3. ``conv_offset``: k_enc x k_enc conv, C_m -> G*2*s^2, zero-initialised
       (the guidance offsets; pixel-shuffled, channel 2g is group g's column
       offset, 2g+1 its row offset).
    4. + 5. For output pixel (i, j) and group g the kernel is the kernel
       space of group g sampled bilinearly at (i//s + o_y, j//s + o_x)
       (border-clamped), and it reassembles the input as CARAFE does:

           Y[c, i, j] = sum_{dy, dx < k_up} K_g(i, j)[dy*k_up + dx]
                        * X[c, i//s + dy - r, j//s + dx - r]

       Both steps run as one fused op (:func:`dlu_mm.ops.dlu_reassemble`),
       which never writes the (N, G*k_up^2, sH, sW) kernels to memory.

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
                xavier_uniform_init(m)
        normal_init(self.kernel_space_generator, std=0.001)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def predict_kernels(self, x: Tensor) -> KernelPrediction:
        """The kernel space (N, G*k_up^2, H, W) and the offsets
        (N, G*2*s^2, H, W); ``kernels`` is None (never materialised; see
        :meth:`KernelPrediction.per_pixel_kernels`)."""
        check_input(x, self.channels, 'DLU')
        compressed = self.channel_compressor(x)
        # Both encoders read the same map with the same kernel, dilation
        # and padding: one convolution with their weights stacked (one pass
        # over the input, and 33 output channels instead of 25 + 8 make
        # better use of the vector units).
        generator, offset_conv = self.kernel_space_generator, self.conv_offset
        both = F.conv2d(compressed,
                        torch.cat((generator.weight, offset_conv.weight)),
                        torch.cat((generator.bias, offset_conv.bias)),
                        padding=generator.padding,
                        dilation=generator.dilation)
        space_logits, offsets = both.split(
            (generator.out_channels, offset_conv.out_channels), dim=1)
        return KernelPrediction(
            None, normalise_kernels(space_logits, self.up_kernel), offsets)

    def reassemble(self, x: Tensor, prediction: KernelPrediction) -> Tensor:
        return dlu_reassemble(x, prediction.kernel_space, prediction.offsets,
                              self.up_kernel, self.up_group,
                              self.scale_factor)
