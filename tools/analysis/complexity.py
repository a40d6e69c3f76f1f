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
sampling that mmengine alone would skip.
"""
import argparse
import copy
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

import dlu_mm  # noqa: F401  (registers dlu, carafe_portable and adapters)
from dlu_mm.complexity import (UpsamplerSpec, carafe_macs, carafe_params,
                               dlu_macs, dlu_params, dysample_macs,
                               dysample_params, interpolation_macs,
                               kernel_sampling_macs)
from dlu_mm.layers.builder import iter_upsample_cfgs

# The paper's complexity table (C=256, C_m=64, k_up=5, k_enc=3, G=1):
# s -> (DLU params, CARAFE params, DLU MACs/px, CARAFE MACs/px).
PAPER_SPEC = UpsamplerSpec()
PAPER_TABLE = {
    2: (35489, 74148, 60992, 99584),
    4: (49337, 247248, 151616, 349184),
    8: (104729, 939648, 514112, 1347584),
    16: (326297, 3709248, 1964096, 5341184),
}
PAPER_HEADLINE = ('paper: "91% fewer parameters and at least 63% fewer '
                  'FLOPs than CARAFE at 16x"')
LAYER_NOTES = [
    'MACs per input pixel of one upsampler; multiply by N*H*W for a map. '
    'FLOPs = 2 x MACs; upsampler papers (CARAFE, DLU) call MACs "FLOPs".',
    'Counted, as in the paper: the 1x1 channel compressor C*C_m, the '
    'k_enc x k_enc encoder convs k_enc^2*C_m*(output channels), and the '
    'reassembly s^2*k_up^2*C. Not counted: conv bias adds, softmax, pixel '
    'shuffle.',
    "The paper's DLU count leaves out the bilinear sampling of the kernel "
    'space (4 MACs per sampled value, 4*s^2*G*k_up^2 per input pixel); row '
    '"DLU+sampling" adds it, which is what a traced DLU module counts.',
    'nearest / bilinear: no parameters; counted as mmengine/fvcore do, 1 '
    '(a copy) / 4 MACs per output value.',
    'DySample: the "lp", static-scope point sampler (Liu et al., ICCV 2023, '
    'groups=4): a 1x1 offset conv C -> 2*4*s^2 plus bilinear sampling of the '
    'input, 4 MACs per output value (offset scaling not counted).',
]


# ---------------------------------------------------------------- layer mode
def layer_rows(spec: UpsamplerSpec, scales: Sequence[int], size: Tuple[int,
                                                                      int],
               dysample_groups: int = 4) -> List[Dict]:
    """One row per (s, upsampler) with params, MACs per input pixel, MACs of
    the whole (1, C, H, W) input, and reductions against CARAFE."""
    rows = []
    pixels = size[0] * size[1]
    for s in scales:
        sp = UpsamplerSpec(spec.channels, s, spec.up_kernel, spec.up_group,
                           spec.encoder_kernel, spec.compressed_channels)
        entries = [
            ('nearest', 0, interpolation_macs(sp, 'nearest')),
            ('bilinear', 0, interpolation_macs(sp, 'bilinear')),
            ('DySample', dysample_params(sp, dysample_groups),
             dysample_macs(sp, dysample_groups)),
            ('CARAFE', carafe_params(sp), carafe_macs(sp)),
            ('DLU', dlu_params(sp), dlu_macs(sp)),
            ('DLU+sampling', dlu_params(sp), dlu_macs(sp, with_sampling=True)),
        ]
        ref_params, ref_macs = carafe_params(sp), carafe_macs(sp)
        for name, params, macs in entries:
            rows.append(
                dict(scale=s, upsampler=name, params=params,
                     macs_per_input_pixel=macs, macs=macs * pixels,
                     params_reduction_vs_carafe=1 - params / ref_params,
                     macs_reduction_vs_carafe=1 - macs / ref_macs))
    return rows


def reductions(spec: UpsamplerSpec, scales: Sequence[int]) -> Dict[str, Dict]:
    """DLU vs CARAFE per scale: fraction of parameters and MACs saved (the
    paper's count, and with DLU's kernel sampling)."""
    out = {}
    for s in scales:
        sp = UpsamplerSpec(spec.channels, s, spec.up_kernel, spec.up_group,
                           spec.encoder_kernel, spec.compressed_channels)
        out[str(s)] = dict(
            params=1 - dlu_params(sp) / carafe_params(sp),
            macs_paper_count=1 - dlu_macs(sp) / carafe_macs(sp),
            macs_with_sampling=1 - dlu_macs(sp, True) / carafe_macs(sp),
            kernel_sampling_macs_per_input_pixel=kernel_sampling_macs(sp))
    return out


def paper_check(spec: UpsamplerSpec, scales: Sequence[int]) -> Optional[Dict]:
    """Our formulas against the paper's table, for the scales it lists; None
    unless ``spec`` has the paper's settings."""
    if spec != UpsamplerSpec(scale_factor=spec.scale_factor):
        return None
    check = {}
    for s in scales:
        if s not in PAPER_TABLE:
            continue
        sp = UpsamplerSpec(scale_factor=s)
        ours = (dlu_params(sp), carafe_params(sp), dlu_macs(sp),
                carafe_macs(sp))
        check[str(s)] = dict(paper=list(PAPER_TABLE[s]), ours=list(ours),
                             match=ours == PAPER_TABLE[s])
    return check


