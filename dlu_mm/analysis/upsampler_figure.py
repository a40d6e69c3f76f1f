"""One PNG per learned upsampler (matplotlib, no pyplot state).

Layout, 2 x 3 panels, for input ``index`` of an
:class:`~dlu_mm.analysis.upsampler_inspection.UpsamplerRecord` (input
(N, C, H, W), output (N, C, sH, sW)):

* DLU, top row: the image (faded) under the output grid with the
  guidance offsets as arrows (group 0; the mean offset of each ``step`` x
  ``step`` block of output pixels, at most ``max_arrows`` per side,
  coloured by length, a key arrow of 1 input pixel); |offset| per output
  pixel (sH, sW); the kernel-space entropy (H, W), mean over groups.
* CARAFE, top row: the image; mean |input features| (H, W); the kernel
  entropy (sH, sW), mean over groups.
* Both, bottom row: mean |features| over the C channels of nearest and
  bilinear (``align_corners=False``) upsampling of the same input, and of
  the layer's output, on one colour scale.

Images and maps are drawn with the output grid's extent, so a pixel of
every panel lines up with the same place in the image.
"""
import math
import os
import textwrap
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .upsampler_statistics import entropy_map, offset_field

FIGURE_SIZE_PX = (1500, 960)
"""(width, height) of every PNG in pixels."""
DPI = 100
IMAGE_FADE = 0.6
"""Under DLU's arrows the image keeps this share of its contrast."""


def _imshow(ax, data, extent, title, cmap='viridis', vmin=None, vmax=None,
            colorbar_label: Optional[str] = None):
    im = ax.imshow(data, extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation='nearest')
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar_label is not None:
        from matplotlib.ticker import ScalarFormatter
        bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03,
                                 format=ScalarFormatter(useOffset=False))
        bar.set_label(colorbar_label, fontsize=9)
        bar.ax.tick_params(labelsize=8)
    return im


def _extent(h: int, w: int) -> Sequence[float]:
    """Pixel centres at integer (row, column) coordinates of an h x w
    grid."""
    return (-0.5, w - 0.5, h - 0.5, -0.5)


def _draw_offsets(ax, field: Tensor, s: int, max_arrows: int) -> str:
    """Quiver of ``field`` (2, sH, sW) [x, y] in input pixels over the
    output grid: one arrow per ``step`` x ``step`` block (at most
    ``max_arrows`` per side), the block's mean offset, drawn from the
    block's centre (length in output pixels = offset * s * gain). Returns
    a note on the drawing scale."""
    sh, sw = field.shape[1:]
    step = max(1, math.ceil(max(sh, sw) / max_arrows))
    sub = F.avg_pool2d(field[None], step, ceil_mode=True)[0]
    centres_y = (torch.arange(sub.shape[1]) * step + (step - 1) / 2).clamp(
        max=sh - 1)
    centres_x = (torch.arange(sub.shape[2]) * step + (step - 1) / 2).clamp(
        max=sw - 1)
    length = sub.norm(dim=0)
    p95 = torch.quantile(length.flatten(), 0.95).item()
    if p95 == 0:
        return 'all offsets 0'
    gain = 0.9 * step / (p95 * s)  # the 95th-percentile arrow spans ~a cell
    yy, xx = torch.meshgrid(centres_y.float(), centres_x.float(),
                            indexing='ij')
    q = ax.quiver(xx.numpy(), yy.numpy(), (sub[0] * s).numpy(),
                  (sub[1] * s).numpy(), length.numpy(), cmap='autumn',
                  angles='xy', scale_units='xy', scale=1 / gain,
                  width=0.004, headwidth=3.5, headlength=4)
    ax.quiverkey(q, 0.80, -0.06, s, '1 input px', labelpos='E',
                 coordinates='axes', fontproperties=dict(size=8))
    what = 'per output pixel' if step == 1 else f'mean of {step}x{step} px'
    return f'{what}, arrows x{gain:.2g}'


