"""Latency, peak memory and roofline of upsamplers and their ops, and the
project's speed targets.

Times the forward pass (inference, no autograd) and forward+backward of the
layers (nearest, bilinear, portable CARAFE, mmcv's CARAFE on CUDA, DLU on
the device's kernels and on the plain path), the layers' kernel prediction
alone (``[kernels]``), and the ops alone on each backend (``reassemble[..]``,
``dlu_reassemble[..]``; cases in :mod:`dlu_mm.benchmarking.cases`); prints
medians with their spread, ratios to bilinear, peak memory, the ops' bytes
and MACs against this machine's memory bandwidth and FMA rate measured in
the same run (the roofline bound and the fraction of it reached), and
PASS/FAIL for the targets (:mod:`dlu_mm.benchmarking.targets`), all ratios
taken in the same run:

    python tools/analysis/benchmark.py           # 1x256x120x120, s=2, CPU
    python tools/analysis/benchmark.py --scale 4 --json out.json
    python tools/analysis/benchmark.py --device cuda --dtype float16 \\
        --mmcv-sdist .whl/mmcv-2.1.0.tar.gz       # with mmcv's CUDA CARAFE
    python tools/analysis/benchmark.py --sweep   # cost vs H*W and s
    python tools/analysis/benchmark.py --img-size 512 512 --model \\
        configs/dlu/faster-rcnn_r50_fpn-dlu_1x_coco.py \\
        configs/dlu/faster-rcnn_r50_fpn-carafe-portable_1x_coco.py \\
        configs/dlu/faster-rcnn_r50_fpn-nearest_1x_coco.py   # it/s

Peak memory: on CPU each case runs once more in a fresh subprocess (glibc's
mmap threshold pinned at 64 KiB so freed tensors go back to the OS) and the
peak RSS above the RSS before the call is read from /proc; on CUDA
``torch.cuda.max_memory_allocated`` above the memory allocated before the
call. Imports torch and dlu_mm only (mmengine, mmdet: model mode only).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from dlu_mm.benchmarking import mmcv_carafe
from dlu_mm.benchmarking.cases import (CASES, UP_KERNEL, Case,
                                       default_cases, unavailable)
from dlu_mm.benchmarking.roofline import (PeakSteps, dlu_reassemble_cost,
                                          reassemble_cost)
from dlu_mm.benchmarking.targets import evaluate, targets_for
from dlu_mm.benchmarking.timing import (make_step, measure_peak_mib,
                                        summarise, sync, time_interleaved)

DTYPES = {'float32': torch.float32, 'float64': torch.float64,
          'bfloat16': torch.bfloat16, 'float16': torch.float16}
DIRECTIONS = ('fwd', 'fwd_bwd')


# -------------------------------------------------------------------- memory
def memory_in_subprocess(case: str, args) -> Dict[str, Optional[float]]:
    """Peak memory of one call of ``case`` in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), '--memory-worker',
           case, '--shape', *map(str, args.shape), '--scale', str(args.scale),
           '--dtype', args.dtype, '--device', args.device, '--threads',
           str(args.threads)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536',
               OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'memory worker for {case!r} failed:\n'
                           f'{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_worker(args) -> None:
    setup_threads(args)
    case = Case(args.memory_worker, tuple(args.shape), args.scale,
                torch.device(args.device), DTYPES[args.dtype])
    print(json.dumps(dict(fwd_mib=measure_peak_mib(case, backward=False),
                          fwd_bwd_mib=measure_peak_mib(case, backward=True))))


def peak_memory(name: str, case: Case, args) -> Dict[str, float]:
    if case.device.type == 'cpu':
        return memory_in_subprocess(name, args)
    return dict(fwd_mib=measure_peak_mib(case, False),
                fwd_bwd_mib=measure_peak_mib(case, True))


