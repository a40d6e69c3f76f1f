"""torch.compile on a model of a config: the graph breaks Dynamo finds in
its ``mode='tensor'`` forward (each with its reason and place, and how
many dlu_mm causes), then the compiled model's outputs against eager.

    python tools/analysis/compile_check.py configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py
    python tools/analysis/compile_check.py CONFIG --img-size 512 512 --backend inductor

Exits 1 if dlu_mm causes a graph break or the outputs differ by more than
--atol + --rtol x the largest output value.
"""
import argparse
import json
import sys

from dlu_mm.analysis.compile_check import (compiled_vs_eager, config_forward,
                                           graph_breaks)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--img-size', type=int, nargs=2, default=[256, 256],
                   metavar=('H', 'W'))
    p.add_argument('--backend', default='inductor',
                   help="torch.compile backend (e.g. inductor, aot_eager)")
    p.add_argument('--atol', type=float, default=1e-4)
    p.add_argument('--rtol', type=float, default=1e-4)
    p.add_argument('--json', help='write the report here')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    _, forward, inputs = config_forward(args.config, tuple(args.img_size))
    report = graph_breaks(forward, inputs)
    print(f'{args.config}: {report["graphs"]} graph(s), '
          f'{report["graph_breaks"]} graph break(s), '
          f'{report["dlu_mm_breaks"]} caused by dlu_mm')
    for b in report['breaks']:
        owner = 'dlu_mm' if b['dlu_mm'] else 'other'
        print(f'  [{owner}] {b["where"]}: {b["reason"]}')
    report.update(compiled_vs_eager(forward, inputs, backend=args.backend))
    limit = args.atol + args.rtol * report['max_abs_value']
    print(f'compiled ({args.backend}) vs eager: {report["outputs"]} outputs, '
          f'max abs difference {report["max_abs_diff"]:.3g} '
          f'(limit {limit:.3g})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    ok = report['dlu_mm_breaks'] == 0 and report['max_abs_diff'] <= limit
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