def draw_upsampler(record, background: Tensor, path: str, index: int = 0,
                   subtitle: str = '', input_label: str = 'input',
                   max_arrows: int = 20,
                   size_px: Sequence[int] = FIGURE_SIZE_PX) -> str:
    """Write the figure of ``record`` for its input ``index`` to ``path``
    (a PNG of exactly ``size_px`` = (width, height) pixels) and return
    ``path``.

    Args:
        record: an ``UpsamplerRecord``.
        background: (3, h, w) image in [0, 1] covering exactly the output
            grid of input ``index`` (any h, w; drawn stretched to it).
        subtitle: a second title line (e.g. the statistics).
        input_label: what the record's N inputs are, for the title when
            N > 1 (e.g. 'RoI').
        max_arrows: at most this many arrows per side (DLU).
    """
    from matplotlib.figure import Figure  # no pyplot: no global state

    s, k = record.scale_factor, record.up_kernel
    x = record.input[index].float()
    y = record.output[index].float()
    h, w = x.shape[1:]
    sh, sw = y.shape[1:]
    fig = Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI)
    axes = fig.subplots(2, 3)
    out_extent = _extent(sh, sw)
    # the input grid drawn in output pixels: input pixel q covers s of them
    in_as_out = (-0.5, w * s - 0.5, h * s - 0.5, -0.5)
    image = background.permute(1, 2, 0).clamp(0, 1).numpy()
    uniform = math.log(k * k)
    entropy = entropy_map(record)[index].mean(dim=0)
    groups = '' if record.up_group == 1 else ', mean over groups'

    offsets = record.prediction.offsets is not None
    ax = axes[0, 0]
    # DLU: the image faded towards white, so that the arrows stand out
    ax.imshow(1 - IMAGE_FADE * (1 - image) if offsets else image,
              extent=out_extent, interpolation='bilinear')
    ax.set_xlim(out_extent[:2])
    ax.set_ylim(out_extent[2:])
    ax.set_xticks([])
    ax.set_yticks([])
    if offsets:
        field = offset_field(record.prediction.offsets, s)[index, 0]
        note = _draw_offsets(ax, field.float(), s, max_arrows)
        group0 = '' if record.up_group == 1 else ' (group 0)'
        ax.set_title(f'guidance offsets{group0}, {sh}x{sw} grid\n({note})',
                     fontsize=10)
        _imshow(axes[0, 1], offset_field(record.prediction.offsets, s)
                [index].norm(dim=1).mean(dim=0).numpy(), out_extent,
                f'|offset| per output pixel{groups}', cmap='viridis',
                vmin=0, colorbar_label='input pixels')
        _imshow(axes[0, 2], entropy.numpy(), in_as_out,
                f'kernel-space entropy, {h}x{w}{groups}', cmap='magma',
                vmax=uniform,
                colorbar_label=f'nats (uniform log {k}² = {uniform:.2f})')
    else:
        ax.set_title(f'image under the {sh}x{sw} output grid', fontsize=10)
        _imshow(axes[0, 1], x.abs().mean(dim=0).numpy(), in_as_out,
                f'input mean |features|, {h}x{w}', cmap='gray')
        _imshow(axes[0, 2], entropy.numpy(), out_extent,
                f'kernel entropy, {sh}x{sw}{groups}', cmap='magma',
                vmax=uniform,
                colorbar_label=f'nats (uniform log {k}² = {uniform:.2f})')

    maps = [
        ('nearest', F.interpolate(x[None], scale_factor=s, mode='nearest')),
        ('bilinear', F.interpolate(x[None], scale_factor=s, mode='bilinear',
                                   align_corners=False)),
        (record.layer_type, y[None]),
    ]
    maps = [(name, m[0].abs().mean(dim=0).numpy()) for name, m in maps]
    values = np.concatenate([m.ravel() for _, m in maps])
    vmin, vmax = np.percentile(values, [1, 99])
    for col, (name, data) in enumerate(maps):
        _imshow(axes[1, col], data, _extent(*data.shape),
                f'{name} {s}x: mean |features| over {x.shape[0]} channels',
                cmap='gray', vmin=vmin, vmax=vmax,
                colorbar_label=None if col < 2 else '|features|')

    where = (f', {input_label} {index} of {record.input.shape[0]}'
             if record.input.shape[0] > 1 else '')
    # ~9 px per character at 11 pt and 100 dpi, ~19 px per line
    subtitle = textwrap.fill(subtitle, width=int(size_px[0] / 9))
    lines = 1 + (subtitle.count('\n') + 1 if subtitle else 0)
    fig.suptitle(
        f'{record.name}: {record.layer_type}, s={s}, k={k}, '
        f'G={record.up_group}, {tuple(x.shape)} -> {tuple(y.shape)}{where}'
        + (f'\n{subtitle}' if subtitle else ''), fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.95, bottom=0.05,
                        top=1 - (19 * lines + 55) / size_px[1],
                        wspace=0.25, hspace=0.3)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=DPI, format='png')
    return path