# ------------------------------------------------------------------ roofline
def op_costs(name: str, args) -> Optional[Dict]:
    """Bytes and MACs of an op case, per direction; None for layers."""
    itemsize = torch.empty(0, dtype=DTYPES[args.dtype]).element_size()
    if name.startswith('reassemble['):
        cost = reassemble_cost
    elif name.startswith('dlu_reassemble['):
        cost = dlu_reassemble_cost
    else:
        return None
    return cost(tuple(args.shape), UP_KERNEL, 1, args.scale, itemsize)


def add_roofline(results: Dict, peaks, args) -> None:
    for name, entry in results.items():
        costs = op_costs(name, args)
        if costs is None:
            continue
        entry['roofline'] = {}
        for d in DIRECTIONS:
            bound_s, limiter = costs[d].bound_s(peaks)
            entry['roofline'][d] = dict(
                bytes=costs[d].bytes, macs=costs[d].macs,
                bound_ms=bound_s * 1e3, limiter=limiter,
                fraction=bound_s * 1e3 / entry[d]['median_ms'])


# ----------------------------------------------------------------- main run
def setup_threads(args) -> None:
    if torch.device(args.device).type == 'cpu':
        torch.set_num_threads(args.threads)


def run_cases(args) -> Dict:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    if args.mmcv_sdist and device.type == 'cuda' and \
            mmcv_carafe.mmcv_op() is None:
        build_dir = args.mmcv_build_dir or tempfile.mkdtemp(
            prefix='mmcv_carafe_')
        start = time.perf_counter()
        try:
            mmcv_carafe.build(args.mmcv_sdist, build_dir)
            print(f"built mmcv's CARAFE from {args.mmcv_sdist} in "
                  f'{time.perf_counter() - start:.0f} s', flush=True)
        except Exception as err:  # the anchor is optional: the table goes on
            print(f"could not build mmcv's CARAFE from {args.mmcv_sdist} "
                  f'(its case is skipped): {mmcv_carafe.build_failure()}\n'
                  f'{str(err)[-3000:]}', flush=True)
    cases, skipped = {}, {}
    for name in args.cases or default_cases(device):
        reason = unavailable(name, device)
        if reason is not None:
            skipped[name] = reason
            continue
        torch.manual_seed(0)
        cases[name] = Case(name, tuple(args.shape), args.scale, device, dtype)
    results = {name: {} for name in cases}
    # The roofline's copy and matmul run in the same rounds as the cases, so
    # that a host whose speed drifts over the run bounds the ops with the
    # peaks of the same minutes.
    peak_steps = PeakSteps(device, dtype if dtype != torch.float16 or
                           device.type == 'cuda' else torch.float32) \
        if args.roofline else None
    peak_times = {'copy': [], 'matmul': []}
    for direction, backward in (('fwd', False), ('fwd_bwd', True)):
        steps = {name: make_step(case, backward)
                 for name, case in cases.items()}
        if peak_steps is not None:
            steps.update({f'roofline {k}': getattr(peak_steps, k)
                          for k in peak_times})
        times = time_interleaved(steps, args.warmup, args.repeats)
        for name in cases:
            results[name][direction] = summarise(times[name])
        for k in peak_times:
            peak_times[k] += times.get(f'roofline {k}', [])
    peaks = None
    if peak_steps is not None:
        peaks = peak_steps.peaks(peak_times['copy'], peak_times['matmul'])
        del peak_steps  # its buffers, before the memory subprocesses run
        add_roofline(results, peaks, args)
    if args.memory:
        for name, case in cases.items():
            results[name]['peak_mib'] = peak_memory(name, case, args)
    add_ratios(results)
    targets = targets_for(device.type, args.scale)
    return dict(results=results, skipped=skipped,
                peaks=peaks.as_dict() if peaks else None,
                targets=evaluate(targets, results),
                split=split(results))


