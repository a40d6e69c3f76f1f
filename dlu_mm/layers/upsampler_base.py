"""What DLU and portable CARAFE share: build-time checks of
``CARAFEPack``'s constructor arguments and of the forward input (messages
name the argument, its value and what is accepted), the kernel normaliser,
the one return type of ``predict_kernels`` (:class:`KernelPrediction`), the
reference code's initialisation helpers, and the base class that stores the
arguments and builds the common layers. Torch only."""
from typing import NamedTuple, Optional

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops import sample_kernel_space
from ..ops.checks import is_int


def check_upsampler_args(channels, scale_factor, up_kernel, up_group,
                         encoder_kernel, encoder_dilation,
                         compressed_channels) -> None:
    """Raise ``ValueError`` for the first argument that is out of range."""
    positive = dict(channels=channels, up_group=up_group,
                    encoder_dilation=encoder_dilation,
                    compressed_channels=compressed_channels)
    for name, value in positive.items():
        if not is_int(value) or value < 1:
            raise ValueError(f'{name} must be a positive integer, '
                             f'got {value!r}')
    if not is_int(scale_factor) or scale_factor < 1:
        raise ValueError(f'scale_factor must be an integer >= 1 '
                         f'(e.g. 2 for 2x upsampling), got {scale_factor!r}')
    for name, value in dict(up_kernel=up_kernel,
                            encoder_kernel=encoder_kernel).items():
        if not is_int(value) or value < 1 or value % 2 == 0:
            raise ValueError(f'{name} must be a positive odd integer '
                             f'(1, 3, 5, ...), got {value!r}')


def normalise_kernels(kernels: Tensor, up_kernel: int) -> Tensor:
    """Softmax over each group's k_up^2 values: (N, G*k_up^2, H, W) -> same
    (CARAFE's kernel normaliser, DLU's kernel space normaliser)."""
    n, c, h, w = kernels.shape
    kernels = kernels.reshape(n, c // up_kernel**2, up_kernel**2, h, w)
    return F.softmax(kernels, dim=2).reshape(n, c, h, w)


def xavier_uniform_init(conv: nn.Conv2d) -> None:
    """Xavier-uniform weights (gain 1), zero bias (mmengine's
    ``xavier_init(m, distribution='uniform')``)."""
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)


def normal_init(conv: nn.Conv2d, std: float) -> None:
    """N(0, std^2) weights, zero bias (mmengine's ``normal_init``)."""
    nn.init.normal_(conv.weight, 0.0, std)
    nn.init.zeros_(conv.bias)


class KernelPrediction(NamedTuple):
    """What a reassembly upsampler predicts from its input (the return type
    of ``predict_kernels`` on every layer). Shapes for an input (N, C, H, W),
    scale s, k = k_up, G = up_group:

    * ``kernels``: (N, G*k^2, sH, sW), one normalised kernel per output
      pixel and group -- CARAFE predicts these directly; ``None`` for DLU,
      whose forward never materialises them (see :meth:`per_pixel_kernels`).
    * ``kernel_space``: (N, G*k^2, H, W), DLU's normalised kernel space;
      ``None`` for CARAFE.
    * ``offsets``: (N, G*2*s^2, H, W), DLU's guidance offsets in input
      pixels (before the pixel shuffle); ``None`` for CARAFE.
    """
    kernels: Optional[Tensor]
    kernel_space: Optional[Tensor] = None
    offsets: Optional[Tensor] = None

    def per_pixel_kernels(self, scale_factor: int) -> Tensor:
        """(N, G*k^2, sH, sW) normalised kernels of every output pixel: the
        predicted ones, or DLU's kernel space sampled at its offsets
        (materialised here, for analysis; DLU's forward fuses this step)."""
        if self.kernels is not None:
            return self.kernels
        return sample_kernel_space(self.kernel_space, self.offsets,
                                   scale_factor)


def check_input(x, channels: int, layer: str) -> None:
    """Check a forward input: 4-D (N, C, H, W) with C == channels."""
    if x.dim() != 4:
        raise ValueError(f'{layer} expects a 4-D input (N, C, H, W), got a '
                         f'{x.dim()}-D tensor of shape {tuple(x.shape)}')
    if x.shape[1] != channels:
        raise ValueError(f'{layer} was built with channels={channels} but '
                         f'got an input with {x.shape[1]} channels (shape '
                         f'{tuple(x.shape)})')


class ReassemblyUpsampler(nn.Module):
    """Base of the layers with ``CARAFEPack``'s constructor: checks and
    stores ``channels, scale_factor, up_kernel, up_group, encoder_kernel,
    encoder_dilation, compressed_channels``, builds ``channel_compressor``
    (1x1 conv, C -> C_m), then calls the subclass's ``build_layers()`` and
    ``init_weights()``.

    ``up_group`` need not divide ``channels``: as in mmcv's CARAFE, each
    group holds ceil(C / G) consecutive channels (the last groups fewer, or
    none)."""

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
        self.build_layers()
        self.init_weights()

    def encoder_conv(self, out_channels: int) -> nn.Conv2d:
        """k_enc x k_enc conv (dilation d), C_m -> ``out_channels``, padded
        to keep the input resolution."""
        return nn.Conv2d(
            self.compressed_channels, out_channels, self.encoder_kernel,
            padding=(self.encoder_kernel - 1) * self.encoder_dilation // 2,
            dilation=self.encoder_dilation)

    def build_layers(self) -> None:
        """The layer's own convolutions (after ``channel_compressor``)."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """The reference code's initialisation of every convolution."""
        raise NotImplementedError

    def predict_kernels(self, x: Tensor) -> KernelPrediction:
        """What the layer predicts from ``x`` (N, C, H, W) before the
        reassembly; see :class:`KernelPrediction`."""
        raise NotImplementedError

    def reassemble(self, x: Tensor, prediction: KernelPrediction) -> Tensor:
        """The output (N, C, sH, sW) from the input and its prediction."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, sH, sW)."""
        return self.reassemble(x, self.predict_kernels(x))

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, scale_factor={self.scale_factor}'
                f', up_kernel={self.up_kernel}, up_group={self.up_group}')