def _pct(x: float) -> str:
    return f'{100 * x:5.1f}%'


def format_layer_table(spec: UpsamplerSpec, size: Tuple[int, int],
                       rows: List[Dict], red: Dict, check: Optional[Dict]
                       ) -> str:
    h, w = size
    lines = [
        f'One upsampler: C={spec.channels}, C_m={spec.compressed_channels}, '
        f'k_up={spec.up_kernel}, k_enc={spec.encoder_kernel}, '
        f'G={spec.up_group}; input 1x{spec.channels}x{h}x{w}',
        f'{"s":>3} {"upsampler":<13} {"params":>11} {"fewer":>7} '
        f'{"MACs/in-px":>12} {"fewer":>7} {"GMACs@" + f"{h}x{w}":>12}',
    ]
    for r in rows:
        carafe = r['upsampler'] in ('CARAFE', 'nearest', 'bilinear')
        fewer_p = '' if carafe else _pct(r['params_reduction_vs_carafe'])
        fewer_m = '' if carafe else _pct(r['macs_reduction_vs_carafe'])
        lines.append(f'{r["scale"]:>3} {r["upsampler"]:<13} '
                     f'{r["params"]:>11,} {fewer_p:>7} '
                     f'{r["macs_per_input_pixel"]:>12,} {fewer_m:>7} '
                     f'{r["macs"] / 1e9:>12.3f}')
    lines.append('("fewer": reduction against CARAFE at the same s)')
    lines.append('')
    lines.append('DLU vs CARAFE:')
    for s, d in red.items():
        extra = d['kernel_sampling_macs_per_input_pixel']
        lines.append(f'  s={s:>2}: {_pct(d["params"])} fewer parameters, '
                     f'{_pct(d["macs_paper_count"])} fewer MACs (paper\'s '
                     f'count), {_pct(d["macs_with_sampling"])} with the '
                     f'kernel sampling (+{extra:,} MACs/in-px)')
    if check is not None:
        lines.append('')
        lines.append(f'Against the paper\'s table ({PAPER_HEADLINE}):')
        for s, c in check.items():
            lines.append(f'  s={s:>2}: DLU params, CARAFE params, DLU MACs, '
                         f'CARAFE MACs = {c["ours"]} '
                         f'{"match" if c["match"] else "DIFFER from"} the '
                         f'paper {c["paper"]}')
        if '16' in red:
            d = red['16']
            lines.append(f'  headline at 16x: {round(100 * d["params"])}% '
                         f'fewer parameters, '
                         f'{round(100 * d["macs_paper_count"])}% fewer MACs '
                         f'({100 * d["macs_with_sampling"]:.1f}% counting '
                         f'the kernel sampling)')
    lines.append('')
    lines.extend('Note: ' + n for n in LAYER_NOTES)
    return '\n'.join(lines)