def add_ratios(results: Dict) -> None:
    """``x_bilinear``: median / bilinear's median, per direction."""
    ref = results.get('bilinear')
    for entry in results.values():
        entry['x_bilinear'] = {
            d: (entry[d]['median_ms'] / ref[d]['median_ms'] if ref else None)
            for d in DIRECTIONS}


SPLITS = {  # layer: (its kernel prediction, its op on this layer's backend)
    'carafe_portable': ('carafe_portable[kernels]', 'reassemble[native]'),
    'dlu': ('dlu[kernels]', 'dlu_reassemble[native]'),
}


def split(results: Dict) -> Dict:
    """Each layer's time as kernel prediction + op (medians, ms), where the
    three cases were measured, with the op's roofline bound; and the
    ceiling on DLU's speed-up over portable CARAFE: CARAFE's measured time
    over DLU's kernel prediction plus its fused op at its bound -- no DLU
    kernel, however fast, beats that."""
    out = {}
    for layer, (kernels, op) in SPLITS.items():
        if all(c in results for c in (layer, kernels, op)):
            out[layer] = {}
            for d in DIRECTIONS:
                out[layer][d] = dict(
                    layer=results[layer][d]['median_ms'],
                    kernels=results[kernels][d]['median_ms'],
                    op=results[op][d]['median_ms'])
                bound = results[op].get('roofline', {}).get(d)
                if bound:
                    out[layer][d]['op_bound'] = bound['bound_ms']
    if 'dlu' in out and 'carafe_portable' in results:
        for d in DIRECTIONS:
            parts = out['dlu'][d]
            carafe = results['carafe_portable'][d]['median_ms']
            if 'op_bound' in parts:
                parts['speedup_ceiling'] = carafe / (parts['kernels'] +
                                                     parts['op_bound'])
            if 'carafe_portable' in out:  # the fused op as fast as
                reassembly = out['carafe_portable'][d]['op']  # CARAFE's op
                parts['speedup_at_equal_ops'] = carafe / (parts['kernels'] +
                                                          reassembly)
    return out


def _timing(d: Dict) -> str:
    return f'{d["median_ms"]:9.3f} [{d["q1_ms"]:.3f}-{d["q3_ms"]:.3f}]'


def _ratio(x: Optional[float]) -> str:
    return '-' if x is None else f'{x:.2f}'


