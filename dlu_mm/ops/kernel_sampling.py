"""DLU's kernel space expander: sample a low-resolution kernel space at
learned, offset positions to get one reassembly kernel per output pixel.

For output pixel (i, j) and group g the sampling point, in low-resolution
pixels, is

    (y, x) = (i // s + O[n, 2g+1, i, j],  j // s + O[n, 2g, i, j])

where O = pixel_shuffle(offsets, s) has shape (N, 2G, sH, sW) (channel 2g is
the column offset, 2g+1 the row offset). The kernel of group g at (i, j) is the
bilinear interpolation of the kernel space of group g at (y, x), clamped to
[0, H-1] x [0, W-1] (border padding). This is the reference code's
``grid_sample(align_corners=True, padding_mode='border')`` with three of its
defects fixed: every group uses its own offsets, H or W = 1 is allowed, and the
base grid is built on the input's device and dtype.

Determinism: ``grid_sample``'s CUDA backward accumulates with atomics, and
under ``torch.use_deterministic_algorithms(True)`` PyTorch refuses it. In
that mode, for CUDA tensors, the sampling is computed with four ``gather``s
instead (:func:`sample_bilinear_by_gather`), whose backward PyTorch runs
deterministically; the numbers (and gradients) are grid_sample's. On the
CPU grid_sample's backward is deterministic and is always used (on the
kernel space's channels as separate maps, which lets its backward use every
thread; see :func:`_grid_sample_per_channel`).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .backend import is_exporting


def _normalised_axis(size: int, scale_factor: int, offsets: Tensor) -> Tensor:
    """Pixel coordinate ``q + offset`` (q = output index // s) mapped to
    grid_sample's [-1, 1] with align_corners=True: -1 + 2 (q + o) / (size-1).
    For size 1 every coordinate lands on the single pixel.

    While the TorchScript-based ONNX exporter traces, ``size`` is a 0-dim
    tensor; the clamp is then recorded as a graph op (Python's ``max`` would
    freeze the branch taken at the export size into the graph)."""
    base = torch.arange(size * scale_factor, device=offsets.device,
                        dtype=offsets.dtype).div_(scale_factor,
                                                  rounding_mode='floor')
    if isinstance(size, Tensor):
        step = 2.0 / (size - 1).clamp(min=1)
    else:
        step = 2.0 / max(size - 1, 1)
    return (base + offsets) * step - 1.0


def _space_and_grid(kernel_space: Tensor, offsets: Tensor,
                    scale_factor: int) -> Tuple[Tensor, Tensor]:
    """The kernel space as (N*G, k*k, H, W) maps and grid_sample's grid
    (N*G, sH, sW, 2) of their sampling points."""
    n, gkk, h, w = kernel_space.shape
    s = scale_factor
    groups = offsets.shape[1] // (2 * s * s)
    if offsets.shape != (n, groups * 2 * s * s, h, w) or gkk % groups:
        raise ValueError(f'offsets must have shape (N, G*2*s*s, H, W) with G '
                         f'dividing the kernel space channels {gkk}; got '
                         f'offsets {tuple(offsets.shape)}, kernel space '
                         f'{tuple(kernel_space.shape)}, s={s}')
    off = F.pixel_shuffle(offsets, s).reshape(n * groups, 2, h * s, w * s)
    grid_x = _normalised_axis(w, s, off[:, 0])
    grid_y = _normalised_axis(h, s, off[:, 1].transpose(1, 2)).transpose(1, 2)
    grid = torch.stack((grid_x, grid_y), dim=-1)
    space = kernel_space.reshape(n * groups, gkk // groups, h, w)
    return space, grid.to(space.dtype)


def sample_kernel_space(kernel_space: Tensor, offsets: Tensor,
                        scale_factor: int) -> Tensor:
    """Expand a kernel space into per-output-pixel kernels.

    Args:
        kernel_space: (N, G*k*k, H, W), normalised over each group's k*k.
        offsets: (N, G*2*s*s, H, W), guidance offsets in low-res pixels.
        scale_factor: s.

    Returns:
        (N, G*k*k, sH, sW) kernels; each is a convex combination of
        normalised kernels, hence still normalised.
    """
    n, gkk, h, w = kernel_space.shape
    s = scale_factor
    space, grid = _space_and_grid(kernel_space, offsets, s)
    if space.is_cuda and torch.are_deterministic_algorithms_enabled():
        kernels = sample_bilinear_by_gather(space, grid)
    elif space.device.type == 'cpu' and not is_exporting():
        kernels = _grid_sample_per_channel(space, grid)
    else:
        kernels = F.grid_sample(space, grid, mode='bilinear',
                                padding_mode='border', align_corners=True)
    return kernels.reshape(n, gkk, h * s, w * s)


def sample_kernel_space_backward(grad_kernels: Tensor, kernel_space: Tensor,
                                 offsets: Tensor, scale_factor: int
                                 ) -> Tuple[Tensor, Tensor]:
    """Gradients of :func:`sample_kernel_space` with respect to the kernel
    space and the offsets, from the kernels' gradient (N, G*k*k, sH, sW),
    by grid_sample's own backward (no autograd needed, so it also runs
    inside a custom op's implementation)."""
    n, gkk, h, w = kernel_space.shape
    s = scale_factor
    space, grid = _space_and_grid(kernel_space, offsets, s)
    grad_space, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
        grad_kernels.reshape(*space.shape[:2], h * s, w * s).contiguous(),
        space, grid, 0, 1, True, [True, True])  # bilinear, border
    # grid = (q + o) * 2 / (size - 1) - 1 (see _normalised_axis)
    steps = grad_grid.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grad_off = (grad_grid * steps).permute(0, 3, 1, 2).reshape(
        n, -1, h * s, w * s)
    return (grad_space.reshape(kernel_space.shape),
            F.pixel_unshuffle(grad_off, s).to(offsets.dtype))