def plot_layer(rows: List[Dict], path: Path, spec: UpsamplerSpec) -> None:
    """Params and MACs per input pixel vs s (log scales), DLU vs CARAFE
    (DySample and bilinear for reference)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = {'CARAFE': 'o-', 'DLU': 's-', 'DLU+sampling': 'x--',
              'DySample': '^:', 'bilinear': '.:'}
    for name, style in styles.items():
        pts = [r for r in rows if r['upsampler'] == name]
        xs = [r['scale'] for r in pts]
        if name not in ('DLU+sampling', 'bilinear'):
            axes[0].plot(xs, [r['params'] for r in pts], style, label=name)
        axes[1].plot(xs, [r['macs_per_input_pixel'] for r in pts], style,
                     label=name)
    for ax, title in zip(axes, ('parameters', 'MACs per input pixel')):
        ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.set_xticks(sorted({r['scale'] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel('scale factor s')
        ax.set_title(title)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
    fig.suptitle(f'One upsampler, C={spec.channels}, C_m='
                 f'{spec.compressed_channels}, k_up={spec.up_kernel}, '
                 f'k_enc={spec.encoder_kernel}, G={spec.up_group}')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_layer_mode(args) -> Dict:
    spec = UpsamplerSpec(args.channels, args.scales[0], args.up_kernel,
                         args.up_group, args.encoder_kernel,
                         args.compressed_channels)
    size = tuple(args.size)
    rows = layer_rows(spec, args.scales, size, args.dysample_groups)
    red = reductions(spec, args.scales)
    check = paper_check(spec, args.scales)
    print(format_layer_table(spec, size, rows, red, check))
    result = dict(
        mode='layer', unit='MACs (FLOPs = 2 x MACs)',
        settings=dict(channels=spec.channels, scales=list(args.scales),
                      up_kernel=spec.up_kernel, up_group=spec.up_group,
                      encoder_kernel=spec.encoder_kernel,
                      compressed_channels=spec.compressed_channels,
                      size=list(size), dysample_groups=args.dysample_groups),
        rows=rows, dlu_vs_carafe=red, paper_check=check, notes=LAYER_NOTES)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_layer(rows, out / 'upsampler_complexity.png', spec)
        with open(out / 'upsampler_complexity.json', 'w') as f:
            json.dump(result, f, indent=2)
        print(f'\nwrote {out / "upsampler_complexity.png"} and '
              f'{out / "upsampler_complexity.json"}')
    return result


# --------------------------------------------------------------- config mode
def baseline_cfg(model_cfg, upsample_type: str = 'nearest'
                 ) -> Tuple[Dict, int]:
    """A copy of ``model_cfg`` (a ConfigDict) with every ``upsample_cfg``
    that has a ``type`` replaced by ``dict(type=upsample_type)`` (keeping a
    ``scale_factor`` key, which some heads read); returns (cfg, number of
    replacements)."""
    from mmengine.config import ConfigDict

    model = copy.deepcopy(_plain(model_cfg))
    count = 0
    for _, owner in iter_upsample_cfgs(model):
        up = owner['upsample_cfg']
        if 'type' in up:
            count += 1
            owner['upsample_cfg'] = dict(type=upsample_type, **{
                k: v for k, v in up.items() if k == 'scale_factor'})
    return ConfigDict(model), count


def _plain(cfg):
    """ConfigDict -> dict, recursively."""
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else copy.deepcopy(cfg)


def upsampler_classes() -> tuple:
    """Classes registered as upsample layers (nn.Upsample, DLU, ...)."""
    from mmengine.registry import MODELS

    from dlu_mm.layers.builder import registered_upsample_types
    classes = {MODELS.get(name) for name in registered_upsample_types()}
    return tuple(c for c in classes if isinstance(c, type))


def find_upsamplers(model: nn.Module) -> Dict[str, nn.Module]:
    """Outermost submodules that are registered upsample layers."""
    classes = upsampler_classes()
    found = {}
    for name, module in model.named_modules():
        if any(name.startswith(p + '.') for p in found):
            continue
        if name and isinstance(module, classes):
            found[name] = module
    return found


def dummy_input_shape(model_cfg, shape: Sequence[int]) -> Tuple[int, ...]:
    """(1, 3, H, W) with H, W padded up to the data preprocessor's
    ``pad_size_divisor`` / ``size_divisor``, as the model would see them."""
    pre = model_cfg.get('data_preprocessor') or {}
    div = pre.get('pad_size_divisor') or pre.get('size_divisor') or 1
    h, w = (-(-v // div) * div for v in shape)
    return (1, 3, h, w)


def traced_forward(model: nn.Module):
    """The function traced and a description of what it covers: backbone
    + neck + dense head for detectors (two-stage: RPN head; one-stage: bbox
    head), backbone + decode head for segmentors, else ``model(x)``."""
    if hasattr(model, 'extract_feat'):
        if getattr(model, 'with_rpn', False):
            def backbone_neck_rpn(x):
                feats = model.extract_feat(x)
                return feats, model.rpn_head(feats)

            return (backbone_neck_rpn,
                    'backbone + neck + rpn_head (roi_head not traced: its '
                    'cost depends on the number of proposals)')
        if hasattr(model, 'bbox_head'):
            return (lambda x: model.bbox_head(model.extract_feat(x)),
                    'backbone + neck + bbox_head (no post-processing)')
        if hasattr(model, 'decode_head'):
            return (lambda x: model.decode_head(model.extract_feat(x)),
                    'backbone (+ neck) + decode_head (auxiliary head not '
                    'traced: it does not run at inference)')
        return model.extract_feat, 'extract_feat (backbone + neck)'
    return model.forward, 'model(x)'


def analyse_model(model: nn.Module, input_shape: Sequence[int]) -> Dict:
    """Trace ``model`` on a random (N, 3, H, W) tensor; totals, per-
    upsampler counts and formula counts, uncounted ops."""
    from mmengine.analysis import parameter_count
    from mmengine.model import revert_sync_batchnorm

    from dlu_mm.flop_counting import flop_analyzer, upsampler_formula_macs

    model = revert_sync_batchnorm(model).eval()
    ups = find_upsamplers(model)
    calls = {name: [] for name in ups}
    handles = [
        m.register_forward_pre_hook(
            lambda mod, inp, name=name: calls[name].append(
                tuple(int(v) for v in inp[0].shape)))
        for name, m in ups.items()
    ]
    fn, covered = traced_forward(model)
    if fn is not model.forward:
        model.forward = fn  # instance attribute: what the trace calls
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            analyzer = flop_analyzer(model, (torch.randn(*input_shape), ),
                                     warn_unsupported=False)
            analyzer.uncalled_modules_warnings(False)
            total = int(analyzer.total())
            by_module = analyzer.by_module()
            uncounted = dict(analyzer.unsupported_ops())
    finally:
        for h in handles:
            h.remove()
        model.__dict__.pop('forward', None)
    params = parameter_count(model)
    per_up = []
    for name, m in ups.items():
        shapes = calls[name]
        formula = [upsampler_formula_macs(m, s) for s in shapes]
        per_up.append(
            dict(name=name, type=type(m).__name__, repr=m.extra_repr(),
                 input_shapes=[list(s) for s in shapes], params=params[name],
                 macs=int(by_module[name]),
                 formula_macs=(sum(formula) if shapes and None not in formula
                               else None)))
    return dict(
        input_shape=list(input_shape), traced=covered, macs=total,
        params=params[''],
        upsampler_macs=sum(u['macs'] for u in per_up),
        upsampler_params=sum(u['params'] for u in per_up),
        upsamplers=per_up,
        uncounted_ops={k.split('::')[-1]: v for k, v in uncounted.items()})


def build_model(model_cfg, default_scope: Optional[str]):
    from mmengine.registry import MODELS, init_default_scope
    if default_scope:
        init_default_scope(default_scope)
    # a copy: builders edit their config in place (mmseg's EncoderDecoder
    # moves ``pretrained`` into the backbone's), which the baseline reuses
    return MODELS.build(copy.deepcopy(model_cfg))


def run_config_mode(args) -> Dict:
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope', None)
    input_shape = dummy_input_shape(cfg.model, args.shape)
    torch.manual_seed(0)
    result = dict(mode='config', config=str(args.config),
                  requested_shape=list(args.shape),
                  unit='MACs (FLOPs = 2 x MACs)')
    result['model'] = analyse_model(build_model(cfg.model, scope),
                                    input_shape)
    base_cfg, replaced = baseline_cfg(cfg.model, args.baseline)
    result['baseline_type'] = args.baseline
    result['upsample_cfgs_replaced'] = replaced
    if replaced:
        torch.manual_seed(0)
        try:
            base_model = build_model(base_cfg, scope)
        except (ValueError, TypeError, KeyError) as err:
            result['baseline_error'] = (
                f'the config with upsample_cfg type={args.baseline!r} does '
                f'not build: {err}')
            base_model = None
    if replaced and base_model is not None:
        base = analyse_model(base_model, input_shape)
        result['baseline'] = base
        result['delta_vs_baseline'] = dict(
            macs=result['model']['macs'] - base['macs'],
            params=result['model']['params'] - base['params'],
            macs_rel=(result['model']['macs'] - base['macs']) / base['macs'],
            params_rel=(result['model']['params'] - base['params']) /
            base['params'])
    print(format_config_report(result))
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / (Path(args.config).stem + '_complexity.json')
        with open(path, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'\nwrote {path}')
    return result


def _g(macs: int) -> str:
    return f'{macs / 1e9:.3f} G'


def _m(params: int) -> str:
    return f'{params / 1e6:.3f} M'


def format_config_report(result: Dict) -> str:
    from dlu_mm.flop_counting import counted_ops_note
    m = result['model']
    n, c, h, w = m['input_shape']
    req = result['requested_shape']
    lines = [
        f'Config: {result["config"]}',
        f'Input: {n}x{c}x{h}x{w}' + (
            f' ({req[0]}x{req[1]} padded to the data preprocessor\'s '
            f'divisor)' if [h, w] != req else ''),
        f'Traced: {m["traced"]}',
        f'Parameters: whole model; MACs: the traced part.',
        '',
        f'{"":<24}{"params":>14}{"MACs":>14}',
        f'{"model":<24}{_m(m["params"]):>14}{_g(m["macs"]):>14}',
        f'{"upsamplers":<24}{_m(m["upsampler_params"]):>14}'
        f'{_g(m["upsampler_macs"]):>14}   '
        f'({100 * m["upsampler_params"] / max(m["params"], 1):.2f}% of '
        f'params, {100 * m["upsampler_macs"] / max(m["macs"], 1):.2f}% of '
        f'MACs)',
    ]
    kind = result['baseline_type']
    if 'baseline' in result:
        b, d = result['baseline'], result['delta_vs_baseline']
        lines += [
            f'{kind + " baseline":<24}{_m(b["params"]):>14}'
            f'{_g(b["macs"]):>14}   ({result["upsample_cfgs_replaced"]} '
            f'upsample_cfg(s) set to type={kind})',
            f'{"delta vs " + kind:<24}{d["params"]:>+14,}'
            f'{d["macs"] / 1e9:>+12.3f} G   ({100 * d["params_rel"]:+.2f}% '
            f'params, {100 * d["macs_rel"]:+.2f}% MACs)',
        ]
    elif 'baseline_error' in result:
        lines.append(f'no {kind} baseline: {result["baseline_error"]} '
                     f'(try --baseline bilinear / nearest)')
    else:
        lines.append(f'no upsample_cfg with a type in the config: no '
                     f'{kind} baseline to compare with')
    lines += ['', 'Upsamplers (traced MACs vs dlu_mm.complexity formula):']
    for u in m['upsamplers']:
        shapes = ', '.join('x'.join(map(str, s)) for s in u['input_shapes'])
        formula = ('-' if u['formula_macs'] is None else
                   f'{u["formula_macs"]:,}' +
                   (' (equal)' if u['formula_macs'] == u['macs'] else
                    ' (DIFFERENT)'))
        lines.append(f'  {u["name"]}: {u["type"]}({u["repr"]}) input '
                     f'{shapes or "not traced"}; params {u["params"]:,}; '
                     f'MACs {u["macs"]:,}; formula {formula}')
    lines += ['', 'Counted:']
    lines += [f'  {k}: {v}' for k, v in counted_ops_note().items()]
    if m['uncounted_ops']:
        lines.append('  ops in the trace without a handle (0 MACs): ' +
                     ', '.join(f'{k} x{v}'
                               for k, v in sorted(m['uncounted_ops'].items())))
    return '\n'.join(lines)


# ----------------------------------------------------------------------- cli
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


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.config:
        return run_config_mode(args)
    return run_layer_mode(args)


if __name__ == '__main__':
    main(sys.argv[1:])
