"""DLU's fused op (``dlu_mm.ops.dlu_reassemble``): the kernel space sampled
at the offset points inside the reassembly.

Every backend against the float64 loop reference of the paper's equations
(``reference.dlu_reassemble``); the fused kernels against the unfused
composition ``reassemble(features, sample_kernel_space(...))`` (forward and
all three gradients, every dtype); gradcheck; grid_sample's one-sided
derivative at integer points; results independent of the thread count;
the registered custom op (opcheck, torch.compile); argument errors.
"""
import numpy as np
import pytest
import torch

import reference
from op_cases import assert_close, case_id, op_inputs
from dlu_mm.ops import dlu_reassemble, reassemble, sample_kernel_space

FUSED = [b for b in __import__('conftest').BACKENDS if b != 'torch']

CASES = [  # (N, C, H, W, k, G, s)
    (1, 4, 5, 3, 5, 1, 2),  # odd H, W
    (2, 6, 4, 4, 3, 2, 3),  # batch, G = 2, s = 3
    (1, 8, 3, 5, 5, 4, 4),  # G = 4, s = 4
    (1, 4, 2, 3, 3, 1, 8),  # s = 8
    (1, 3, 1, 9, 5, 1, 2),  # H = 1
    (2, 4, 7, 1, 7, 2, 2),  # W = 1, k = 7
    (1, 10, 6, 7, 3, 3, 3),  # G does not divide C: groups of 4, 4, 2
    (1, 5, 4, 3, 3, 4, 2),  # groups of 2, 2, 1 and an empty one
    (2, 36, 11, 17, 5, 2, 2),  # 18 channels a group, several row bands
]
CASE_IDS = [case_id(case) for case in CASES]
# s = 4 with rows of 37 input columns: whole vectors and a tail in the
# forward's phase space (too large for the loop reference's test).
S4_WIDE = (1, 6, 4, 37, 5, 2, 4)


def _inputs(n, c, h, w, k, g, s, dtype=torch.float64, offset_std=1.5):
    """Features, kernel space, offsets and an output gradient (see
    :func:`op_cases.op_inputs`)."""
    t = op_inputs(n, c, h, w, k, g, s, dtype, offset_std)
    return [t[name] for name in ('features', 'space', 'offsets',
                                 'grad_output')]


def _composition(features, space, offsets, k, g, s):
    """The unfused reference path: sample every kernel, then reassemble."""
    return reassemble(features, sample_kernel_space(space, offsets, s), k, g,
                      s, backend='torch')


def _forward_and_grads(fn, features, space, offsets, grad_output):
    leaves = [t.detach().clone().requires_grad_() for t in
              (features, space, offsets)]
    out = fn(*leaves)
    return (out.detach(), *torch.autograd.grad(out, leaves, grad_output))


@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES, ids=CASE_IDS)
def test_forward_matches_loop_reference(backend, n, c, h, w, k, g, s):
    features, space, offsets, _ = _inputs(n, c, h, w, k, g, s)
    out = dlu_reassemble(features, space, offsets, k, g, s)
    assert out.shape == (n, c, h * s, w * s)
    np.testing.assert_allclose(
        out.numpy(), reference.dlu_reassemble(features, space, offsets, k, g,
                                              s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('backend_name', FUSED)
@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES + [S4_WIDE],
                         ids=CASE_IDS + ['s4-rows-of-37'])
def test_fused_equals_composition_float64(backend_name, n, c, h, w, k, g, s):
    """Forward and the gradients to the features, the kernel space and the
    offsets, to 1e-12."""
    inputs = _inputs(n, c, h, w, k, g, s)
    fused = _forward_and_grads(
        lambda x, sp, o: dlu_reassemble(x, sp, o, k, g, s,
                                        backend=backend_name), *inputs)
    unfused = _forward_and_grads(
        lambda x, sp, o: _composition(x, sp, o, k, g, s), *inputs)
    for a, b in zip(fused, unfused):
        assert_close(a, b, torch.float64)


@pytest.mark.parametrize('backend_name', FUSED)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16,
                                   torch.bfloat16])
@pytest.mark.parametrize(
    'n,c,h,w,k,g,s', [CASES[1], CASES[6], CASES[8], S4_WIDE],
    ids=[CASE_IDS[i] for i in (1, 6, 8)] + ['s4-rows-of-37'])
def test_fused_in_each_dtype(backend_name, dtype, n, c, h, w, k, g, s):
    """Low-precision inputs against the float64 composition of the same
    (rounded) values: sums are accumulated in float32, so the error is the
    dtype's rounding of the result."""
    _assert_fused_matches_wide_composition(backend_name, dtype, n, c, h, w,
                                           k, g, s)