def format_report(args, report: Dict) -> str:
    n, c, h, w = args.shape
    s = args.scale
    device = torch.device(args.device)
    threads = (f', {torch.get_num_threads()} threads'
               if device.type == 'cpu' else
               f' ({torch.cuda.get_device_name(device)})')
    lines = [
        f'Input {n}x{c}x{h}x{w} {args.dtype} -> {n}x{c}x{s * h}x{s * w} '
        f'(s={s}) on {args.device}{threads}; {args.repeats} timed calls '
        f'after {args.warmup} warm-up; k_up={UP_KERNEL}',
        'Times in ms: median [IQR q1-q3]; "x bil" = median / bilinear '
        'median; fwd runs under no_grad; fwd+bwd backpropagates a random '
        'output gradient to the inputs and parameters.',
        f'{"case":<26}{"fwd ms":>28}{"x bil":>7}{"fwd+bwd ms":>30}'
        f'{"x bil":>7}{"peak MiB fwd/fwd+bwd":>23}',
    ]
    for name, e in report['results'].items():
        xb = e['x_bilinear']
        mem = e.get('peak_mib')
        mem_s = f'{mem["fwd_mib"]:.1f} / {mem["fwd_bwd_mib"]:.1f}' \
            if mem else '-'
        lines.append(
            f'{name:<26}{_timing(e["fwd"]):>28}{_ratio(xb["fwd"]):>7}'
            f'{_timing(e["fwd_bwd"]):>30}{_ratio(xb["fwd_bwd"]):>7}'
            f'{mem_s:>23}')
    for name, reason in report['skipped'].items():
        lines.append(f'{name:<26}skipped: {reason}')
    lines.append('Peak MiB: memory one call adds above what was allocated '
                 'before it (CPU: peak RSS in a fresh subprocess; CUDA: '
                 'max_memory_allocated).')
    peaks = report.get('peaks')
    if peaks:
        lines += [
            '',
            f'Roofline: this machine moves {peaks["bandwidth_bytes_per_s"] / 1e9:.1f}'
            f' GB/s (a {peaks["copy_bytes"] >> 20} MiB copy, read + write) and '
            f'does {peaks["macs_per_s"] / 1e9:.1f} GMAC/s (a {peaks["matmul_size"]}'
            f'^3 {peaks["dtype"]} matmul), medians of calls timed round-robin '
            'with the cases in this run. An op can go '
            'no faster than its bytes at that bandwidth or its MACs at that '
            'rate (bound = the larger); "of bound" = bound / median.',
            f'{"op":<26}{"dir":>8}{"MiB moved":>11}{"GMACs":>8}{"bound ms":>10}'
            f'{"limit":>9}{"median ms":>11}{"of bound":>10}']
        for name, e in report['results'].items():
            for d, r in e.get('roofline', {}).items():
                lines.append(
                    f'{name:<26}{d:>8}{r["bytes"] / 2**20:>11.1f}'
                    f'{r["macs"] / 1e9:>8.3f}{r["bound_ms"]:>10.3f}'
                    f'{r["limiter"]:>9}{e[d]["median_ms"]:>11.3f}'
                    f'{100 * r["fraction"]:>9.0f}%')
    for layer, parts in report.get('split', {}).items():
        for d, p in parts.items():
            bound = (f', op bound {p["op_bound"]:.2f} ms' if 'op_bound' in p
                     else '')
            lines.append(
                f'Split of {layer} {d}: kernel prediction {p["kernels"]:.2f} '
                f'ms + op {p["op"]:.2f} ms (layer {p["layer"]:.2f} ms'
                f'{bound})')
            if 'speedup_ceiling' in p:
                lines.append(
                    f'  DLU {d} speed-up over portable CARAFE if its fused op '
                    f'ran at its roofline bound: {p["speedup_ceiling"]:.2f}x; '
                    f'if it took as long as CARAFE\'s reassembly: '
                    f'{p.get("speedup_at_equal_ops", float("nan")):.2f}x')
    lines += ['', 'Targets (ratios of medians from this run):']
    for t in report['targets']:
        if t['status'] == 'N/A':
            lines.append(f'  N/A   {t["target"]}: {t["reason"]}')
        else:
            lines.append(f'  {t["status"]:<5} {t["target"]}: '
                         f'{t["ratio"]:.2f}x (limit {t["threshold"]}x; '
                         f'{t["measured"]})')
    if not report['targets']:
        lines.append('  (none at this device and scale)')
    return '\n'.join(lines)


# --------------------------------------------------------------------- sweep
SWEEP_CASES = ('bilinear', 'carafe_portable', 'dlu')


def run_sweep(args) -> Dict:
    device = torch.device(args.device)
    n, c = args.shape[:2]
    itemsize = torch.empty(0, dtype=DTYPES[args.dtype]).element_size()
    rows = []
    for side in args.sweep_sizes:
        for s in args.sweep_scales:
            out_mib = n * c * (s * side)**2 * itemsize / 2**20
            row = dict(side=side, scale=s, output_mib=out_mib)
            if out_mib > args.max_output_mib:
                row['skipped'] = (f'output {out_mib:.0f} MiB > '
                                  f'--max-output-mib {args.max_output_mib}')
                rows.append(row)
                continue
            cases = {}
            for name in SWEEP_CASES:
                torch.manual_seed(0)
                cases[name] = Case(name, (n, c, side, side), s, device,
                                   DTYPES[args.dtype])
            for key, backward in (('fwd_ms', False), ('fwd_bwd_ms', True)):
                times = time_interleaved(
                    {k: make_step(v, backward) for k, v in cases.items()},
                    args.warmup, args.repeats)
                for name in SWEEP_CASES:
                    row.setdefault(name, {})[key] = summarise(
                        times[name])['median_ms']
            rows.append(row)
    return dict(rows=rows)


