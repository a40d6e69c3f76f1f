"""The project's speed and memory targets, as ratios taken within one
benchmark run (machines are noisy; ratios of interleaved medians are not).

Modes: ``le`` -- case / reference <= threshold; ``speedup`` -- reference /
case >= threshold; ``bound`` -- case / its roofline bound <= threshold
(see :mod:`dlu_mm.benchmarking.roofline`); ``memory_le`` -- the case's
peak memory <= threshold x the reference's.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional


@dataclass(frozen=True)
class Target:
    label: str
    case: str
    ref: Optional[str]
    direction: str  # 'fwd' or 'fwd_bwd'
    mode: str
    threshold: float


# DLU forward+backward over portable CARAFE's, by scale (CPU): 75% of the
# ratio of their multiply-accumulates (1.63x at s=2, 2.30x at s=4).
CPU_SPEEDUP_OVER_CARAFE = {2: 1.3, 4: 1.7}


def targets_for(device_type: str, scale: int) -> List[Target]:
    """The targets that apply to a run on ``device_type`` at ``scale``."""
    if device_type == 'cuda':
        if scale != 2:
            return []
        return [
            Target('DLU fwd <= 2x bilinear fwd', 'dlu', 'bilinear', 'fwd',
                   'le', 2.0),
            Target('DLU fwd+bwd <= 3x bilinear fwd+bwd', 'dlu', 'bilinear',
                   'fwd_bwd', 'le', 3.0),
            Target("DLU fwd+bwd >= 2x faster than mmcv's CARAFE kernel",
                   'dlu', 'carafe[mmcv]', 'fwd_bwd', 'speedup', 2.0),
            Target('fused DLU op fwd within 2x of its bandwidth bound',
                   'dlu_reassemble[triton]', None, 'fwd', 'bound', 2.0),
            Target("DLU peak memory fwd <= portable CARAFE's", 'dlu',
                   'carafe_portable', 'fwd', 'memory_le', 1.0),
            Target("DLU peak memory fwd+bwd <= portable CARAFE's", 'dlu',
                   'carafe_portable', 'fwd_bwd', 'memory_le', 1.0),
        ]
    targets = [Target('DLU fwd <= 3x bilinear fwd', 'dlu', 'bilinear', 'fwd',
                      'le', 3.0)]
    if scale == 2:
        targets.append(Target('DLU fwd+bwd <= 1.5x bilinear fwd+bwd', 'dlu',
                              'bilinear', 'fwd_bwd', 'le', 1.5))
    if scale in CPU_SPEEDUP_OVER_CARAFE:
        limit = CPU_SPEEDUP_OVER_CARAFE[scale]
        targets.append(Target(
            f'DLU fwd+bwd >= {limit}x faster than portable CARAFE', 'dlu',
            'carafe_portable', 'fwd_bwd', 'speedup', limit))
    targets += [
        Target('fused DLU op fwd within 2x of its roofline bound',
               'dlu_reassemble[native]', None, 'fwd', 'bound', 2.0),
        Target('native reassembly fwd >= 10x faster than plain PyTorch',
               'reassemble[native]', 'reassemble[torch]', 'fwd', 'speedup',
               10.0),
        Target('native reassembly fwd+bwd >= 10x faster than plain PyTorch',
               'reassemble[native]', 'reassemble[torch]', 'fwd_bwd',
               'speedup', 10.0),
    ]
    return targets


def _value(entry: Dict, target: Target) -> Optional[float]:
    if target.mode == 'memory_le':
        peak = entry.get('peak_mib')
        return None if peak is None else peak[f'{target.direction}_mib']
    if target.mode == 'bound':
        bound = entry.get('roofline', {}).get(target.direction)
        return None if bound is None else bound['bound_ms']
    return entry[target.direction]['median_ms']


def evaluate(targets: List[Target], results: Dict) -> List[Dict]:
    """Each target's ratio and PASS / FAIL, or N/A with the reason."""
    out = []
    for t in targets:
        row = dict(target=t.label, threshold=t.threshold, mode=t.mode)
        needed = [c for c in (t.case, t.ref) if c is not None]
        missing = [c for c in needed if c not in results]
        if missing:
            out.append(dict(row, status='N/A', ratio=None,
                            reason=f'not measured: {", ".join(missing)}'))
            continue
        case = results[t.case]
        if t.mode == 'bound':
            bound = _value(case, t)
            if bound is None:
                out.append(dict(row, status='N/A', ratio=None,
                                reason='no roofline (--no-roofline)'))
                continue
            measured = case[t.direction]['median_ms']
            ratio = measured / bound
            detail = (f'{t.case} {measured:.3f} ms vs bound {bound:.3f} ms '
                      f'({t.direction})')
        else:
            a, b = _value(case, t), _value(results[t.ref], t)
            if a is None or b is None:
                out.append(dict(row, status='N/A', ratio=None,
                                reason='no peak memory (--no-memory)'))
                continue
            ratio = b / a if t.mode == 'speedup' else a / b
            unit = 'MiB' if t.mode == 'memory_le' else 'ms'
            detail = (f'{t.case} {a:.3f} {unit} vs {t.ref} {b:.3f} {unit} '
                      f'({t.direction})')
        ok = ratio >= t.threshold if t.mode == 'speedup' else \
            ratio <= t.threshold
        out.append(dict(row, status='PASS' if ok else 'FAIL', ratio=ratio,
                        measured=detail))
    return out
