"""Latency and peak memory of upsamplers, and the project's speed targets.

Times the forward pass (inference, no autograd) and forward+backward of
nearest, bilinear, portable CARAFE, mmcv CARAFE (CUDA only) and DLU on one
input, plus the reassembly op alone on its native and plain-PyTorch paths
and the two layers' kernel prediction alone (``[kernels]``: everything but
the reassembly they share); prints medians with their spread, ratios to
bilinear, peak memory, PASS/FAIL for the targets, and the ceiling that the
kernel prediction puts on DLU's speed-up over CARAFE, all ratios taken in
the same run:

    python tools/analysis/benchmark.py           # 1x256x120x120, s=2
    python tools/analysis/benchmark.py --shape 2 256 64 64 --scale 4 \\
        --json out.json
    python tools/analysis/benchmark.py --sweep   # cost vs H*W and s
    python tools/analysis/benchmark.py --img-size 512 512 --model \\
        configs/dlu/faster-rcnn_r50_fpn-dlu_1x_coco.py \\
        configs/dlu/faster-rcnn_r50_fpn-carafe-portable_1x_coco.py \\
        configs/dlu/faster-rcnn_r50_fpn-nearest_1x_coco.py   # it/s

Peak memory: on CPU each case runs once more in a fresh subprocess (glibc's
mmap threshold pinned at 64 KiB so freed tensors go back to the OS) and the
peak RSS above the RSS before the call is read from /proc (VmHWM, reset via
/proc/self/clear_refs); on CUDA ``torch.cuda.max_memory_allocated`` above
the memory allocated before the call.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

import dlu_mm  # noqa: F401  (registers dlu, carafe_portable and adapters)
from dlu_mm.layers import DLU, CARAFEPortable
from dlu_mm.layers.builder import iter_upsample_cfgs
from dlu_mm.ops import reassemble
from dlu_mm.ops import native as native_ops
from dlu_mm.ops import BACKEND_ENV

DTYPES = {'float32': torch.float32, 'float64': torch.float64,
          'bfloat16': torch.bfloat16, 'float16': torch.float16}
CASES = ('nearest', 'bilinear', 'carafe_portable', 'carafe', 'dlu',
         'dlu[torch]', 'carafe_portable[kernels]', 'dlu[kernels]',
         'reassemble[native]', 'reassemble[torch]')
# DLU and portable CARAFE differ only in how they predict the reassembly
# kernels: (CARAFE case, DLU case) of that part alone.
KERNEL_PREDICTION = ('carafe_portable[kernels]', 'dlu[kernels]')
UP_KERNEL = 5  # the paper's k_up for DLU / CARAFE and the op cases
# (name, case, reference case, direction, mode, threshold): the project's
# targets; 'le': case/ref <= threshold, 'speedup': ref/case >= threshold.
TARGETS = [
    ('DLU fwd <= 3x bilinear fwd', 'dlu', 'bilinear', 'fwd', 'le', 3.0),
    ('DLU fwd+bwd <= 4x bilinear fwd+bwd', 'dlu', 'bilinear', 'fwd_bwd',
     'le', 4.0),
    ('DLU fwd+bwd >= 1.5x faster than portable CARAFE', 'dlu',
     'carafe_portable', 'fwd_bwd', 'speedup', 1.5),
    ('native reassembly fwd >= 10x faster than plain PyTorch',
     'reassemble[native]', 'reassemble[torch]', 'fwd', 'speedup', 10.0),
    ('native reassembly fwd+bwd >= 10x faster than plain PyTorch',
     'reassemble[native]', 'reassemble[torch]', 'fwd_bwd', 'speedup', 10.0),
]


# --------------------------------------------------------------------- cases
@contextmanager
def reassembly_backend(name: Optional[str]):
    """Set ``$DLU_MM_REASSEMBLE_BACKEND`` for the block (read per call by
    :func:`dlu_mm.ops.reassemble`)."""
    if name is None:
        yield
        return
    old = os.environ.get(BACKEND_ENV)
    os.environ[BACKEND_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(BACKEND_ENV, None)
        else:
            os.environ[BACKEND_ENV] = old


def unavailable(case: str, device: torch.device) -> Optional[str]:
    """Why ``case`` cannot run on ``device``; None if it can."""
    if case == 'carafe' and device.type != 'cuda':
        return "mmcv's CARAFE op runs on CUDA only"
    if case == 'reassemble[native]':
        probe = torch.empty(0, device=device)
        return native_ops.unavailable_reason(probe)
    return None


class Case:
    """One benchmark case: ``run(inputs)`` -> output; ``inputs()`` makes
    fresh input tensors (requires_grad for fwd+bwd)."""

    def __init__(self, name: str, shape: Tuple[int, int, int, int], scale: int,
                 device: torch.device, dtype: torch.dtype):
        n, c, h, w = shape
        self.name, self.shape, self.scale = name, shape, scale
        self.device, self.dtype = device, dtype
        self.backend = None
        self.module = None
        # '[kernels]': the layer's predict_kernels() alone, no reassembly
        self.kernels_only = name.endswith('[kernels]')
        layer = name.removesuffix('[kernels]')
        if name in ('nearest', 'bilinear'):
            self.module = nn.Upsample(
                scale_factor=scale, mode=name,
                align_corners=None if name == 'nearest' else False)
        elif layer == 'carafe_portable':
            self.module = CARAFEPortable(c, scale, up_kernel=UP_KERNEL)
        elif name == 'carafe':
            from mmcv.ops import CARAFEPack
            self.module = CARAFEPack(c, scale, up_kernel=UP_KERNEL)
        elif layer in ('dlu', 'dlu[torch]'):
            self.module = DLU(c, scale, up_kernel=UP_KERNEL)
            self.backend = 'torch' if name == 'dlu[torch]' else None
        elif name.startswith('reassemble['):
            self.backend = name[len('reassemble['):-1]
        else:
            raise ValueError(f'unknown case {name!r}; cases: {CASES}')
        if self.module is not None:
            self.module.to(device=device, dtype=dtype)

    def inputs(self, requires_grad: bool) -> List[torch.Tensor]:
        n, c, h, w = self.shape
        x = torch.randn(n, c, h, w, device=self.device, dtype=self.dtype)
        tensors = [x]
        if self.module is None:  # the op alone: normalised k*k kernels
            s = self.scale
            masks = torch.randn(n, UP_KERNEL**2, s * h, s * w,
                                device=self.device, dtype=self.dtype)
            tensors.append(masks.softmax(dim=1))
        return [t.requires_grad_(requires_grad) for t in tensors]

    def output_shape(self) -> Tuple[int, int, int, int]:
        """(N, C, sH, sW); (N, k_up^2, sH, sW) for the '[kernels]' cases."""
        n, c, h, w = self.shape
        s = self.scale
        return (n, UP_KERNEL**2 if self.kernels_only else c, s * h, s * w)

    def run(self, tensors: List[torch.Tensor]) -> torch.Tensor:
        if self.kernels_only:  # DLU: its kernel space sampled at the offsets
            return self.module.predict_kernels(tensors[0]).per_pixel_kernels(
                self.scale)
        if self.module is None:
            return reassemble(tensors[0], tensors[1], UP_KERNEL, 1,
                              self.scale, backend=self.backend)
        with reassembly_backend(self.backend):
            return self.module(tensors[0])

    def zero_grad(self, tensors) -> None:
        for t in tensors:
            t.grad = None
        if self.module is not None:
            self.module.zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_step(case: Case, backward: bool):
    """A function that runs one call of ``case`` on fixed inputs and returns
    its duration in seconds: forward under no_grad, or forward + backward of
    a fixed random output gradient to the input(s) and parameters."""
    tensors = case.inputs(requires_grad=backward)
    grad = torch.randn(case.output_shape(), device=case.device,
                       dtype=case.dtype) if backward else None

    def step() -> float:
        case.zero_grad(tensors)
        _sync(case.device)
        start = time.perf_counter()
        if backward:
            case.run(tensors).backward(grad)
        else:
            with torch.no_grad():
                case.run(tensors)
        _sync(case.device)
        return time.perf_counter() - start

    step.tensors = tensors
    return step


def time_interleaved(steps: Dict[str, Callable[[], float]], warmup: int,
                     repeats: int) -> Dict[str, List[float]]:
    """Round-robin over ``steps``: ``warmup`` untimed rounds, then
    ``repeats`` timed ones, so that load which changes over the run (other
    processes) falls on every case alike and their ratios stay fair."""
    times = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            elapsed = step()
            if i >= warmup:
                times[name].append(elapsed)
    return times


def summarise(times: List[float]) -> Dict[str, float]:
    """Median, quartiles and extremes in milliseconds."""
    ms = sorted(t * 1e3 for t in times)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method='inclusive')
    else:
        q1 = q3 = ms[0]
    return dict(median_ms=statistics.median(ms), q1_ms=q1, q3_ms=q3,
                min_ms=ms[0], max_ms=ms[-1], samples=len(ms))


# -------------------------------------------------------------------- memory
def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def _reset_peak_rss() -> None:
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def measure_peak(case: Case, backward: bool) -> float:
    """Peak memory in MiB that one call adds above what was allocated
    before it (after one untimed call of the same kind)."""
    step = make_step(case, backward)
    step()
    case.zero_grad(step.tensors)  # the measured call starts from no grads
    if case.device.type == 'cuda':
        base = torch.cuda.memory_allocated(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        step()
        return (torch.cuda.max_memory_allocated(case.device) - base) / 2**20
    _reset_peak_rss()
    base = _proc_status_kib('VmRSS')
    step()
    return (_proc_status_kib('VmHWM') - base) / 1024


def memory_in_subprocess(case: str, args) -> Dict[str, Optional[float]]:
    """Run :func:`measure_peak` for ``case`` in a fresh interpreter."""
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
    print(json.dumps(dict(fwd_mib=measure_peak(case, backward=False),
                          fwd_bwd_mib=measure_peak(case, backward=True))))


# ----------------------------------------------------------------- main run
def setup_threads(args) -> None:
    if torch.device(args.device).type == 'cpu':
        torch.set_num_threads(args.threads)


def run_cases(args) -> Dict:
    device = torch.device(args.device)
    shape = tuple(args.shape)
    cases, skipped = {}, {}
    for name in args.cases:
        reason = unavailable(name, device)
        if reason is not None:
            skipped[name] = reason
            continue
        torch.manual_seed(0)
        cases[name] = Case(name, shape, args.scale, device,
                           DTYPES[args.dtype])
    results = {name: {} for name in cases}
    for direction, backward in (('fwd', False), ('fwd_bwd', True)):
        times = time_interleaved(
            {name: make_step(case, backward) for name, case in cases.items()},
            args.warmup, args.repeats)
        for name in cases:
            results[name][direction] = summarise(times[name])
    if args.memory:
        for name, case in cases.items():
            results[name]['peak_mib'] = (
                memory_in_subprocess(name, args) if device.type == 'cpu' else
                dict(fwd_mib=measure_peak(case, False),
                     fwd_bwd_mib=measure_peak(case, True)))
    add_ratios(results)
    return dict(results=results, skipped=skipped,
                targets=evaluate_targets(results),
                kernel_prediction_speedup=kernel_prediction_speedup(results))


def add_ratios(results: Dict) -> None:
    """``x_bilinear``: median / bilinear's median, per direction."""
    ref = results.get('bilinear')
    for entry in results.values():
        entry['x_bilinear'] = {
            d: (entry[d]['median_ms'] / ref[d]['median_ms'] if ref else None)
            for d in ('fwd', 'fwd_bwd')
        }