def format_sweep(args, sweep: Dict) -> str:
    n, c = args.shape[:2]
    lines = [
        f'Sweep: N={n}, C={c}, {args.dtype}, {args.device}; median ms of '
        f'{args.repeats} calls; fwd | fwd+bwd; "DLU/bil" and "CAR/DLU" are '
        f'ratios of fwd+bwd medians',
        f'{"HxW":>9} {"s":>2} {"H*W":>7}' + ''.join(
            f'{name:>22}' for name in SWEEP_CASES) +
        f'{"DLU/bil":>9}{"CAR/DLU":>9}',
    ]
    for r in sweep['rows']:
        head = f'{r["side"]:>4}x{r["side"]:<4} {r["scale"]:>2} ' \
               f'{r["side"] ** 2:>7}'
        if 'skipped' in r:
            lines.append(f'{head}   skipped: {r["skipped"]}')
            continue
        cells = ''.join(
            f'{r[name]["fwd_ms"]:>10.2f} |{r[name]["fwd_bwd_ms"]:>9.2f}'
            for name in SWEEP_CASES)
        dlu, bil, car = (r[k]['fwd_bwd_ms'] for k in ('dlu', 'bilinear',
                                                        'carafe_portable'))
        lines.append(f'{head}{cells}{dlu / bil:>9.2f}{car / dlu:>9.2f}')
    return '\n'.join(lines)


# --------------------------------------------------------------- model mode
def detector_batch(model, img_size: Tuple[int, int], device) -> Dict:
    """One packed image with 5 random boxes (mmdet's demo_mm_inputs)."""
    from mmdet.testing import demo_mm_inputs
    roi_head = getattr(model, 'roi_head', None)
    bbox_head = getattr(roi_head, 'bbox_head', None) or getattr(
        model, 'bbox_head', None)
    num_classes = getattr(bbox_head, 'num_classes', 80)
    with_mask = bool(getattr(roi_head, 'with_mask', False))
    return demo_mm_inputs(batch_size=1, image_shapes=(3, *img_size),
                          num_items=[5], num_classes=num_classes,
                          with_mask=with_mask, device=str(device))


def _model_cfg(config: str, cfg_options: Optional[Dict]):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.model.get('backbone')
    if backbone is not None:
        backbone['init_cfg'] = None  # no pretrained download
    return cfg


def _is_nearest_everywhere(model_cfg) -> bool:
    """True when every ``upsample_cfg`` with a type is ``nearest``."""
    from dlu_mm.layers.builder import iter_upsample_cfgs
    types = [owner['upsample_cfg']['type']
             for _, owner in iter_upsample_cfgs(model_cfg)
             if 'type' in owner['upsample_cfg']]
    return bool(types) and all(t == 'nearest' for t in types)


def fix_proposal_count(cfg) -> bool:
    """Set the RPN's test-time NMS IoU threshold to 1 so that the RoI head
    of every model gets ``max_per_img`` proposals: with random weights the
    number that survives NMS (and with it the inference time) otherwise
    depends on the initialisation more than on the upsampler. Training
    samples a fixed number of RoIs already. True if the config has one."""
    rpn = (cfg.model.get('test_cfg') or {}).get('rpn')
    if not rpn or 'nms' not in rpn:
        return False
    rpn['nms']['iou_threshold'] = 1.0
    return True


