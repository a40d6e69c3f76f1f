"""CARAFE (Wang et al., ICCV 2019) on any device: mmcv ``CARAFEPack``'s
constructor, state-dict keys, initialisation and numerics, with the reassembly
done by :func:`dlu_mm.ops.reassemble` instead of mmcv's CUDA-only op. Torch
only."""
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops import reassemble
from .upsampler_base import (KernelPrediction, ReassemblyUpsampler,
                             check_input, normal_init, normalise_kernels,
                             xavier_uniform_init)


class CARAFEPortable(ReassemblyUpsampler):
    """Content-Aware ReAssembly of FEatures.

    1. ``channel_compressor``: 1x1 conv, C -> C_m.
    2. ``content_encoder``: k_enc x k_enc conv (dilation d),
       C_m -> G*s^2*k_up^2, pixel-shuffled to (G*k_up^2, sH, sW) and
       softmax-normalised over each group's k_up^2 values.
    3. Reassembly with those kernels (:func:`dlu_mm.ops.reassemble`):
       Y[c, i, j] = sum_{dy, dx} K_g(i, j)[dy*k_up + dx]
       * X[c, i//s + dy - r, j//s + dx - r].

    Parameters: (C*C_m + C_m) + (k_enc^2*C_m*G*s^2*k_up^2 + G*s^2*k_up^2).
    Shapes: input (N, C, H, W) -> output (N, C, sH, sW).
    """

    def build_layers(self) -> None:
        """The content encoder (the base class built
        ``channel_compressor``)."""
        k_up, s = self.up_kernel, self.scale_factor
        self.content_encoder = self.encoder_conv(
            self.up_group * k_up * k_up * s * s)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_uniform_init(m)
        normal_init(self.content_encoder, std=0.001)

    def predict_kernels(self, x: Tensor) -> KernelPrediction:
        """Normalised kernels (N, G*k_up^2, sH, sW); no kernel space or
        offsets."""
        check_input(x, self.channels, 'CARAFEPortable')
        kernels = self.content_encoder(self.channel_compressor(x))
        return KernelPrediction(normalise_kernels(
            F.pixel_shuffle(kernels, self.scale_factor), self.up_kernel))

    def reassemble(self, x: Tensor, prediction: KernelPrediction) -> Tensor:
        return reassemble(x, prediction.kernels, self.up_kernel,
                          self.up_group, self.scale_factor)
