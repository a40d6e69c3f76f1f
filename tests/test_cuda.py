"""dlu_mm on a GPU: the Triton kernels behind the registered ops on CUDA
tensors against the CPU reference (float64 plain path), gradcheck in
float64, float16 / bfloat16 tolerances, two runs bit-identical where no
atomics are used, torch.compile and opcheck on CUDA tensors, and fp16
autocast training with loss scaling.

Skipped without a GPU. ``tools/gpu_check.sh`` runs this file on a GPU
machine; ``tools/gpu_check.sh --interpret`` (and so the test suite, through
tests/test_gpu_check.py) runs it on CPU tensors in Triton's interpreter
with ``DLU_MM_GPU_CHECK_INTERPRET=1``, so it cannot rot.
"""
import os
import sys

import pytest
import torch

INTERPRET = os.environ.get('DLU_MM_GPU_CHECK_INTERPRET') == '1'
if INTERPRET and 'triton' not in sys.modules:
    os.environ['TRITON_INTERPRET'] = '1'

from dlu_mm.layers import DLU, CARAFEPortable  # noqa: E402
from dlu_mm.ops import (dlu_reassemble, reassemble,  # noqa: E402
                        resolve_backend, sample_kernel_space)
from dlu_mm.ops.library import dlu_reassemble_op, reassemble_op  # noqa: E402
from op_cases import assert_close, case_id, op_inputs  # noqa: E402

DEVICE = torch.device('cpu' if INTERPRET else 'cuda')
pytestmark = pytest.mark.skipif(
    not INTERPRET and not torch.cuda.is_available(), reason='needs a GPU')

CASES = [  # (N, C, H, W, k, G, s)
    (1, 4, 5, 3, 3, 1, 2),
    (1, 6, 3, 4, 3, 2, 3),
    (1, 5, 4, 3, 3, 4, 2),  # G does not divide C
    (1, 3, 1, 5, 5, 1, 4),  # H = 1
    (1, 2, 3, 1, 3, 1, 8),  # W = 1, s = 8
]
if INTERPRET:  # the interpreter is slow: a smoke run of every test
    CASES = CASES[2:3]
else:  # and sizes a GPU runs in no time
    CASES += [(2, 64, 33, 47, 5, 1, 2), (2, 96, 20, 25, 5, 4, 4),
              (1, 30, 17, 13, 7, 3, 3)]
CASE_IDS = [case_id(case) for case in CASES]


def _inputs(n, c, h, w, k, g, s, dtype=torch.float64, device=DEVICE):
    torch.manual_seed(0)
    return op_inputs(n, c, h, w, k, g, s, dtype), device


def _on(t, device):
    return {name: v.to(device) for name, v in t.items()}


def _reassemble_all(t, k, g, s, backend=None):
    leaves = [t[name].clone().requires_grad_() for name in ('features',
                                                            'masks')]
    out = reassemble(*leaves, k, g, s, backend=backend)
    return (out.detach(), *torch.autograd.grad(out, leaves,
                                               t['grad_output']))


def _dlu_all(t, k, g, s, backend=None):
    leaves = [t[name].clone().requires_grad_()
              for name in ('features', 'space', 'offsets')]
    out = dlu_reassemble(*leaves, k, g, s, backend=backend)
    return (out.detach(), *torch.autograd.grad(out, leaves,
                                               t['grad_output']))


def _check_both_ops(t, device, k, g, s, dtype):
    """Both ops on ``device`` against the float64 plain path on the CPU:
    forward and every gradient."""
    wide = {name: v.double() for name, v in _on(t, 'cpu').items()}
    for run in (_reassemble_all, _dlu_all):
        for got, want in zip(run(_on(t, device), k, g, s, 'triton'),
                             run(wide, k, g, s, 'torch')):
            assert_close(got, want, dtype)


def test_device_runs_the_triton_kernels():
    probe = torch.empty(1, device=DEVICE)
    assert resolve_backend(probe, None if not INTERPRET else 'triton') == \
        'triton'


@pytest.mark.parametrize('dtype', [torch.float64] if INTERPRET else
                         [torch.float64, torch.float32])