def model_steps(cfg, img_size, device) -> Tuple[Callable, Callable, int]:
    """Build the model of ``cfg`` (backbone ``init_cfg=None``) and return a
    train step (forward, loss, backward, SGD step) and an inference step
    (``test_step``, RPN proposals fixed in number by
    :func:`fix_proposal_count`) on one image, each returning seconds, and
    the parameter count."""
    from mmengine.logging import MMLogger
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    fix_proposal_count(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    data = detector_batch(model, img_size, device)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4,
                                         momentum=0.9))

    def timed(fn):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start

    def train_step():
        model.train()
        return timed(lambda: model.train_step(data, optim))

    def infer_step():
        model.eval()
        return timed(lambda: model.test_step(data))

    return train_step, infer_step, sum(p.numel() for p in model.parameters())


def run_models(args) -> Dict:
    """Train and inference steps of every config, interleaved round-robin
    (see :func:`time_interleaved`), and each one's overhead against the
    nearest-upsampling config (one of ``args.model`` whose every
    ``upsample_cfg`` is nearest, else the first config made so)."""
    device = torch.device(args.device)
    configs = list(args.model)
    cfgs = {c: _model_cfg(c, args.cfg_options) for c in configs}
    baseline = next((c for c in configs
                     if _is_nearest_everywhere(cfgs[c].model.to_dict())),
                    None)
    if baseline is None:  # build the nearest variant of the first config
        from dlu_mm.analysis.baselines import baseline_cfg
        first = cfgs[configs[0]]
        base_cfg = first.copy()
        base_cfg.model, replaced = baseline_cfg(first.model, 'nearest')
        if replaced:
            baseline = f'{configs[0]} [upsample_cfg -> nearest]'
            cfgs[baseline] = base_cfg
            configs.append(baseline)
    train, infer, params = {}, {}, {}
    for config in configs:
        print(f'building {config}', flush=True)
        train[config], infer[config], params[config] = model_steps(
            cfgs[config], tuple(args.img_size), device)
    entries = {c: dict(params=params[c]) for c in configs}
    for kind, steps in (('train', train), ('inference', infer)):
        print(f'timing {kind} steps', flush=True)
        times = time_interleaved(steps, args.model_warmup,
                                 args.model_repeats)
        for config in configs:
            entries[config][kind] = summarise(times[config])
    for config, e in entries.items():
        for kind in ('train', 'inference'):
            e[kind]['it_per_s'] = 1e3 / e[kind]['median_ms']
            e[kind]['overhead_vs_nearest'] = (
                e[kind]['median_ms'] / entries[baseline][kind]['median_ms'] -
                1 if baseline else None)
    return dict(baseline=baseline, models=entries)


def format_models(args, out: Dict) -> str:
    width = max(len(Path(c).name) for c in out['models']) + 2
    lines = [
        f'End-to-end, one {args.img_size[0]}x{args.img_size[1]} image, '
        f'{args.device}; median of {args.model_repeats} steps after '
        f'{args.model_warmup} warm-up; overhead = median time / nearest '
        f'baseline median - 1; train: forward, loss, backward, SGD step; '
        f'inference: test_step with the RPN test NMS IoU set to 1 (a fixed '
        f'number of proposals, whatever the random weights score)',
        f'{"config":<{width}}{"train it/s":>11}{"overhead":>10}'
        f'{"infer it/s":>11}{"overhead":>10}',
    ]
    for config, e in out['models'].items():
        cells = ''
        for kind in ('train', 'inference'):
            ov = e[kind]['overhead_vs_nearest']
            cells += (f'{e[kind]["it_per_s"]:>11.3f}' +
                      (f'{100 * ov:>+9.1f}%' if ov is not None else
                       f'{"-":>10}'))
        lines.append(f'{Path(config).name:<{width}}{cells}')
    if out['baseline'] is None:
        lines.append('no nearest baseline (no config with upsample_cfg): '
                     'overheads not computed')
    else:
        lines.append(f'nearest baseline: {out["baseline"]}')
    return '\n'.join(lines)


