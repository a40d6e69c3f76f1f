"""Parameter and multiply-accumulate (MAC) counts of one upsampler: the one
place these formulas live (the analysis tool, README tables and tests use it).

Symbols: C channels, s scale factor, k = k_up reassembly kernel, k_e encoder
kernel, C_m compressed channels, G groups. Counts are per input pixel for MACs
(multiply by N*H*W for a feature map); FLOPs in upsampler papers are MACs.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class UpsamplerSpec:
    channels: int = 256
    scale_factor: int = 2
    up_kernel: int = 5
    up_group: int = 1
    encoder_kernel: int = 3
    compressed_channels: int = 64


def _conv_params(c_in: int, c_out: int, kernel: int) -> int:
    return kernel * kernel * c_in * c_out + c_out


def dlu_params(spec: UpsamplerSpec) -> int:
    """(C*C_m + C_m) + (k_e^2*C_m*G*k^2 + G*k^2) + (k_e^2*C_m*G*2*s^2 + G*2*s^2)."""
    c, cm, ke = spec.channels, spec.compressed_channels, spec.encoder_kernel
    g, k, s = spec.up_group, spec.up_kernel, spec.scale_factor
    return (_conv_params(c, cm, 1) + _conv_params(cm, g * k * k, ke) +
            _conv_params(cm, g * 2 * s * s, ke))


def carafe_params(spec: UpsamplerSpec) -> int:
    """(C*C_m + C_m) + (k_e^2*C_m*G*s^2*k^2 + G*s^2*k^2)."""
    c, cm, ke = spec.channels, spec.compressed_channels, spec.encoder_kernel
    g, k, s = spec.up_group, spec.up_kernel, spec.scale_factor
    return _conv_params(c, cm, 1) + _conv_params(cm, g * s * s * k * k, ke)


def reassembly_macs(spec: UpsamplerSpec) -> int:
    """s^2 * k^2 * C MACs per input pixel (each output value is a k*k dot)."""
    return spec.scale_factor**2 * spec.up_kernel**2 * spec.channels


def kernel_sampling_macs(spec: UpsamplerSpec) -> int:
    """DLU's bilinear sampling of the kernel space: 4 MACs per sampled value,
    s^2 * G * k^2 values per input pixel. The paper's table leaves it out."""
    return 4 * spec.scale_factor**2 * spec.up_group * spec.up_kernel**2


def dlu_macs(spec: UpsamplerSpec, with_sampling: bool = False) -> int:
    """MACs per input pixel: C*C_m + k_e^2*C_m*(G*k^2 + G*2*s^2)
    + s^2*k^2*C (+ the bilinear sampling when ``with_sampling``)."""
    c, cm, ke = spec.channels, spec.compressed_channels, spec.encoder_kernel
    g, k, s = spec.up_group, spec.up_kernel, spec.scale_factor
    macs = c * cm + ke * ke * cm * (g * k * k + g * 2 * s * s) + \
        reassembly_macs(spec)
    return macs + (kernel_sampling_macs(spec) if with_sampling else 0)


def carafe_macs(spec: UpsamplerSpec) -> int:
    """MACs per input pixel: C*C_m + k_e^2*C_m*G*s^2*k^2 + s^2*k^2*C."""
    c, cm, ke = spec.channels, spec.compressed_channels, spec.encoder_kernel
    g, k, s = spec.up_group, spec.up_kernel, spec.scale_factor
    return c * cm + ke * ke * cm * g * s * s * k * k + reassembly_macs(spec)
