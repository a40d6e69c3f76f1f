"""Compile every Triton kernel of :mod:`dlu_mm.ops.triton_kernels` for a
GPU architecture, on any machine (Triton's compiler and ptxas need no GPU):
the check for what Triton's interpreter cannot see -- types, constexpr
specialisation (an integer argument equal to 1 becomes a constexpr),
register and shared-memory limits.

    python -m dlu_mm.ops.triton_build_check [--arch 90 80] [--all]

Prints one line per compiled variant and exits non-zero if one fails. Run
it in a process where Triton compiles (``TRITON_INTERPRET`` unset).
"""
import argparse
import sys
import time
from typing import Dict, Iterator, List, Tuple

DTYPES = {'fp32': 'fp32', 'fp16': 'fp16', 'bf16': 'bf16', 'fp64': 'fp64'}


# (dtype, k, s, integer arguments equal to 1): every dtype, kernel sizes
# 1-7, scales 1-8 and sizes of 1, each in at least one setting.
COVERING = [('fp32', 5, 2, ('H', 'W', 'G', 'CG')), ('fp16', 3, 3, ()),
            ('bf16', 7, 8, ()), ('fp64', 1, 4, ()), ('fp32', 5, 1, ())]
ALL = [(dtype, k, s, ()) for dtype in DTYPES for k in (1, 3, 5, 7)
       for s in (1, 2, 3, 4, 8)] + [('fp32', 5, 2, ('H', 'W', 'G', 'CG'))]


def variants(settings=COVERING) -> Iterator[Tuple[str, str, Dict]]:
    """(kernel name, pointer dtype, constexpr values) of every kernel in
    each setting."""
    kernels = [('_forward', dict(SAMPLED=False)),
               ('_forward', dict(SAMPLED=True)),
               ('_features_grad', dict(SAMPLED=False)),
               ('_features_grad', dict(SAMPLED=True)),
               ('_masks_grad', {}), ('_sampling_grad', {})]
    from . import triton_backend as tb  # the block sizes the ops launch
    for name, flags in kernels:
        for dtype, k, s, ones in settings:
            consts = dict(flags, K=k, S=s, BLOCK_C=tb.BLOCK_C)
            if name == '_features_grad':
                sub_pixels = 1 << (s * s - 1).bit_length()
                consts.update(BLOCK_Q=max(1, tb.BLOCK_E // sub_pixels),
                              SS=sub_pixels)
            else:
                consts['BLOCK_P'] = tb.BLOCK_P_SAMPLED if flags.get(
                    'SAMPLED') or name == '_sampling_grad' else tb.BLOCK_P
            consts.update({arg: 1 for arg in ones})
            yield name, dtype, consts


def compile_all(archs: List[int], settings=COVERING) -> List[str]:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import triton_kernels
    failures = []
    for arch in archs:
        target = GPUTarget('cuda', arch, 32)
        for name, dtype, consts in variants(settings):
            fn = getattr(triton_kernels, name)
            consts = dict(consts, ACC=tl.float64 if dtype == 'fp64' else
                          tl.float32)
            signature = {
                arg: 'constexpr' if arg in consts else
                f'*{dtype}' if arg.endswith('_ptr') else 'i32'
                for arg in fn.arg_names}
            if name == '_sampling_grad':  # its kernel-space grad: float
                signature['dspace_ptr'] = '*fp64' if dtype == 'fp64' else \
                    '*fp32'
            label = (f'sm_{arch} {name} {dtype} ' + ' '.join(
                f'{k}={v}' for k, v in consts.items() if k != 'ACC'))
            start = time.perf_counter()
            try:
                triton.compile(ASTSource(fn, signature, consts),
                               target=target)
            except Exception as err:  # noqa: BLE001 -- reported, not hidden
                failures.append(f'{label}: {type(err).__name__}: {err}')
                print(f'FAILED {label}', flush=True)
                continue
            print(f'ok {time.perf_counter() - start:5.2f}s {label}',
                  flush=True)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', type=int, nargs='+', default=[90],
                        help='CUDA compute capabilities, e.g. 90 80')
    parser.add_argument('--all', action='store_true',
                        help='every dtype x k x s (480 compiles) instead of '
                        'a covering set (30)')
    args = parser.parse_args(argv)
    failures = compile_all(args.arch, ALL if args.all else COVERING)
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f'{len(failures)} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