# ----------------------------------------------------------------------- cli
def _cfg_options(values):
    """``--cfg-options key=value ...`` as mmengine's DictAction parses them
    (imported only when given: the other modes need no mmengine)."""
    if not values:
        return None
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='cfg')(None, namespace, values)
    return namespace.cfg


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shape', type=int, nargs=4, default=[1, 256, 120, 120],
                   metavar=('N', 'C', 'H', 'W'), help='low-res input')
    p.add_argument('--scale', type=int, default=2, help='s')
    p.add_argument('--dtype', default='float32', choices=sorted(DTYPES))
    p.add_argument('--device', default='cpu')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--threads', type=int, default=2,
                   help='torch threads on CPU')
    p.add_argument('--cases', nargs='+',
                   help=f'subset of {CASES} (default: the device\'s)')
    p.add_argument('--no-memory', dest='memory', action='store_false',
                   help='skip the peak-memory measurements')
    p.add_argument('--no-roofline', dest='roofline', action='store_false',
                   help='skip the bandwidth / FMA-rate measurements')
    p.add_argument('--mmcv-sdist', help="mmcv's source distribution "
                   '(mmcv-2.1.0.tar.gz): on CUDA without mmcv, build its '
                   'CARAFE kernels from it for the carafe[mmcv] case')
    p.add_argument('--mmcv-build-dir', help='where to build them (default: '
                   'a temporary folder)')
    p.add_argument('--json', help='write the results here')
    p.add_argument('--sweep', action='store_true',
                   help='time bilinear/CARAFE/DLU over input sides and '
                   'scales instead')
    p.add_argument('--sweep-sizes', type=int, nargs='+',
                   default=[30, 60, 120, 240])
    p.add_argument('--sweep-scales', type=int, nargs='+', default=[2, 4, 8])
    p.add_argument('--max-output-mib', type=float, default=512,
                   help='sweep: skip settings whose output is larger')
    p.add_argument('--model', nargs='+', metavar='CONFIG',
                   help='time train and inference steps of these detector '
                   'configs instead')
    p.add_argument('--img-size', type=int, nargs=2, default=[512, 512],
                   metavar=('H', 'W'))
    p.add_argument('--model-warmup', type=int, default=1)
    p.add_argument('--model-repeats', type=int, default=5)
    p.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE')
    p.add_argument('--memory-worker', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bad = [c for c in args.cases or [] if c not in CASES]
    if bad:
        p.error(f'--cases {bad} unknown; choose from {list(CASES)}')
    for name in ('scale', 'repeats', 'threads', 'model_repeats'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1, got '
                    f'{getattr(args, name)}')
    if args.warmup < 0 or args.model_warmup < 0:
        p.error('--warmup/--model-warmup must be >= 0')
    if any(v < 1 for v in args.shape + args.img_size):
        p.error(f'--shape/--img-size must be positive, got {args.shape} / '
                f'{args.img_size}')
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        p.error(f'--device {args.device!r}: {err}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device!r}: CUDA is not available here')
    if args.mmcv_sdist and not os.path.isfile(args.mmcv_sdist):
        p.error(f'--mmcv-sdist {args.mmcv_sdist!r}: no such file')
    if args.model:
        missing = [c for c in args.model if not os.path.isfile(c)]
        if missing:
            p.error(f'--model config(s) not found: {missing}')
    args.cfg_options = _cfg_options(args.cfg_options)
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.memory_worker:
        memory_worker(args)
        return {}
    setup_threads(args)
    settings = {k: v for k, v in vars(args).items() if k != 'memory_worker'}
    if args.model:
        out = run_models(args)
        print(format_models(args, out))
    elif args.sweep:
        out = run_sweep(args)
        print(format_sweep(args, out))
    else:
        out = run_cases(args)
        print(format_report(args, out))
    out = dict(settings=settings, torch=torch.__version__,
               threads=torch.get_num_threads(), **out)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        print(f'wrote {args.json}')
    return out


if __name__ == '__main__':
    main(sys.argv[1:])
