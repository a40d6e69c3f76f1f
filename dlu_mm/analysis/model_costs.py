"""Parameters and MACs of a model built from a config, the upsamplers'
share, and the change against the same config with every ``upsample_cfg``
switched to a fixed interpolation (:mod:`.baselines`).
``tools/analysis/complexity.py CONFIG`` prints :func:`format_config_report`
of :func:`config_report`.

The model is traced with ``mmengine.analysis.FlopAnalyzer`` plus the handles
of :mod:`dlu_mm.flop_counting`, which count the reassembly and the kernel
sampling that mmengine alone would skip. Counts are MACs (FLOPs = 2 x MACs).
"""
import copy
import json
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .baselines import baseline_cfg


def upsampler_classes() -> tuple:
    """Classes registered as upsample layers (nn.Upsample, DLU, ...)."""
    from mmengine.registry import MODELS

    from ..layers.builder import registered_upsample_types
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

    from ..flop_counting import flop_analyzer, upsampler_formula_macs

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


def config_report(config: str, shape: Sequence[int],
                  baseline: str = 'nearest',
                  cfg_options: Optional[Dict] = None) -> Dict:
    """Build the model of ``config`` (with ``cfg_options`` merged) and its
    ``baseline`` variant (:func:`.baselines.baseline_cfg`), trace both on a
    (1, 3, H, W) input (``shape`` = (H, W), padded as the data preprocessor
    pads), and return totals, per-upsampler counts and the difference as
    one JSON-ready dict. A baseline that does not build is reported under
    ``baseline_error``."""
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', None)
    input_shape = dummy_input_shape(cfg.model, shape)
    torch.manual_seed(0)
    result = dict(mode='config', config=str(config),
                  requested_shape=list(shape),
                  unit='MACs (FLOPs = 2 x MACs)')
    result['model'] = analyse_model(build_model(cfg.model, scope),
                                    input_shape)
    base_cfg, replaced = baseline_cfg(cfg.model, baseline)
    result['baseline_type'] = baseline
    result['upsample_cfgs_replaced'] = replaced
    base_model = None
    if replaced:
        torch.manual_seed(0)
        try:
            base_model = build_model(base_cfg, scope)
        except (ValueError, TypeError, KeyError) as err:
            result['baseline_error'] = (
                f'the config with upsample_cfg type={baseline!r} does '
                f'not build: {err}')
    if base_model is not None:
        base = analyse_model(base_model, input_shape)
        result['baseline'] = base
        result['delta_vs_baseline'] = dict(
            macs=result['model']['macs'] - base['macs'],
            params=result['model']['params'] - base['params'],
            macs_rel=(result['model']['macs'] - base['macs']) / base['macs'],
            params_rel=(result['model']['params'] - base['params']) /
            base['params'])
    return result


def write_config_report(result: Dict, out_dir) -> Path:
    """``<config name>_complexity.json`` in ``out_dir``; its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (Path(result['config']).stem + '_complexity.json')
    with open(path, 'w') as f:
        json.dump(result, f, indent=2)
    return path


def _g(macs: int) -> str:
    return f'{macs / 1e9:.3f} G'


def _m(params: int) -> str:
    return f'{params / 1e6:.3f} M'


def format_config_report(result: Dict) -> str:
    from ..flop_counting import counted_ops_note
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
