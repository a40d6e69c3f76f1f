"""The Triton kernels (``dlu_mm.ops.triton_backend``) on CPU tensors, in
Triton's interpreter: the reassembly (forward, both gradients) and DLU's
fused op (forward, all three gradients) against the plain path and the
float64 loop reference, in float64 / float32 / float16 / bfloat16, with
groups (also ones G does not divide), odd sizes, s in {2, 3, 4, 8},
H or W = 1 and non-contiguous inputs; then the registered ops on the
``triton`` backend.

Every input lives inside a buffer filled with NaN: a load that strays out
of its tensor reads NaN and fails the comparison (the interpreter would
otherwise read whatever lies next to it). The CUDA tests that run the same
kernels compiled are in tests/test_cuda.py.
"""
import os
import sys

import numpy as np
import pytest
import torch

# Triton interprets kernels only if told so before its first import, which
# test collection reaches before any test runs. (On a GPU machine, run
# tests/test_cuda.py in a session of its own to test compiled kernels.)
if 'triton' not in sys.modules:
    os.environ['TRITON_INTERPRET'] = '1'

import reference
from op_cases import assert_close, case_id, op_inputs
from dlu_mm.ops import (dlu_reassemble, reassemble, reassemble_torch,
                        sample_kernel_space, triton_backend)
from dlu_mm.ops.library import dlu_reassemble_op, reassemble_op

pytest.importorskip('triton')

CASES = [  # (N, C, H, W, k, G, s)
    (1, 4, 5, 3, 3, 1, 2),  # odd H, W
    (1, 6, 3, 4, 3, 2, 3),  # G = 2, s = 3
    (1, 5, 4, 3, 3, 4, 2),  # G does not divide C: groups 2, 2, 1, none
    (1, 3, 1, 5, 3, 1, 4),  # H = 1, s = 4
    (1, 2, 3, 1, 5, 1, 2),  # W = 1, k = 5
    (1, 2, 2, 2, 3, 1, 8),  # s = 8
]
CASE_IDS = [case_id(case) for case in CASES]


