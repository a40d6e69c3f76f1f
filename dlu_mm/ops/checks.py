"""Argument checks of the ops; messages name the op's own arguments, the bad
value and what is accepted."""
import torch
from torch import Tensor


def is_int(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_kernel_args(kernel_size, group_size, scale_factor) -> None:
    """``kernel_size`` odd >= 1, ``group_size`` >= 1, ``scale_factor`` >= 1
    (integers)."""
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be a positive odd integer '
                         f'(1, 3, 5, ...), got {kernel_size!r}')
    if not is_int(group_size) or group_size < 1:
        raise ValueError(f'group_size must be a positive integer, '
                         f'got {group_size!r}')
    if not is_int(scale_factor) or scale_factor < 1:
        raise ValueError(f'scale_factor must be an integer >= 1, '
                         f'got {scale_factor!r}')


def _check_4d(name: str, tensor: Tensor, layout: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got '
                        f'{type(tensor).__name__}')
    if tensor.dim() != 4:
        raise ValueError(f'{name} must be a 4-D tensor {layout}, got shape '
                         f'{tuple(tensor.shape)}')
    if not tensor.is_floating_point():
        raise ValueError(f'{name} must be a floating-point tensor, got '
                         f'{tensor.dtype}')


def _check_same_device(features: Tensor, name: str, other: Tensor) -> None:
    if other.device != features.device:
        raise ValueError(f'features ({features.device}) and {name} '
                         f'({other.device}) must be on the same device')


def check_reassemble_inputs(features: Tensor, masks: Tensor,
                            kernel_size: int, group_size: int,
                            scale_factor: int) -> None:
    """features (N, C, H, W); masks (N, G*k*k, sH, sW)."""
    check_kernel_args(kernel_size, group_size, scale_factor)
    _check_4d('features', features, '(N, C, H, W)')
    _check_4d('masks', masks, '(N, G*k*k, sH, sW)')
    n, _, h, w = features.shape
    expected = (n, group_size * kernel_size**2, h * scale_factor,
                w * scale_factor)
    if tuple(masks.shape) != expected:
        raise ValueError(
            f'masks must have shape (N, G*k*k, sH, sW) = {expected} for '
            f'features {tuple(features.shape)}, kernel_size={kernel_size}, '
            f'group_size={group_size}, scale_factor={scale_factor}; got '
            f'{tuple(masks.shape)}')
    _check_same_device(features, 'masks', masks)


def check_dlu_inputs(features: Tensor, kernel_space: Tensor, offsets: Tensor,
                     kernel_size: int, group_size: int,
                     scale_factor: int) -> None:
    """features (N, C, H, W); kernel_space (N, G*k*k, H, W); offsets
    (N, G*2*s*s, H, W)."""
    check_kernel_args(kernel_size, group_size, scale_factor)
    _check_4d('features', features, '(N, C, H, W)')
    _check_4d('kernel_space', kernel_space, '(N, G*k*k, H, W)')
    _check_4d('offsets', offsets, '(N, G*2*s*s, H, W)')
    n, _, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    for name, tensor, channels, formula in (
            ('kernel_space', kernel_space, g * k * k, 'G*k*k'),
            ('offsets', offsets, g * 2 * s * s, 'G*2*s*s')):
        expected = (n, channels, h, w)
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f'{name} must have shape (N, {formula}, H, W) = {expected} '
                f'for features {tuple(features.shape)}, kernel_size={k}, '
                f'group_size={g}, scale_factor={s}; got '
                f'{tuple(tensor.shape)}')
        _check_same_device(features, name, tensor)


def op_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype an op over ``tensors`` runs in (and returns): the widest of
    theirs, after autocast's cast where it is on for their device (float32
    inputs become autocast's dtype, float64 ones stay, as for a convolution:
    the kernels accumulate in float32 either way, so a float32 softmax output
    beside float16 features does not take the reassembly out of float16)."""
    dtypes = [t.dtype for t in tensors]
    device = tensors[0].device.type
    if torch.is_autocast_enabled(device):
        low = torch.get_autocast_dtype(device)
        dtypes = [d if d == torch.float64 else low for d in dtypes]
    dtype = dtypes[0]
    for other in dtypes[1:]:
        dtype = torch.promote_types(dtype, other)
    return dtype
