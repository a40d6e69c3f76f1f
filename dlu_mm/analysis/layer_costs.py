"""Parameters and MACs of one upsampler of each kind (nearest, bilinear,
DySample, CARAFE, DLU) at C channels for a list of scale factors s, from the
formulas in :mod:`dlu_mm.complexity`, with DLU's reduction against CARAFE
and a check against the paper's table ("91% fewer parameters and at least
63% fewer FLOPs at 16x"). ``tools/analysis/complexity.py`` without a config
prints :func:`format_layer_table` of :func:`layer_report`.

Counts are MACs (multiply-accumulates; FLOPs = 2 x MACs), which is what
upsampler papers call FLOPs.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..complexity import (UpsamplerSpec, carafe_macs, carafe_params,
                          dlu_macs, dlu_params, dysample_macs,
                          dysample_params, interpolation_macs,
                          kernel_sampling_macs)

# The paper's complexity table (C=256, C_m=64, k_up=5, k_enc=3, G=1):
# s -> (DLU params, CARAFE params, DLU MACs/px, CARAFE MACs/px).
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


def layer_report(spec: UpsamplerSpec, scales: Sequence[int],
                 size: Tuple[int, int], dysample_groups: int = 4) -> Dict:
    """Everything the layer table shows, as one JSON-ready dict: settings,
    rows (:func:`layer_rows`), DLU vs CARAFE (:func:`reductions`), the
    paper check (:func:`paper_check`) and the notes. ``spec``'s scale
    factor is ignored: ``scales`` are used."""
    return dict(
        mode='layer', unit='MACs (FLOPs = 2 x MACs)',
        settings=dict(channels=spec.channels, scales=list(scales),
                      up_kernel=spec.up_kernel, up_group=spec.up_group,
                      encoder_kernel=spec.encoder_kernel,
                      compressed_channels=spec.compressed_channels,
                      size=list(size), dysample_groups=dysample_groups),
        rows=layer_rows(spec, scales, size, dysample_groups),
        dlu_vs_carafe=reductions(spec, scales),
        paper_check=paper_check(spec, scales), notes=LAYER_NOTES)


def write_layer_report(result: Dict, spec: UpsamplerSpec,
                       out_dir) -> List[Path]:
    """``upsampler_complexity.png`` (:func:`plot_layer`) and
    ``upsampler_complexity.json`` (``result``) in ``out_dir``; their
    paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, js = out / 'upsampler_complexity.png', out / \
        'upsampler_complexity.json'
    plot_layer(result['rows'], png, spec)
    with open(js, 'w') as f:
        json.dump(result, f, indent=2)
    return [png, js]