@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES, ids=CASE_IDS)
def test_parity_with_the_cpu_reference(n, c, h, w, k, g, s, dtype):
    _check_both_ops(*_inputs(n, c, h, w, k, g, s, dtype), k, g, s, dtype)


@pytest.mark.parametrize('dtype', [torch.bfloat16] if INTERPRET else
                         [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    n, c, h, w, k, g, s = CASES[-1]
    _check_both_ops(*_inputs(n, c, h, w, k, g, s, dtype), k, g, s, dtype)


@pytest.mark.skipif(INTERPRET, reason='needs a GPU (hundreds of calls: '
                    'too slow in the interpreter)')
def test_gradcheck_float64():
    t, device = _inputs(1, 2, 2, 3, 3, 2, 2)
    t = _on(t, device)
    x, masks, space, offsets = (t[name].requires_grad_() for name in (
        'features', 'masks', 'space', 'offsets'))
    assert torch.autograd.gradcheck(
        lambda a, b: reassemble(a, b, 3, 2, 2, backend='triton'),
        (x, masks))
    offsets.data.mul_(0.4)  # away from the sampling's kinks
    assert torch.autograd.gradcheck(
        lambda a, b, o: dlu_reassemble(a, b, o, 3, 2, 2, backend='triton'),
        (x, space, offsets))


def test_two_runs_are_bit_identical_where_no_atomics():
    """The reassembly's kernels never add atomically; DLU under
    use_deterministic_algorithms takes its atomics-free path."""
    n, c, h, w, k, g, s = CASES[-2] if not INTERPRET else CASES[0]
    t, device = _inputs(n, c, h, w, k, g, s, torch.float32)
    t = _on(t, device)
    first = _reassemble_all(t, k, g, s, 'triton')
    second = _reassemble_all(t, k, g, s, 'triton')
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    torch.use_deterministic_algorithms(True)
    try:
        first, second = (_dlu_all(t, k, g, s, 'triton') for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_compile_and_opcheck_on_device():
    layer = DLU(8, 2, compressed_channels=4).to(DEVICE)
    torch.nn.init.normal_(layer.conv_offset.weight, std=0.3)
    x = torch.randn(2, 8, 5, 6, device=DEVICE, requires_grad=True)
    eager = layer(x)
    grad_eager, = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(layer, fullgraph=True,
                             backend='aot_eager' if INTERPRET else 'inductor')
    out = compiled(x)
    grad, = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(grad, grad_eager)
    t, device = _inputs(1, 4, 3, 4, 3, 2, 2, torch.float32)
    t = _on(t, device)
    torch.library.opcheck(reassemble_op, (
        t['features'].requires_grad_(), t['masks'].requires_grad_(), 3, 2, 2,
        'triton'))
    torch.library.opcheck(dlu_reassemble_op, (
        t['features'], t['space'].requires_grad_(),
        t['offsets'].requires_grad_(), 3, 2, 2, 'triton'))


@pytest.mark.parametrize('layer_type', [DLU] if INTERPRET else
                         [DLU, CARAFEPortable])
def test_fp16_autocast_training_with_loss_scaling(layer_type):
    """A small upsampling regressor trained under fp16 autocast with a
    GradScaler: finite losses, a shrinking loss, and the reassembly did run
    in float16."""
    torch.manual_seed(0)
    steps, (c, h, w) = (2, (4, 3, 3)) if INTERPRET else (20, (32, 24, 24))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, c, 3, padding=1),
                                layer_type(c, 2, compressed_channels=8),
                                torch.nn.Conv2d(c, 3, 3, padding=1))
    model.to(DEVICE)
    optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler(DEVICE.type)
    x = torch.randn(4, 3, h, w, device=DEVICE)
    target = torch.nn.functional.interpolate(x, scale_factor=2,
                                             mode='bilinear')
    dtypes = []
    model[1].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    losses = []
    for _ in range(steps):
        optim.zero_grad()
        with torch.autocast(DEVICE.type, dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(model(x).float(), target)
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert set(dtypes) == {torch.float16}