def _assert_fused_matches_wide_composition(backend_name, dtype, n, c, h, w,
                                           k, g, s):
    """The fused op's output and gradients in ``dtype`` equal the float64
    composition's on the same (rounded) inputs, to ``dtype``'s precision."""
    inputs = _inputs(n, c, h, w, k, g, s, dtype)
    fused = _forward_and_grads(
        lambda x, sp, o: dlu_reassemble(x, sp, o, k, g, s,
                                        backend=backend_name), *inputs)
    wide = [t.double() for t in inputs]
    unfused = _forward_and_grads(
        lambda x, sp, o: _composition(x, sp, o, k, g, s), *wide)
    for a, b in zip(fused, unfused):
        assert_close(a, b, dtype)


@pytest.mark.parametrize('backend_name', FUSED)
@pytest.mark.parametrize('k,s', [(3, 2), (5, 2), (5, 4), (7, 3)])
def test_float32_rows_of_whole_vectors_and_a_tail(backend_name, k, s):
    """float32 rows of 16-pixel blocks plus a remainder, kernels of 9 to 49
    taps (one to four blocks of 16 taps, the last one partial): the native
    kernels sample all taps of a row at once in 16 x 16 blocks here."""
    _assert_fused_matches_wide_composition(backend_name, torch.float32,
                                           1, 6, 5, 21, k, 2, s)


@pytest.mark.parametrize('w', [104, 101], ids=['rows-on-lines',
                                               'rows-off-lines'])
def test_streamed_outputs(w):
    """Forward outputs larger than the threads' L2 caches (17 MiB here) are
    written with non-temporal stores: straight into rows that start on
    cache lines (W = 104: rows of 208 floats), through an aligned scratch
    row (copy_row) where they do not (W = 101). Both native ops in float32
    against the float64 plain-PyTorch paths on the same inputs."""
    if 'native' not in FUSED:
        pytest.skip('the native kernels are not built')
    k, g, s = 5, 1, 2
    features, space, offsets, _ = _inputs(1, 64, 160, w, k, g, s,
                                          torch.float32)
    masks = sample_kernel_space(space, offsets, s)
    wide = [t.double() for t in (features, space, offsets, masks)]
    assert_close(dlu_reassemble(features, space, offsets, k, g, s,
                                backend='native'),
                 _composition(*wide[:3], k, g, s), torch.float32)
    assert_close(reassemble(features, masks, k, g, s, backend='native'),
                 reassemble(wide[0], wide[3], k, g, s, backend='torch'),
                 torch.float32)


@pytest.mark.parametrize('n,c,h,w,k,g,s', [(1, 4, 3, 4, 3, 2, 2),
                                           (2, 3, 4, 3, 3, 1, 3),
                                           (1, 5, 3, 2, 3, 2, 2),
                                           (1, 2, 1, 3, 3, 1, 2)])
def test_gradcheck(backend, n, c, h, w, k, g, s):
    features, space, offsets, _ = _inputs(n, c, h, w, k, g, s,
                                          offset_std=0.7)
    leaves = [t.requires_grad_() for t in (features, space, offsets)]
    assert torch.autograd.gradcheck(
        lambda x, sp, o: dlu_reassemble(x, sp, o, k, g, s), leaves)


@pytest.mark.parametrize('backend_name', FUSED)
def test_zero_offsets_take_grid_samples_one_sided_derivative(backend_name):
    """At init the offsets are zero: every sampling point is an integer.
    With H-1 and W-1 powers of two, grid_sample's normalised coordinates are
    exact, so the composition sees the same integers: both must give its
    derivative there -- towards the next pixel inside (the right-sided
    finite difference), zero on the border."""
    n, c, h, w, k, g, s = 1, 3, 5, 9, 3, 1, 2
    features, space, _, grad_output = _inputs(n, c, h, w, k, g, s)
    offsets = torch.zeros(n, g * 2 * s * s, h, w, dtype=torch.float64)
    fused = _forward_and_grads(
        lambda x, sp, o: dlu_reassemble(x, sp, o, k, g, s,
                                        backend=backend_name),
        features, space, offsets, grad_output)
    unfused = _forward_and_grads(
        lambda x, sp, o: _composition(x, sp, o, k, g, s), features, space,
        offsets, grad_output)
    for a, b in zip(fused, unfused):
        assert_close(a, b, torch.float64)
    grad_offsets = fused[3]
    eps = 1e-7

    def loss(o):
        return (dlu_reassemble(features, space, o, k, g, s,
                               backend=backend_name) * grad_output).sum()

    base = loss(offsets)
    # interior points: the derivative towards the next pixel
    for index in [(0, 0, 2, 3), (0, 4, 1, 1), (0, 7, 3, 5)]:
        step = offsets.clone()
        step[index] += eps
        right = (loss(step) - base) / eps
        assert right.abs() > 1e-3
        torch.testing.assert_close(grad_offsets[index], right, rtol=1e-5,
                                   atol=1e-6)
    # on the border grid_sample's derivative is zero, on either side: x of
    # sub-pixel (1, 0) (channel 2) in the last column, y of sub-pixel (0, 1)
    # (channel 5) in the first row
    assert grad_offsets[0, 2, :, 8].abs().max() == 0
    assert grad_offsets[0, 5, 0, :].abs().max() == 0


