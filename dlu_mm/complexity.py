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


def interpolation_macs(spec: UpsamplerSpec, mode: str) -> int:
    """Fixed interpolation by s, per input pixel, in the convention of
    fvcore / ``mmengine.analysis`` (which count one op per output value of a
    nearest resize, a copy with no arithmetic, and 4 MACs per output value of
    a bilinear one): nearest s^2*C, bilinear 4*s^2*C. No parameters."""
    per_value = {'nearest': 1, 'bilinear': 4}
    if mode not in per_value:
        raise ValueError(f'interpolation mode must be one of '
                         f'{sorted(per_value)}, got {mode!r}')
    return per_value[mode] * spec.scale_factor**2 * spec.channels


def dysample_params(spec: UpsamplerSpec, groups: int = 4) -> int:
    """DySample (Liu et al., ICCV 2023; "lp" style, static scope, the
    paper's default), a point-sampling baseline: one 1x1 offset conv
    C -> 2*G_d*s^2, so C*2*G_d*s^2 + 2*G_d*s^2 (G_d = ``groups``, default 4;
    ``spec.up_kernel``, ``up_group``, ``encoder_kernel`` and
    ``compressed_channels`` do not apply)."""
    out = 2 * groups * spec.scale_factor**2
    return _conv_params(spec.channels, out, 1)


def dysample_macs(spec: UpsamplerSpec, groups: int = 4) -> int:
    """DySample ("lp", static scope) MACs per input pixel: the offset conv
    C*2*G_d*s^2 plus bilinear sampling of the C-channel input at s^2 points,
    4*s^2*C (the offset scaling/adding, elementwise, is not counted)."""
    s = spec.scale_factor
    return spec.channels * 2 * groups * s * s + 4 * s * s * spec.channels
