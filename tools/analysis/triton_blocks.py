"""Time the Triton kernels of ``reassemble`` and the fused DLU op over block
sizes and warps per program, on this GPU, to choose the defaults of
``dlu_mm/ops/triton_backend.py`` (BLOCK_C, NUM_WARPS, and BLOCK_P for the
reassembly, BLOCK_P_SAMPLED for the fused DLU op: a configuration here sets
both pixel blocks).

Every combination is timed forward (``triton.testing.do_bench``, median);
the fastest few forward configurations are then timed forward+backward.
Each combination compiles its own kernels (about a second each), so keep
the grid small.

Usage (on a GPU machine)::

    python tools/analysis/triton_blocks.py --scale 2 --dtype float32 \\
        --json $OUT/triton_blocks.json
"""
import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dlu_mm.ops import dlu_reassemble, reassemble, triton_backend  # noqa: E402

DTYPES = {'float32': torch.float32, 'float16': torch.float16,
          'bfloat16': torch.bfloat16}


def inputs(shape, s, k, device, dtype):
    n, c, h, w = shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device=device, dtype=dtype)
    masks = torch.randn(n, k * k, h * s, w * s, device=device).softmax(1)
    space = torch.randn(n, k * k, h, w, device=device).softmax(1)
    offsets = torch.randn(n, 2 * s * s, h, w, device=device) * 0.5
    grad = torch.randn(n, c, h * s, w * s, device=device, dtype=dtype)
    return x, masks.to(dtype), space.to(dtype), offsets.to(dtype), grad


def calls(x, masks, space, offsets, grad, s, k):
    """{(op, direction): zero-argument call}."""
    def fwd_bwd(op, *leaves):
        leaves = [t.detach().requires_grad_() for t in leaves]

        def run():
            torch.autograd.grad(op(*leaves), leaves, grad)
        return run
    ops = {'reassemble': (lambda a, b: reassemble(a, b, k, 1, s, 'triton'),
                          (x, masks)),
           'dlu_reassemble': (lambda a, b, c: dlu_reassemble(
               a, b, c, k, 1, s, 'triton'), (x, space, offsets))}
    out = {}
    for name, (op, args) in ops.items():
        out[name, 'fwd'] = lambda op=op, args=args: op(*args)
        out[name, 'fwd_bwd'] = fwd_bwd(op, *args)
    return out


def timed(call) -> float:
    from triton.testing import do_bench
    return do_bench(call, warmup=10, rep=40, return_mode='median')


def configure(block_c, block_p, warps, block_p_sampled=None):
    triton_backend.BLOCK_C, triton_backend.BLOCK_P = block_c, block_p
    triton_backend.BLOCK_P_SAMPLED = block_p_sampled or block_p
    triton_backend.NUM_WARPS = warps


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shape', type=int, nargs=4, default=[1, 256, 120, 120],
                   metavar=('N', 'C', 'H', 'W'))
    p.add_argument('--scale', type=int, default=2)
    p.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    p.add_argument('--block-c', type=int, nargs='+', default=[16, 32, 64])
    p.add_argument('--block-p', type=int, nargs='+', default=[64, 128, 256])
    p.add_argument('--warps', type=int, nargs='+', default=[4, 8])
    p.add_argument('--backward-top', type=int, default=3,
                   help='forward+backward for this many fastest configs')
    p.add_argument('--json', help='write the times here')
    args = p.parse_args()
    if not torch.cuda.is_available():
        p.error('needs a CUDA GPU (the kernels are compiled for it)')
    k, s = 5, args.scale
    tensors = inputs(args.shape, s, k, 'cuda', DTYPES[args.dtype])
    runs = calls(*tensors, s, k)
    defaults = (triton_backend.BLOCK_C, triton_backend.BLOCK_P,
                triton_backend.NUM_WARPS, triton_backend.BLOCK_P_SAMPLED)
    default = defaults[:3]
    results = {}
    print(f'{torch.cuda.get_device_name()}, shape {args.shape}, s={s}, '
          f'{args.dtype}; defaults (BLOCK_C, BLOCK_P, warps) {default}, '
          f'BLOCK_P_SAMPLED {defaults[3]}; ms (median of do_bench)')
    print(f'{"BLOCK_C BLOCK_P warps":>22}  {"reassemble":>10}  {"dlu":>10}',
          flush=True)
    for config in itertools.product(args.block_c, args.block_p, args.warps):
        configure(*config)
        row = {op: timed(runs[op, 'fwd'])
               for op in ('reassemble', 'dlu_reassemble')}
        results[config] = {f'{op}/fwd': t for op, t in row.items()}
        print(f'{str(config):>22}  {row["reassemble"]:10.3f}  '
              f'{row["dlu_reassemble"]:10.3f}', flush=True)
    order = sorted(results, key=lambda c: results[c]['dlu_reassemble/fwd'])
    chosen = order[:args.backward_top] + ([default] if default not in
                                          order[:args.backward_top] else [])
    print('forward+backward (ms):')
    for config in chosen:
        configure(*config)
        for op in ('reassemble', 'dlu_reassemble'):
            results[config][f'{op}/fwd_bwd'] = timed(runs[op, 'fwd_bwd'])
        print(f'{str(config):>22}  '
              f'{results[config]["reassemble/fwd_bwd"]:10.3f}  '
              f'{results[config]["dlu_reassemble/fwd_bwd"]:10.3f}',
              flush=True)
    configure(*defaults)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {'device': torch.cuda.get_device_name(), 'shape': args.shape,
             'scale': s, 'dtype': args.dtype, 'default': default,
             'times_ms': {' '.join(map(str, c)): r
                          for c, r in results.items()}}, indent=1))


if __name__ == '__main__':
    main()