def _grid_sample_per_channel(space: Tensor, grid: Tensor) -> Tensor:
    """grid_sample of (B, K, H, W) as B*K one-channel maps sharing their
    group's grid: the same numbers, and on the CPU about 3x faster forward
    and backward for DLU's shapes (PyTorch's CPU backward runs one thread
    per sample in the batch, so B = N*G = 1 would leave all but one core
    idle; as B*K maps it spreads over all of them)."""
    b, k, h, w = space.shape
    out = F.grid_sample(
        space.reshape(b * k, 1, h, w),
        grid.unsqueeze(1).expand(b, k, *grid.shape[1:]).reshape(
            b * k, *grid.shape[1:]),
        mode='bilinear', padding_mode='border', align_corners=True)
    return out.reshape(b, k, *grid.shape[1:3])


def _unnormalise(coord: Tensor, size: int) -> Tensor:
    """grid_sample's align_corners=True coordinate -> pixels, clipped to
    [0, size-1] (border padding). As in grid_sample, the gradient is 0
    where it clips *and on the borders themselves*."""
    pixels = (coord + 1) * ((size - 1) / 2)
    inside = (pixels > 0) & (pixels < size - 1)
    return torch.where(inside, pixels, pixels.detach().clamp(0, size - 1))


def sample_bilinear_by_gather(space: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample(space, grid, 'bilinear', padding_mode='border',
    align_corners=True)`` from four ``gather``s, gradients included (as in
    grid_sample, a corner past the last row/column weighs 0, and the
    gradient with respect to a coordinate on or past a border is 0).

    Args:
        space: (B, K, H, W).
        grid: (B, Ho, Wo, 2), (x, y) in [-1, 1].

    Returns:
        (B, K, Ho, Wo).
    """
    b, k, h, w = space.shape
    ho, wo = grid.shape[1:3]
    x = _unnormalise(grid[..., 0], w)
    y = _unnormalise(grid[..., 1], h)
    x0, y0 = x.detach().floor(), y.detach().floor()
    wx, wy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    flat = space.reshape(b, k, h * w)
    out = 0
    for dy, fy in ((0, 1 - wy), (1, wy)):
        yi = y0 + dy
        for dx, fx in ((0, 1 - wx), (1, wx)):
            xi = x0 + dx
            inside = ((yi < h) & (xi < w)).to(space.dtype)
            index = (yi.clamp(max=h - 1) * w + xi.clamp(max=w - 1)).reshape(
                b, 1, ho * wo).expand(b, k, ho * wo)
            value = flat.gather(2, index).reshape(b, k, ho, wo)
            out = out + value * (fx * fy * inside).unsqueeze(1)
    return out