@pytest.mark.parametrize('backend_name', FUSED)
@pytest.mark.parametrize('s', [2, 4])
def test_results_do_not_depend_on_thread_count(backend_name, s):
    """The kernel space's gradient is a scatter summed per block of rows,
    whatever the bands cut for the thread count: every sum must be the
    same at 1, 2 and 3 threads."""
    inputs = _inputs(2, 12, 29, 19, 5, 2, s, torch.float32, offset_std=4)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(_forward_and_grads(
                lambda x, sp, o: dlu_reassemble(x, sp, o, 5, 2, s,
                                                backend=backend_name),
                *inputs))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize('backend_name', FUSED)
def test_only_the_needed_gradients(backend_name):
    features, space, offsets, grad_output = _inputs(1, 4, 4, 5, 3, 2, 2)
    reference_grads = _forward_and_grads(
        lambda x, sp, o: _composition(x, sp, o, 3, 2, 2), features, space,
        offsets, grad_output)[1:]
    for wanted in ((True, False, False), (False, True, False),
                   (False, False, True), (False, True, True)):
        leaves = [t.clone().requires_grad_(need)
                  for t, need in zip((features, space, offsets), wanted)]
        dlu_reassemble(*leaves, 3, 2, 2, backend=backend_name).backward(
            grad_output)
        for leaf, need, expected in zip(leaves, wanted, reference_grads):
            if need:
                assert_close(leaf.grad, expected, torch.float64)
            else:
                assert leaf.grad is None


def test_mixed_dtypes_are_promoted(backend):
    features, space, offsets, _ = _inputs(1, 4, 3, 3, 3, 1, 2, torch.float32)
    out = dlu_reassemble(features, space.bfloat16(), offsets.bfloat16(), 3,
                         1, 2)
    assert out.dtype == torch.float32


def test_under_autocast_the_op_runs_in_autocasts_dtype(backend):
    """A float32 kernel space (autocast runs softmax in float32 on CUDA)
    beside low-precision features does not lift the op to float32; float64
    inputs stay float64, as for a convolution under autocast."""
    features, space, offsets, _ = _inputs(1, 4, 3, 3, 3, 1, 2, torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = dlu_reassemble(features, space, offsets, 3, 1, 2)
        wide = dlu_reassemble(features.double(), space.double(),
                              offsets.double(), 3, 1, 2)
        plain = reassemble(features, sample_kernel_space(space, offsets, 2),
                           3, 1, 2)
    assert out.dtype == plain.dtype == torch.bfloat16
    assert wide.dtype == torch.float64
    expected = dlu_reassemble(*(t.bfloat16() for t in (features, space,
                                                       offsets)), 3, 1, 2)
    assert_close(out, expected, torch.bfloat16)


@pytest.mark.parametrize('backend_name', FUSED + ['torch'])
def test_opcheck(backend_name):
    """The custom ops' schema, fake kernels and autograd registration."""
    from dlu_mm.ops.library import dlu_reassemble_op
    features, space, offsets, _ = _inputs(1, 5, 3, 4, 3, 2, 2,
                                           torch.float32)
    args = [t.requires_grad_() for t in (features, space, offsets)]
    torch.library.opcheck(dlu_reassemble_op,
                          (*args, 3, 2, 2, backend_name))


@pytest.mark.parametrize('call,error,match', [
    (lambda x, sp, o: dlu_reassemble(x, sp[:, 1:], o, 3, 1, 2), ValueError,
     r'kernel_space must have shape \(N, G\*k\*k, H, W\) = \(1, 9, 3, 4\)'),
    (lambda x, sp, o: dlu_reassemble(x, sp, o[:, :4], 3, 1, 2), ValueError,
     r'offsets must have shape \(N, G\*2\*s\*s, H, W\) = \(1, 8, 3, 4\)'),
    (lambda x, sp, o: dlu_reassemble(x, sp, o, 4, 1, 2), ValueError,
     'kernel_size must be a positive odd integer .* got 4'),
    (lambda x, sp, o: dlu_reassemble(x, sp, o, 3, 0, 2), ValueError,
     'group_size must be a positive integer, got 0'),
    (lambda x, sp, o: dlu_reassemble(x[0], sp, o, 3, 1, 2), ValueError,
     r'features must be a 4-D tensor \(N, C, H, W\)'),
    (lambda x, sp, o: dlu_reassemble(x, sp, o, 3, 1, 2, backend='cuda'),
     ValueError, "backend must be one of .*'native', 'triton', 'torch'"),
])
def test_argument_errors(call, error, match):
    features, space, offsets, _ = _inputs(1, 4, 3, 4, 3, 1, 2)
    with pytest.raises(error, match=match):
        call(features, space, offsets)
