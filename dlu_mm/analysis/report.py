"""Statistics and figures of every upsampler of one :class:`~dlu_mm.
analysis.model_inspection.ImageRun`, and their summary over images."""
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from .upsampler_figure import FIGURE_SIZE_PX, draw_upsampler
from .upsampler_statistics import (boundary_statistics, contrast_from_bins,
                                   upsampler_statistics)


def _fmt(value, spec='.3f'):
    return '-' if value is None else format(value, spec)


def summary_line(stats: Dict) -> str:
    """One line of an upsampler's statistics (``upsampler_statistics``
    with its ``boundaries``)."""
    parts = []
    if stats['mean_abs_offset_px'] is not None:
        parts.append(f"mean |offset| {stats['mean_abs_offset_px']:.3f} px "
                     f"({100 * stats['share_offsets_beyond_1px']:.1f}% "
                     f"> 1 px)")
        edges = stats.get('boundaries', {}).get('abs_offset_px')
        if edges:
            parts.append(f"on/off boundaries {_fmt(edges['on'])}/"
                         f"{_fmt(edges['off'])} px")
    parts.append(f"kernel entropy {stats['mean_kernel_entropy']:.3f} / "
                 f"log k^2 = {stats['uniform_kernel_entropy']:.3f}, peak "
                 f"weight {stats['mean_peak_weight']:.2f}")
    if stats['mean_offset_kernel_change'] is not None:
        parts.append(f"offsets change kernels by "
                     f"{stats['mean_offset_kernel_change']:.3f} (TV)")
    return ', '.join(parts)


def report_image(run, boundary_map: Optional[Tensor], out_dir: str,
                 progress: Callable[[str], None] = print,
                 figures: bool = True,
                 size_px: Sequence[int] = FIGURE_SIZE_PX) -> List[Dict]:
    """For each record of ``run``: :func:`upsampler_statistics`, with
    ``boundaries`` (:func:`boundary_statistics` against ``boundary_map``,
    (H, W) bool at ``run.image``'s resolution, if given), and (if
    ``figures``) a figure ``out_dir/NN_<name>.png`` of ``size_px`` =
    (width, height) pixels (its path under ``png``, else None); one
    ``progress``
    line per upsampler, the ones that did not run included. RoI-batched
    upsamplers (a mask head) are drawn for RoI 0, the top-scoring
    detection; their statistics cover every RoI."""
    total = len(run.records) + len(run.skipped)
    results = []
    for i, record in enumerate(run.records, 1):
        start = time.perf_counter()
        stats = upsampler_statistics(record)
        if boundary_map is not None:
            stats['boundaries'] = boundary_statistics(
                record, run.boundaries(record, boundary_map))
        line = summary_line(stats)
        roi = record.name in run.rois
        path = None
        if figures:
            path = osp.join(out_dir, f'{i:02d}_{record.name}.png')
            draw_upsampler(record, run.crops(run.image, record)[0], path,
                           subtitle=line, size_px=size_px,
                           input_label='RoI' if roi else 'input')
        stats['png'] = path
        if roi:
            stats['drawn'] = 'RoI 0 (the top-scoring detection)'
        results.append(stats)
        progress(f'[{i}/{total}] {record.name}: {record.layer_type} '
                 f's={record.scale_factor} {tuple(record.input.shape)} -> '
                 f'{tuple(record.output.shape)}: {line}'
                 + (f' -> {path}' if path else '')
                 + f' ({time.perf_counter() - start:.1f} s)')
    for j, name in enumerate(run.skipped, len(run.records) + 1):
        progress(f'[{j}/{total}] {name}: not run on this image (e.g. a mask '
                 f'head when nothing was detected); no figure')
    return results


def summarise(per_image: List[List[Dict]]) -> List[Dict]:
    """Per upsampler name, over the images it ran on: ``images``, the mean
    of each per-image number (``mean_offset_by_subpixel_px``,
    ``mean_abs_offset_px``,
    ``share_offsets_beyond_1px``, ``mean_offset_kernel_change``,
    ``mean_kernel_entropy``, ``entropy_ratio``, ``mean_peak_weight``,
    ``share_peak_at_centre``), and each boundary statistic over all the images'
    pixels (per-distance means pooled with their counts; ``share_on`` the
    mean over images)."""
    names: Dict[str, List[Dict]] = {}
    for stats in per_image:
        for s in stats:
            names.setdefault(s['name'], []).append(s)
    out = []
    for name, items in names.items():
        row = dict(name=name, type=items[0]['type'],
                   scale_factor=items[0]['scale_factor'], images=len(items))
        for key in ('mean_abs_offset_px', 'share_offsets_beyond_1px',
                    'mean_offset_kernel_change', 'mean_kernel_entropy',
                    'entropy_ratio', 'mean_peak_weight',
                    'share_peak_at_centre'):
            values = [it[key] for it in items if it[key] is not None]
            row[key] = sum(values) / len(values) if values else None
        row['uniform_kernel_entropy'] = items[0]['uniform_kernel_entropy']
        subpixel = [it['mean_offset_by_subpixel_px'] for it in items
                    if it.get('mean_offset_by_subpixel_px') is not None]
        row['mean_offset_by_subpixel_px'] = (
            torch.tensor(subpixel).mean(dim=0).tolist() if subpixel
            else None)
        if all('boundaries' in it for it in items):
            row['boundaries'] = {}
            for key in items[0]['boundaries']:
                parts = [it['boundaries'][key] for it in items]
                counts = [sum(c) for c in zip(
                    *[p['count_by_distance'] for p in parts])]
                sums = [sum((p['mean_by_distance'][d] or 0)
                            * p['count_by_distance'][d] for p in parts)
                        for d in range(len(counts))]
                row['boundaries'][key] = contrast_from_bins(
                    sums, counts,
                    sum(p['share_on'] for p in parts) / len(parts))
        out.append(row)
    return out
