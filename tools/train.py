"""Train a detector or segmentor with DLU available; the flags of mmdet's and
mmseg's tools/train.py, plus --trust-checkpoint.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|...]
"""
import argparse
import os.path as osp

import torch
from mmengine.runner import find_latest_checkpoint

import dlu_mm  # noqa: F401  (registers DLU and the mmdet/mmseg adapters)
from dlu_mm.engine import install_checkpoint_loader, setup_cpu_distributed
from dlu_mm.engine.checkpoint import check_checkpoint
from dlu_mm.engine.config_checks import check_config
from dlu_mm.engine.tool_setup import (ToolError, add_common_args,
                                      build_runner, load_config, run_tool_main)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training '
                        '(fp16 with dynamic loss scale on CUDA, bf16 on CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='enable automatically scaling LR.')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args)

    if args.amp:
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:
            cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
            cfg.optim_wrapper.dtype = 'bfloat16'

    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and \
                'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise ToolError('--auto-scale-lr needs "auto_scale_lr.enable" '
                            'and "auto_scale_lr.base_batch_size" in the '
                            f'config {args.config}')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # RNG states in the checkpoints make --resume continue exactly as an
    # uninterrupted run would; everything is saved as plain data, so the
    # checkpoints load weights-only.
    cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
        dict(type='RNGStateHook'), dict(type='WeightsOnlyCheckpointHook')]
    if cfg.get('train_cfg', {}).get('type') == 'IterBasedTrainLoop':
        cfg.train_cfg.type = 'ExactResumeIterBasedTrainLoop'
    check_config(cfg, mode='train')
    install_checkpoint_loader(trust_all=args.trust_checkpoint)
    # the file the Runner will load (mmengine's rule), checked up front
    start_from = cfg.get('load_from')
    if not start_from and cfg.get('resume') and osp.isfile(
            osp.join(cfg.work_dir, 'last_checkpoint')):
        start_from = find_latest_checkpoint(cfg.work_dir)
    if start_from and '://' not in start_from:
        check_checkpoint(start_from)
    setup_cpu_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    run_tool_main(main)
