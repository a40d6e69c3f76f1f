"""Parameters and MACs of upsamplers (layer mode) or of a model (config mode).

Layer mode (no config): one upsampler of each kind at C channels for each
scale factor s, from the formulas in :mod:`dlu_mm.complexity`, with DLU's
reduction against CARAFE (the paper's "91% fewer parameters and at least 63%
fewer FLOPs at 16x"):

    python tools/analysis/complexity.py           # the paper's table
    python tools/analysis/complexity.py --channels 128 --scales 2 4 \\
        --size 100 168 --out-dir work_dirs/complexity        # + PNG and JSON

Config mode: total parameters and MACs of a model built from a config, the
upsamplers' share, and the change against the same config with every
``upsample_cfg`` switched to ``type='nearest'`` (``--baseline bilinear``
for heads whose stock upsampling is bilinear, e.g. mmseg's):

    python tools/analysis/complexity.py \\
        configs/dlu/faster-rcnn_r50_fpn-dlu_1x_coco.py --shape 800 1333

Counts are MACs (multiply-accumulates; FLOPs = 2 x MACs), which is what
upsampler papers call FLOPs. Config mode traces the model with
``mmengine.analysis.FlopAnalyzer`` plus the handles of
:mod:`dlu_mm.flop_counting`, which count the reassembly and the kernel
sampling that mmengine alone would skip. What is computed lives in
:mod:`dlu_mm.analysis.layer_costs` and :mod:`dlu_mm.analysis.model_costs`;
this script parses the arguments and prints.
"""
import argparse
import os
import sys
from typing import Dict

from dlu_mm.analysis import layer_costs
from dlu_mm.complexity import UpsamplerSpec


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='Parameters and MACs of DLU, CARAFE and other upsamplers '
        '(layer mode), or of a model config (config mode).')
    p.add_argument('config', nargs='?',
                   help='model config; without it, layer mode')
    p.add_argument('--channels', type=int, default=256, help='C')
    p.add_argument('--scales', type=int, nargs='+', default=[2, 4, 8, 16],
                   help='scale factors s')
    p.add_argument('--size', type=int, nargs=2, default=[64, 64],
                   metavar=('H', 'W'), help='low-res input size (layer mode)')
    p.add_argument('--up-kernel', type=int, default=5, help='k_up')
    p.add_argument('--up-group', type=int, default=1, help='G')
    p.add_argument('--encoder-kernel', type=int, default=3, help='k_enc')
    p.add_argument('--compressed-channels', type=int, default=64, help='C_m')
    p.add_argument('--dysample-groups', type=int, default=4)
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1333],
                   metavar=('H', 'W'), help='image size (config mode)')
    p.add_argument('--baseline', default='nearest',
                   choices=['nearest', 'bilinear'],
                   help='config mode: compare with the config whose every '
                   'upsample_cfg has this type')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    p.add_argument('--out-dir', help='write JSON (and, in layer mode, a PNG '
                   'chart) here')
    args = p.parse_args(argv)
    for name in ('channels', 'up_kernel', 'up_group', 'encoder_kernel',
                 'compressed_channels', 'dysample_groups'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1, got '
                    f'{getattr(args, name)}')
    if args.up_kernel % 2 == 0:
        p.error(f'--up-kernel must be odd (1, 3, 5, ...), got '
                f'{args.up_kernel}')
    if any(s < 1 for s in args.scales):
        p.error(f'--scales must be integers >= 1, got {args.scales}')
    if any(v < 1 for v in args.size + args.shape):
        p.error(f'--size/--shape must be positive, got {args.size} / '
                f'{args.shape}')
    if args.config and not os.path.isfile(args.config):
        p.error(f'config file not found: {args.config!r}')
    return args


def run_layer_mode(args) -> Dict:
    spec = UpsamplerSpec(args.channels, args.scales[0], args.up_kernel,
                         args.up_group, args.encoder_kernel,
                         args.compressed_channels)
    size = tuple(args.size)
    result = layer_costs.layer_report(spec, args.scales, size,
                                      args.dysample_groups)
    print(layer_costs.format_layer_table(
        spec, size, result['rows'], result['dlu_vs_carafe'],
        result['paper_check']))
    if args.out_dir:
        paths = layer_costs.write_layer_report(result, spec, args.out_dir)
        print(f'\nwrote {" and ".join(map(str, paths))}')
    return result


def run_config_mode(args) -> Dict:
    from dlu_mm.analysis import model_costs  # mmengine, mmcv: config mode only
    result = model_costs.config_report(args.config, args.shape,
                                       args.baseline, args.cfg_options)
    print(model_costs.format_config_report(result))
    if args.out_dir:
        path = model_costs.write_config_report(result, args.out_dir)
        print(f'\nwrote {path}')
    return result


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.config:
        return run_config_mode(args)
    return run_layer_mode(args)


if __name__ == '__main__':
    main(sys.argv[1:])