def evaluate_targets(results: Dict) -> List[Dict]:
    out = []
    for label, case, ref, direction, mode, threshold in TARGETS:
        if case not in results or ref not in results:
            missing = [c for c in (case, ref) if c not in results]
            out.append(dict(target=label, status='N/A', ratio=None,
                            threshold=threshold,
                            reason=f'not measured: {", ".join(missing)}'))
            continue
        a = results[case][direction]['median_ms']
        b = results[ref][direction]['median_ms']
        ratio = a / b if mode == 'le' else b / a
        ok = ratio <= threshold if mode == 'le' else ratio >= threshold
        out.append(dict(target=label, status='PASS' if ok else 'FAIL',
                        ratio=ratio, threshold=threshold,
                        measured=f'{case} {a:.3f} ms vs {ref} {b:.3f} ms '
                        f'({direction})'))
    return out


def kernel_prediction_speedup(results: Dict) -> Optional[Dict[str, float]]:
    """Portable CARAFE's kernel-prediction time over DLU's, per direction.
    The layers share the reassembly, so with t = prediction + reassembly
    their speed-up (a + R) / (b + R) never exceeds a / b when a > b: this
    is the ceiling a faster reassembly could lift it to. None when a case
    is missing."""
    carafe, dlu = KERNEL_PREDICTION
    if carafe not in results or dlu not in results:
        return None
    return {d: results[carafe][d]['median_ms'] / results[dlu][d]['median_ms']
            for d in ('fwd', 'fwd_bwd')}