def guarded(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a contiguous view into a larger buffer of NaNs."""
    pad = 4096
    buffer = torch.full((t.numel() + 2 * pad, ), float('nan'),
                        dtype=t.dtype)
    view = buffer[pad:pad + t.numel()].view(t.shape)
    view.copy_(t)
    return view


def _inputs(n, c, h, w, k, g, s, dtype=torch.float64):
    return {name: guarded(t) for name, t in op_inputs(
        n, c, h, w, k, g, s, dtype).items()}


def _reassembly_results(t, k, g, s, impl):
    out = impl.reassemble_forward(t['features'], t['masks'], k, g, s)
    grads = impl.reassemble_backward(t['grad_output'], t['features'],
                                     t['masks'], k, g, s, True, True)
    return (out, *grads)


def _dlu_reference(t, k, g, s):
    """The unfused composition in float64: forward and the gradients to
    the features, kernel space and offsets."""
    leaves = [t[name].double().clone().requires_grad_()
              for name in ('features', 'space', 'offsets')]
    out = reassemble(leaves[0], sample_kernel_space(leaves[1], leaves[2], s),
                     k, g, s, backend='torch')
    return (out.detach(), *torch.autograd.grad(out, leaves,
                                               t['grad_output'].double()))


def _dlu_results(t, k, g, s):
    out = triton_backend.dlu_reassemble_forward(t['features'], t['space'],
                                                t['offsets'], k, g, s)
    grads = triton_backend.dlu_reassemble_backward(
        t['grad_output'], t['features'], t['space'], t['offsets'], k, g, s,
        True, True)
    return (out, *grads)


@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES, ids=CASE_IDS)
def test_reassembly_matches_plain_path(n, c, h, w, k, g, s):
    t = _inputs(n, c, h, w, k, g, s)
    got = _reassembly_results(t, k, g, s, triton_backend)
    expected = _reassembly_results(t, k, g, s, reassemble_torch)
    for a, b in zip(got, expected):
        assert_close(a, b, torch.float64)
    np.testing.assert_allclose(
        got[0].numpy(), reference.reassemble(t['features'], t['masks'], k, g,
                                             s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES, ids=CASE_IDS)
def test_fused_dlu_matches_composition(n, c, h, w, k, g, s):
    t = _inputs(n, c, h, w, k, g, s)
    got = _dlu_results(t, k, g, s)
    for a, b in zip(got, _dlu_reference(t, k, g, s)):
        assert_close(a, b, torch.float64)
    np.testing.assert_allclose(
        got[0].numpy(), reference.dlu_reassemble(t['features'], t['space'],
                                                 t['offsets'], k, g, s),
        rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.bfloat16])
def test_low_precision_accumulates_in_float32(dtype):
    """Half inputs against the float64 result of the same rounded values."""
    n, c, h, w, k, g, s = 1, 6, 3, 4, 3, 2, 3
    t = _inputs(n, c, h, w, k, g, s, dtype)
    wide = {name: v.double() for name, v in t.items()}
    for a, b in zip(_reassembly_results(t, k, g, s, triton_backend),
                    _reassembly_results(wide, k, g, s, reassemble_torch)):
        assert_close(a, b, dtype)
    for a, b in zip(_dlu_results(t, k, g, s), _dlu_reference(wide, k, g, s)):
        assert_close(a, b, dtype)


def test_non_contiguous_inputs():
    n, c, h, w, k, g, s = 1, 4, 5, 3, 3, 2, 2
    t = _inputs(n, c, h, w, k, g, s)
    strided = {name: v.transpose(2, 3).contiguous().transpose(2, 3)
               for name, v in t.items()}
    assert not strided['features'].is_contiguous()
    for a, b in zip(_reassembly_results(strided, k, g, s, triton_backend),
                    _reassembly_results(t, k, g, s, reassemble_torch)):
        assert_close(a, b, torch.float64)
    for a, b in zip(_dlu_results(strided, k, g, s),
                    _dlu_reference(t, k, g, s)):
        assert_close(a, b, torch.float64)


def test_registered_ops_on_the_triton_backend(monkeypatch):
    """DLU_MM_REASSEMBLE_BACKEND=triton routes both public ops, forward and
    autograd, through the Triton kernels; opcheck passes on both ops."""
    monkeypatch.setenv('DLU_MM_REASSEMBLE_BACKEND', 'triton')
    n, c, h, w, k, g, s = 1, 4, 3, 4, 3, 2, 2
    t = _inputs(n, c, h, w, k, g, s)
    x, masks = (t[name].clone().requires_grad_() for name in ('features',
                                                             'masks'))
    out = reassemble(x, masks, k, g, s)
    out.backward(t['grad_output'])
    expected = _reassembly_results(t, k, g, s, reassemble_torch)
    for a, b in zip((out.detach(), x.grad, masks.grad), expected):
        assert_close(a, b, torch.float64)
    leaves = [t[name].clone().requires_grad_()
              for name in ('features', 'space', 'offsets')]
    out = dlu_reassemble(*leaves, k, g, s)
    out.backward(t['grad_output'])
    for a, b in zip((out.detach(), *(v.grad for v in leaves)),
                    _dlu_reference(t, k, g, s)):
        assert_close(a, b, torch.float64)
    small = {name: v.float() for name, v in t.items()}
    torch.library.opcheck(reassemble_op, (
        small['features'].requires_grad_(), small['masks'].requires_grad_(),
        k, g, s, 'triton'))
    torch.library.opcheck(dlu_reassemble_op, (
        small['features'], small['space'].requires_grad_(),
        small['offsets'].requires_grad_(), k, g, s, 'triton'))


def test_deterministic_mode_takes_the_atomics_free_path(monkeypatch):
    """The fused backward scatters the kernel-space gradient with atomic
    adds; with deterministic algorithms on, DLU runs the sampling and the
    Triton reassembly unfused (the kernel sampling then records a
    grid_sample node in the graph), with the same numbers."""
    monkeypatch.setenv('DLU_MM_REASSEMBLE_BACKEND', 'triton')
    t = _inputs(1, 4, 3, 4, 3, 1, 2)
    leaves = [t[name].clone().requires_grad_()
              for name in ('features', 'space', 'offsets')]
    fused = dlu_reassemble(*leaves, 3, 1, 2)
    assert 'dlu_mm_dlu_reassemble' in fused.grad_fn.name()
    torch.use_deterministic_algorithms(True)
    try:
        unfused = dlu_reassemble(*leaves, 3, 1, 2)
    finally:
        torch.use_deterministic_algorithms(False)
    assert 'dlu_mm_reassemble' in unfused.grad_fn.name()
    grads = torch.autograd.grad(unfused, leaves, t['grad_output'])
    for a, b in zip((unfused.detach(), *grads), _dlu_reference(t, 3, 1, 2)):
        assert_close(a, b, torch.float64)


def test_backend_choice():
    from dlu_mm.ops import resolve_backend
    x = torch.randn(1, 4, 3, 3)
    assert resolve_backend(x) != 'triton'  # auto never interprets
    assert resolve_backend(x, 'triton') == 'triton'


def test_cpu_tensors_need_the_interpreter():
    """Without TRITON_INTERPRET=1 at triton's import, asking for the Triton
    backend on CPU tensors is an error that says what to do."""
    code = ('import torch; from dlu_mm.ops import reassemble\n'
            'reassemble(torch.randn(1, 4, 3, 3), torch.rand(1, 9, 6, 6), 3, 1, '
            "2, backend='triton')")
    env = dict(os.environ, PYTHONPATH=str(__import__('tool_runner').ROOT))
    env.pop('TRITON_INTERPRET', None)
    proc = __import__('subprocess').run([sys.executable, '-c', code], env=env,
                                        capture_output=True, text=True)
    assert proc.returncode != 0
    assert ("reassembly backend 'triton' was requested but cannot run on "
            'these tensors: the Triton kernels run on CUDA tensors') in \
        proc.stderr
    assert 'TRITON_INTERPRET=1' in proc.stderr


def test_kernels_compile_for_hopper():
    """What the interpreter cannot check (types, constexpr specialisation of
    sizes of 1, resource limits): every kernel compiles to sm_90 code, in
    a process where Triton compiles."""
    env = dict(os.environ, PYTHONPATH=str(__import__('tool_runner').ROOT))
    env.pop('TRITON_INTERPRET', None)
    proc = __import__('subprocess').run(
        [sys.executable, '-m', 'dlu_mm.ops.triton_build_check', '--arch',
         '90'], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('\nok ') + proc.stdout.startswith('ok ') == 30
    assert '0 failed' in proc.stdout
