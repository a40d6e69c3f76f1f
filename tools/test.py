"""Test (and evaluate) a detector or segmentor; the flags of mmdet's and
mmseg's tools/test.py, plus --trust-checkpoint. Prints the metrics and
writes them to WORK_DIR/metrics.json.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show] [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import json
import numbers
import os
import os.path as osp

import dlu_mm  # noqa: F401  (registers DLU and the mmdet/mmseg adapters)
from dlu_mm.engine import install_checkpoint_loader, setup_cpu_distributed
from dlu_mm.engine.checkpoint import check_checkpoint
from dlu_mm.engine.config_checks import check_config
from dlu_mm.engine.tool_setup import (ToolError, add_common_args,
                                      build_runner, load_config, run_tool_main)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out', type=str,
        help='mmdet: dump predictions to a pickle file; mmseg: directory '
        'for the predicted segmentation maps')
    parser.add_argument('--show', action='store_true',
                        help='show prediction results')
    parser.add_argument(
        '--show-dir', help='directory where painted images will be saved '
        '(under work_dir/timestamp/)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='the interval of show (s)')
    add_common_args(parser)
    return parser.parse_args()


def enable_visualization(cfg, args) -> None:
    """mmdet's / mmseg's trigger_visualization_hook."""
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.engine.hooks.utils import trigger_visualization_hook
        trigger_visualization_hook(cfg, args)
        return
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ToolError('--show/--show-dir need a "visualization" entry in '
                        'default_hooks')
    hook.update(draw=True, interval=1, show=args.show,
                wait_time=args.wait_time)
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir


def main():
    args = parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    scope = cfg.get('default_scope')
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    if args.out is not None and scope == 'mmdet' and \
            not args.out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out must be a .pkl file, got {args.out}')

    check_config(cfg, mode='test')
    install_checkpoint_loader(trust_all=args.trust_checkpoint)
    check_checkpoint(args.checkpoint)
    setup_cpu_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    if args.out is not None and scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    if runner.rank == 0:
        os.makedirs(cfg.work_dir, exist_ok=True)
        # float(str(v)): a numpy float32 (mmseg's IoUMetric) as it prints,
        # 40.24, not its widened binary value 40.2400016784668
        numeric = {k: float(str(v)) for k, v in metrics.items()
                   if isinstance(v, numbers.Real)}
        with open(osp.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump(numeric, f, indent=1)
        print('metrics:', json.dumps(dict(metrics, **numeric), default=str))


if __name__ == '__main__':
    run_tool_main(main)
