"""Statistics of what a learned upsampler predicted (an
:class:`~dlu_mm.analysis.upsampler_inspection.UpsamplerRecord`), and where
they fall relative to boundaries in the image. Torch only.

Symbols: input (N, C, H, W), scale s, kernel size k, groups G.

* Offsets (DLU): :func:`offset_field` pixel-shuffles the predicted
  (N, G*2*s^2, H, W) offsets to (N, G, 2, sH, sW), [x (column), y (row)]
  of each output pixel and group, in input-resolution pixels (channel 2g is
  group g's x offset, 2g+1 its y offset, as in :mod:`dlu_mm.ops.
  dlu_reassemble`); :func:`offset_magnitude` is their Euclidean length.
* Kernel entropy: H(K) = -sum_t K[t] log K[t] in nats over each kernel's
  k^2 weights; the uniform kernel has the maximum, log(k^2), a one-hot
  kernel 0. DLU: of its kernel space (N, G, H, W) and of the per-pixel
  kernels sampled from it (N, G, sH, sW); CARAFE: of its kernels. Also
  each kernel's largest weight and its tap (:func:`kernel_peaks`), and for
  DLU how far the offsets move each output pixel's kernel from its source
  pixel's (:func:`offset_kernel_change`).
* Boundaries: a bool map at the network input's resolution, from a label
  map (:func:`label_boundaries`) or the image (:func:`image_edges`),
  brought to a map's resolution by :func:`boundaries_at` (a pixel is on a
  boundary if any input pixel it covers is); a map's values are then
  averaged by their distance to the nearest boundary
  (:func:`boundary_contrast`).
"""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import sample_kernel_space

MAX_DISTANCE = 4
"""Distances to a boundary are told apart up to this many map pixels."""
EDGE_THRESHOLD = 0.1
"""Image edges: Sobel gradient magnitude of the grey image (intensities in
[0, 1], per pixel) at or above this."""


