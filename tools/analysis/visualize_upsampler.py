"""Draw what a model's learned upsamplers (DLU, CARAFE) do on an image.

    python tools/analysis/visualize_upsampler.py CONFIG CHECKPOINT IMAGE
        [IMAGE ...] [--out-dir DIR] [--boundaries SOURCE] [--no-png]
        [--png-size WIDTH HEIGHT] [--cfg-options k=v ...]
        [--trust-checkpoint]

Runs the model of CONFIG with the weights of CHECKPOINT on IMAGE (its test
pipeline, on the CPU) and writes into DIR, for every learned upsampler in
it (each FPN level, a mask head, a decode head), one PNG
(``NN_<module name>.png``; layout in :mod:`dlu_mm.analysis.
upsampler_figure`): DLU's guidance offsets over the image and its
kernel-space entropy, CARAFE's kernel entropy, and for both the upsampled
features beside nearest / bilinear upsampling of the same input. It also
writes ``upsampler_statistics.json``: per upsampler the mean |offset| in
input pixels, the share of offsets beyond 1 px, the mean kernel entropy
against the uniform kernel's log(k^2), and |offset| / entropy on vs off
boundaries: the edges of the image (Sobel), or with ``--boundaries`` the
label changes of the image's label map -- a label map PNG, a folder of
``<image name>.png`` label maps (e.g. ADE20K-style annotations), or a
COCO-style annotation ``.json`` (its instance masks).

With several images, each gets its own folder ``DIR/<image name>/`` and
``DIR/summary.json`` holds each upsampler's statistics over all of them
(``--no-png``: statistics only).
The numbers come from :mod:`dlu_mm.analysis`.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import dlu_mm  # noqa: F401  (registers DLU and the mmdet/mmseg adapters)
from dlu_mm.analysis import NoLearnedUpsamplerError, find_upsamplers
from dlu_mm.analysis.boundary_sources import boundary_labels
from dlu_mm.analysis.model_inspection import (CheckpointMismatchError,
                                              build_model, load_checked,
                                              run_on_image)
from dlu_mm.analysis.report import report_image, summarise
from dlu_mm.analysis.upsampler_figure import FIGURE_SIZE_PX
from dlu_mm.engine import CheckpointError
from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(
        description='Draw what the learned upsamplers of a model do on an '
        'image, and write their statistics')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file of that model')
    parser.add_argument('images', nargs='+', metavar='IMAGE',
                        help='image file(s)')
    parser.add_argument(
        '--out-dir', default=None,
        help='output directory (default: work_dirs/visualize_upsampler/'
        '<config name>[/<image name> for one image])')
    parser.add_argument(
        '--boundaries', default=None, metavar='SOURCE',
        help='label maps whose label changes are the boundaries of the '
        'on/off-boundary statistics: a label map PNG of IMAGE, a folder of '
        '<image name>.png, or a COCO-style .json annotation file (default: '
        'the edges of the image)')
    parser.add_argument(
        '--no-png', action='store_true',
        help='statistics only (e.g. over many images), no figures')
    parser.add_argument(
        '--png-size', nargs=2, type=int, default=list(FIGURE_SIZE_PX),
        metavar=('WIDTH', 'HEIGHT'),
        help='size of each PNG in pixels (default: %(default)s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help='allow full unpickling of a checkpoint that fails the '
        'weights-only check and was not written by this project\'s tools')
    args = parser.parse_args()
    if args.png_size[0] < 600 or args.png_size[1] < 400:
        parser.error(f'--png-size must be at least 600 400 (six panels), '
                     f'got {args.png_size[0]} {args.png_size[1]}')
    return args


def inspect_one(model, cfg, image, boundaries, out_dir, header, args):
    """Run, report and write ``upsampler_statistics.json`` for one image;
    returns the per-upsampler statistics."""
    start = time.perf_counter()
    run = run_on_image(model, cfg, image)
    if boundaries is None:
        boundary_map, source = run.image_edges(), 'image edges (Sobel)'
    else:
        try:
            boundary_map = run.label_boundaries(
                boundary_labels(boundaries, image))
        except ValueError as err:
            raise ValueError(f'--boundaries {boundaries}: {err}') from None
        source = f'label map from {boundaries}'
    print(f'{image}: model input {tuple(run.image.shape[1:])}, '
          f'{time.perf_counter() - start:.1f} s; boundaries: {source}')
    stats = report_image(run, boundary_map, out_dir,
                         figures=not args.no_png, size_px=args.png_size)
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'upsampler_statistics.json')
    with open(path, 'w') as f:
        json.dump(dict(header, image=image, boundaries=source,
                       model_input=list(run.image.shape[1:]),
                       upsamplers=stats, not_run=run.skipped), f, indent=1)
    print(f'statistics: {path}')
    return stats


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    name = osp.splitext(osp.basename(args.config))[0]
    stems = [osp.splitext(osp.basename(i))[0] for i in args.images]
    out_dir = args.out_dir or osp.join(
        'work_dirs', 'visualize_upsampler', name,
        *(stems if len(stems) == 1 else []))
    try:
        model = build_model(cfg)
        find_upsamplers(model)  # fail before reading the checkpoint
        load_checked(model, args.checkpoint, trust=args.trust_checkpoint)
        per_image = [
            inspect_one(model, cfg, image, args.boundaries,
                        out_dir if len(stems) == 1 else osp.join(out_dir, s),
                        dict(config=args.config, checkpoint=args.checkpoint),
                        args)
            for image, s in zip(args.images, stems)]
    except (NoLearnedUpsamplerError, CheckpointMismatchError,
            CheckpointError, FileNotFoundError) as err:
        sys.exit(f'visualize_upsampler: error: {err}')
    except ValueError as err:
        if str(err).startswith('--boundaries'):
            sys.exit(f'visualize_upsampler: error: {err}')
        raise
    if len(per_image) > 1:
        path = osp.join(out_dir, 'summary.json')
        with open(path, 'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                           images=args.images, boundaries=args.boundaries
                           or 'image edges (Sobel)',
                           upsamplers=summarise(per_image)), f, indent=1)
        print(f'summary over {len(per_image)} images: {path}')


if __name__ == '__main__':
    main()