def _timing(d: Dict) -> str:
    return (f'{d["median_ms"]:9.3f} [{d["q1_ms"]:.3f}-{d["q3_ms"]:.3f}]')


def _ratio(x: Optional[float]) -> str:
    return '-' if x is None else f'{x:.2f}'


def format_report(args, report: Dict) -> str:
    n, c, h, w = args.shape
    s = args.scale
    threads = (f', {torch.get_num_threads()} threads'
               if torch.device(args.device).type == 'cpu' else '')
    lines = [
        f'Input {n}x{c}x{h}x{w} {args.dtype} -> {n}x{c}x{s * h}x{s * w} '
        f'(s={s}) on {args.device}{threads}; {args.repeats} timed calls '
        f'after {args.warmup} warm-up; k_up={UP_KERNEL}',
        'Times in ms: median [IQR q1-q3]; "x bil" = median / bilinear '
        'median; fwd runs under no_grad; fwd+bwd backpropagates a random '
        'output gradient to the input and parameters.',
        f'{"case":<20}{"fwd ms":>28}{"x bil":>8}{"fwd+bwd ms":>28}'
        f'{"x bil":>8}{"peak MiB fwd/fwd+bwd":>24}',
    ]
    for name, e in report['results'].items():
        xb = e['x_bilinear']
        mem = e.get('peak_mib')
        mem_s = f'{mem["fwd_mib"]:.1f} / {mem["fwd_bwd_mib"]:.1f}' \
            if mem else '-'
        lines.append(
            f'{name:<20}{_timing(e["fwd"]):>28}{_ratio(xb["fwd"]):>8}'
            f'{_timing(e["fwd_bwd"]):>28}{_ratio(xb["fwd_bwd"]):>8}'
            f'{mem_s:>24}')
    for name, reason in report['skipped'].items():
        lines.append(f'{name:<20}skipped: {reason}')
    lines.append('Peak MiB: memory one call adds above what was allocated '
                 'before it (CPU: peak RSS in a fresh subprocess; CUDA: '
                 'max_memory_allocated).')
    lines.append('')
    lines.append('Targets (ratios of medians from this run):')
    for t in report['targets']:
        if t['status'] == 'N/A':
            lines.append(f'  N/A   {t["target"]}: {t["reason"]}')
        else:
            lines.append(f'  {t["status"]:<5} {t["target"]}: '
                         f'{t["ratio"]:.2f}x (limit {t["threshold"]}x; '
                         f'{t["measured"]})')
    ceiling = report.get('kernel_prediction_speedup')
    if ceiling is not None:
        lines.append(
            f'Kernel prediction alone, portable CARAFE / DLU: '
            f'{ceiling["fwd"]:.2f}x fwd, {ceiling["fwd_bwd"]:.2f}x fwd+bwd '
            f'(the reassembly is shared, so no faster reassembly lifts the '
            f'layer speed-up above this).')
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
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
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
def parse_args(argv=None):
    from mmengine.config import DictAction
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
    p.add_argument('--cases', nargs='+', default=list(CASES),
                   help=f'subset of {CASES}')
    p.add_argument('--no-memory', dest='memory', action='store_false',
                   help='skip the peak-memory measurements')
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
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--memory-worker', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bad = [c for c in args.cases if c not in CASES]
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
    if args.model:
        missing = [c for c in args.model if not os.path.isfile(c)]
        if missing:
            p.error(f'--model config(s) not found: {missing}')
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