def offset_field(offsets: Tensor, scale_factor: int) -> Tensor:
    """(N, G*2*s^2, H, W) offsets -> (N, G, 2, sH, sW): [x, y] in input
    pixels for every output pixel and group."""
    n, c, h, w = offsets.shape
    s = scale_factor
    if c % (2 * s * s):
        raise ValueError(f'offsets must have G*2*s^2 channels for '
                         f'scale_factor={s}, got shape {tuple(offsets.shape)}')
    field = F.pixel_shuffle(offsets, s)
    return field.reshape(n, c // (2 * s * s), 2, h * s, w * s)


def mean_offset_by_subpixel(offsets: Tensor, scale_factor: int) -> Tensor:
    """(N, G*2*s^2, H, W) -> (s, s, 2): the mean [x, y] offset, in input
    pixels, of the output pixels at each position (i % s, j % s) within
    their source pixel, over all inputs, groups and source pixels (a
    shift that DLU learned for every output pixel at that position)."""
    field = offset_field(offsets, scale_factor)
    n, g, _, sh, sw = field.shape
    s = scale_factor
    field = field.reshape(n, g, 2, sh // s, s, sw // s, s)
    return field.mean(dim=(0, 1, 3, 5)).permute(1, 2, 0)


def offset_magnitude(offsets: Tensor, scale_factor: int) -> Tensor:
    """(N, G*2*s^2, H, W) -> (N, G, sH, sW): |offset| in input pixels."""
    return offset_field(offsets, scale_factor).norm(dim=2)


def kernel_entropy(kernels: Tensor, up_kernel: int) -> Tensor:
    """(N, G*k^2, h, w) normalised kernels -> (N, G, h, w) entropy in nats
    (0 log 0 = 0)."""
    n, c, h, w = kernels.shape
    kk = up_kernel * up_kernel
    if c % kk:
        raise ValueError(f'kernels must have G*k^2 channels for '
                         f'up_kernel={up_kernel}, got shape '
                         f'{tuple(kernels.shape)}')
    p = kernels.reshape(n, c // kk, kk, h, w)
    return -torch.special.xlogy(p, p).sum(dim=2)


def entropy_map(record) -> Tensor:
    """The entropy map a figure draws: DLU's kernel space (N, G, H, W),
    CARAFE's kernels (N, G, sH, sW)."""
    p = record.prediction
    kernels = p.kernel_space if p.kernel_space is not None else p.kernels
    return kernel_entropy(kernels, record.up_kernel)


def kernel_peaks(kernels: Tensor, up_kernel: int):
    """(N, G*k^2, h, w) kernels -> (largest weight, its tap t = dy*k + dx),
    each (N, G, h, w)."""
    n, c, h, w = kernels.shape
    kk = up_kernel * up_kernel
    return kernels.reshape(n, c // kk, kk, h, w).max(dim=2)


def offset_kernel_change(kernel_space: Tensor, offsets: Tensor,
                         scale_factor: int) -> Tensor:
    """DLU: how much the offsets change each output pixel's kernel, as the
    total variation distance 1/2 sum_t |K(i, j)[t] - S(i//s, j//s)[t]| in
    [0, 1] between the kernel sampled at the offset and the source pixel's
    own kernel (what zero offsets give): (N, G, sH, sW). 0 where the
    offsets do not matter (e.g. a kernel space that is the same
    everywhere)."""
    s = scale_factor
    n, c, h, w = kernel_space.shape
    groups = offsets.shape[1] // (2 * s * s)
    sampled = sample_kernel_space(kernel_space, offsets, s)
    own = kernel_space.repeat_interleave(s, 2).repeat_interleave(s, 3)
    change = (sampled - own).abs().reshape(n, groups, c // groups, h * s,
                                           w * s)
    return change.sum(dim=2) / 2


def upsampler_statistics(record) -> Dict[str, object]:
    """Per-upsampler numbers (floats; offsets in input pixels, entropies in
    nats), over all N inputs, groups and pixels:

    * ``mean_abs_offset_px``, ``max_abs_offset_px``,
      ``share_offsets_beyond_1px`` (|offset| > 1),
      ``mean_offset_by_subpixel_px`` ([i][j] = [x, y], see
      :func:`mean_offset_by_subpixel`) and ``mean_offset_kernel_change``
      (:func:`offset_kernel_change`): DLU only, else None;
    * ``mean_kernel_entropy``: of the kernels :func:`entropy_map` draws
      (DLU: its kernel space; CARAFE: its kernels);
    * ``mean_sampled_kernel_entropy``: DLU's per-output-pixel kernels (the
      kernel space sampled at the offsets); for CARAFE the same as
      ``mean_kernel_entropy``;
    * ``uniform_kernel_entropy`` = log(k^2) and ``entropy_ratio`` =
      mean_kernel_entropy / log(k^2) (1: uniform kernels, 0: one-hot);
      None when k = 1;
    * ``mean_peak_weight`` and ``share_peak_at_centre``: the largest
      weight of those kernels, and how often it is the centre tap (a
      kernel of weight 1 there copies the source pixel: nearest
      upsampling).
    """
    p = record.prediction
    s, k = record.scale_factor, record.up_kernel
    stats = dict(name=record.name, type=record.kind,
                 layer=record.layer_type, scale_factor=s, up_kernel=k,
                 up_group=record.up_group, calls=record.calls,
                 input_shape=list(record.input.shape),
                 output_shape=list(record.output.shape))
    if p.offsets is not None:
        magnitude = offset_magnitude(p.offsets, s)
        stats.update(
            mean_offset_by_subpixel_px=mean_offset_by_subpixel(
                p.offsets, s).tolist(),
            mean_abs_offset_px=magnitude.mean().item(),
            max_abs_offset_px=magnitude.max().item(),
            share_offsets_beyond_1px=(magnitude > 1).float().mean().item(),
            mean_offset_kernel_change=offset_kernel_change(
                p.kernel_space, p.offsets, s).mean().item())
    else:
        stats.update(mean_offset_by_subpixel_px=None,
                     mean_abs_offset_px=None, max_abs_offset_px=None,
                     share_offsets_beyond_1px=None,
                     mean_offset_kernel_change=None)
    kernels = p.kernel_space if p.kernel_space is not None else p.kernels
    entropy = kernel_entropy(kernels, k).mean().item()
    sampled = kernel_entropy(p.per_pixel_kernels(s), k).mean().item()
    uniform = math.log(k * k)
    peak, tap = kernel_peaks(kernels, k)
    stats.update(mean_kernel_entropy=entropy,
                 mean_sampled_kernel_entropy=sampled,
                 uniform_kernel_entropy=uniform,
                 entropy_ratio=entropy / uniform if uniform > 0 else None,
                 mean_peak_weight=peak.mean().item(),
                 share_peak_at_centre=(tap == k * k // 2).float().mean()
                 .item())
    return stats


# ------------------------------------------------------------- boundaries
def label_boundaries(labels: Tensor, ignore: Optional[int] = None) -> Tensor:
    """(H, W) integer labels -> (H, W) bool: pixels whose right or lower
    neighbour has another label (both marked). Pairs involving ``ignore``
    (e.g. the padding) are not boundaries."""
    if labels.dim() != 2:
        raise ValueError(f'labels must be (H, W), got shape '
                         f'{tuple(labels.shape)}')
    out = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for a, b, sl_a, sl_b in (
            (labels[:, :-1], labels[:, 1:], (slice(None), slice(None, -1)),
             (slice(None), slice(1, None))),
            (labels[:-1], labels[1:], (slice(None, -1), slice(None)),
             (slice(1, None), slice(None)))):
        edge = a != b
        if ignore is not None:
            edge &= (a != ignore) & (b != ignore)
        out[sl_a] |= edge
        out[sl_b] |= edge
    return out


def image_edges(image: Tensor, threshold: float = EDGE_THRESHOLD) -> Tensor:
    """(3, H, W) image in [0, 1] -> (H, W) bool: Sobel gradient magnitude
    of its grey values (per pixel: the Sobel sums divided by 8) at or above
    ``threshold``."""
    if image.dim() != 3:
        raise ValueError(f'image must be (3, H, W), got shape '
                         f'{tuple(image.shape)}')
    grey = image.float().mean(dim=0)[None, None]
    sobel_x = grey.new_tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    grey = F.pad(grey, (1, 1, 1, 1), mode='replicate')
    gx = F.conv2d(grey, sobel_x[None, None])
    gy = F.conv2d(grey, sobel_x.t()[None, None])
    return (gx.square() + gy.square()).sqrt()[0, 0] >= threshold


def boundaries_at(boundaries: Tensor, size) -> Tensor:
    """(H, W) bool at the network input's resolution -> (h, w) bool: a
    pixel of an (h, w) map is on a boundary if any input pixel it covers
    is (adaptive max pooling)."""
    pooled = F.adaptive_max_pool2d(boundaries[None, None].float(),
                                   tuple(int(v) for v in size))
    return pooled[0, 0] > 0


def boundary_distance(boundaries: Tensor,
                      max_distance: int = MAX_DISTANCE) -> Tensor:
    """(N, h, w) bool -> (N, h, w) long: the chessboard distance, in pixels
    of that map, to the nearest boundary pixel of the same input (0 on a
    boundary), capped at ``max_distance`` (meaning that far or farther)."""
    distance = torch.full(boundaries.shape, max_distance, dtype=torch.long)
    reached = boundaries[:, None].float()
    for d in range(max_distance):
        distance[(reached[:, 0] > 0) & (distance == max_distance)] = d
        reached = F.max_pool2d(reached, 3, stride=1, padding=1)
    return distance


def boundary_contrast(values: Tensor, boundaries: Tensor,
                      max_distance: int = MAX_DISTANCE) -> Dict[str, object]:
    """``values`` (N, G, h, w) against ``boundaries`` (N, h, w) bool (the
    same for every group), with d = :func:`boundary_distance`:

    * ``mean_by_distance`` [d = 0, 1, ..., >= max_distance] and
      ``count_by_distance`` (values at each d; a mean is None where the
      count is 0);
    * ``share_on`` (of the N*h*w pixels, d = 0), ``on`` (mean at d = 0),
      ``off`` (mean at d > 0) and ``on_off_ratio`` (None unless both
      exist and ``off`` is not 0).
    """
    if (values.dim() != 4 or boundaries.shape != (values.shape[0],
                                                  *values.shape[2:])):
        raise ValueError(f'values must be (N, G, h, w) and boundaries '
                         f'(N, h, w); got {tuple(values.shape)} and '
                         f'{tuple(boundaries.shape)}')
    distance = boundary_distance(boundaries, max_distance)[:, None].expand_as(
        values)
    sums = torch.zeros(max_distance + 1, dtype=torch.float64).index_add_(
        0, distance.reshape(-1), values.reshape(-1).double())
    counts = torch.bincount(distance.reshape(-1),
                            minlength=max_distance + 1)
    return contrast_from_bins(sums.tolist(), counts.tolist(),
                              boundaries.float().mean().item())


def contrast_from_bins(sums, counts, share_on: float) -> Dict[str, object]:
    """:func:`boundary_contrast`'s numbers from per-distance sums and
    counts (also used to pool them over images)."""
    def mean(total, count):
        return total / count if count else None
    on = mean(sums[0], counts[0])
    off = mean(sum(sums[1:]), sum(counts[1:]))
    return dict(share_on=share_on, on=on, off=off,
                on_off_ratio=on / off if on is not None and off else None,
                mean_by_distance=[mean(t, c) for t, c in zip(sums, counts)],
                count_by_distance=[int(c) for c in counts])


def boundary_statistics(record, boundaries: Tensor) -> Dict[str, object]:
    """:func:`boundary_contrast` of the kernel entropy (``kernel_entropy``,
    the map :func:`entropy_map` gives) and, for DLU, of |offset|
    (``abs_offset_px``), each at its own map's resolution. ``boundaries``:
    (H', W') at the network input's resolution for a single image, or
    (N, H', W') per input (e.g. per RoI, cropped to it); each is brought to
    a map's size with :func:`boundaries_at`."""
    per_input = boundaries if boundaries.dim() == 3 else boundaries[None]
    n = record.input.shape[0]
    if boundaries.dim() not in (2, 3) or per_input.shape[0] not in (1, n):
        raise ValueError(f'boundaries must be (H, W) or (N, H, W) with N = '
                         f'{n}, got shape {tuple(boundaries.shape)}')
    maps = dict(kernel_entropy=entropy_map(record))
    if record.prediction.offsets is not None:
        maps['abs_offset_px'] = offset_magnitude(record.prediction.offsets,
                                                 record.scale_factor)
    out = {}
    for key, values in maps.items():
        masks = torch.stack([boundaries_at(b, values.shape[-2:])
                             for b in per_input]).expand(n, -1, -1)
        out[key] = boundary_contrast(values, masks)
    return out
