"""The compiled CPU kernels (``dlu_mm._ext``) against the plain-PyTorch
reassembly (``dlu_mm.ops.reassemble_torch``): forward, both gradients, every
supported dtype, edge shapes, autograd, determinism and argument checks.

Skipped when the extension is not built.
"""
import pytest
import torch

_ext = pytest.importorskip('dlu_mm._ext')

from dlu_mm.ops import reassemble_torch  # noqa: E402
from dlu_mm.ops import reassemble  # noqa: E402
from op_cases import assert_close, case_id, op_inputs  # noqa: E402

CASES = [  # (N, C, H, W, k, G, s)
    (1, 4, 5, 3, 5, 1, 2),  # odd H, W
    (2, 6, 4, 4, 3, 2, 3),  # batch, G = 2, s = 3
    (1, 8, 3, 5, 5, 4, 4),  # G = 4, s = 4
    (1, 4, 2, 3, 3, 1, 8),  # s = 8
    (1, 3, 1, 9, 5, 1, 2),  # H = 1
    (2, 4, 7, 1, 7, 2, 2),  # W = 1, k = 7
    (1, 2, 3, 3, 1, 1, 1),  # k = 1, s = 1
    (1, 4, 3, 4, 9, 2, 2),  # kernel larger than the map
    (1, 10, 13, 21, 7, 1, 3),  # k = 7, s = 3, C not a multiple of 4
    (2, 36, 11, 37, 3, 2, 2),  # 18 channels a group, rows of 74
    (3, 8, 17, 9, 5, 4, 1),  # s = 1, several row bands
    (1, 5, 6, 64, 5, 1, 2),  # rows of 128
    (2, 10, 5, 7, 3, 3, 2),  # G does not divide C: groups of 4, 4, 2
    (1, 5, 4, 6, 5, 4, 3),  # groups of 2, 2, 1 and an empty one
    (1, 6, 5, 37, 5, 1, 4),  # s = 4, rows of 37: whole vectors and a tail
]
CASE_IDS = [case_id(case) for case in CASES]


def _inputs(n, c, h, w, k, g, s, dtype):
    """Features, softmax-normalised kernels and an output gradient."""
    t = op_inputs(n, c, h, w, k, g, s, dtype)
    return t['features'], t['masks'], t['grad_output']


def _reference(features, masks, grad_output, k, g, s, dtype):
    """The plain path, in float64 for half types (whose plain path rounds
    each kernel tap's partial sums)."""
    wide = torch.float64 if dtype in (torch.float16, torch.bfloat16) else dtype
    args = (features.to(wide), masks.to(wide))
    out = reassemble_torch.reassemble_forward(*args, k, g, s)
    grads = reassemble_torch.reassemble_backward(grad_output.to(wide), *args,
                                                 k, g, s)
    return out, grads


def _check_against_plain(n, c, h, w, k, g, s, dtype):
    """Native forward and both gradients against the plain path."""
    features, masks, grad_output = _inputs(n, c, h, w, k, g, s, dtype)
    out, (grad_features, grad_masks) = _reference(features, masks,
                                                  grad_output, k, g, s, dtype)
    assert_close(_ext.reassemble_forward(features, masks, k, g, s), out,
                  dtype)
    native_features, native_masks = _ext.reassemble_backward(
        grad_output, features, masks, k, g, s, True, True)
    assert_close(native_features, grad_features, dtype)
    assert_close(native_masks, grad_masks, dtype)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES, ids=CASE_IDS)
def test_matches_plain_path(n, c, h, w, k, g, s, dtype):
    _check_against_plain(n, c, h, w, k, g, s, dtype)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('n,c,h,w,k,g,s',
                         [CASES[i] for i in (1, 4, 8, 9, 14)],
                         ids=[CASE_IDS[i] for i in (1, 4, 8, 9, 14)])
def test_half_precision(n, c, h, w, k, g, s, dtype):
    _check_against_plain(n, c, h, w, k, g, s, dtype)


@pytest.mark.parametrize('dtype,c', [(torch.float32, 128),
                                     (torch.float64, 32)])
def test_multi_megabyte_buffers_match_plain_path(dtype, c):
    """Outputs of 32 / 16 MiB, features gradient (8 / 4 MiB) and masks
    gradient (12 / 24 MiB) large enough for the kernels to advise huge pages
    for them, and for the forward to write its output with non-temporal
    stores (more than the L2 caches of up to 8 threads of 2 MiB): every
    element is written, with the plain path's numbers."""
    _check_against_plain(1, c, 128, 128, 7, 1, 2, dtype)


@pytest.mark.parametrize('needs', [(True, False), (False, True)])
def test_only_requested_gradients(needs):
    features, masks, grad_output = _inputs(2, 6, 4, 4, 3, 2, 3,
                                           torch.float64)
    expected = reassemble_torch.reassemble_backward(grad_output, features,
                                                    masks, 3, 2, 3)
    grads = _ext.reassemble_backward(grad_output, features, masks, 3, 2, 3,
                                     *needs)
    for need, grad, ref in zip(needs, grads, expected):
        if need:
            assert_close(grad, ref, torch.float64)
        else:
            assert grad is None


def test_non_contiguous_inputs():
    features, masks, grad_output = _inputs(1, 4, 6, 5, 3, 1, 2,
                                           torch.float64)
    # Same values, transposed memory layouts.
    features_t = features.transpose(2, 3).contiguous().transpose(2, 3)
    masks_t = masks.transpose(2, 3).contiguous().transpose(2, 3)
    grad_t = grad_output.transpose(2, 3).contiguous().transpose(2, 3)
    assert not features_t.is_contiguous()
    torch.testing.assert_close(
        _ext.reassemble_forward(features_t, masks_t, 3, 1, 2),
        reassemble_torch.reassemble_forward(features, masks, 3, 1, 2))
    for grad, ref in zip(
            _ext.reassemble_backward(grad_t, features_t, masks_t, 3, 1, 2,
                                     True, True),
            reassemble_torch.reassemble_backward(grad_output, features,
                                                 masks, 3, 1, 2)):
        torch.testing.assert_close(grad, ref)


@pytest.mark.parametrize('n,c,h,w,k,g,s',
                         [(1, 4, 5, 3, 5, 1, 2), (2, 6, 3, 4, 3, 2, 3),
                          (1, 3, 1, 4, 5, 1, 2), (1, 4, 3, 1, 7, 4, 1)])
def test_gradcheck(n, c, h, w, k, g, s):
    features, masks, _ = _inputs(n, c, h, w, k, g, s, torch.float64)
    features.requires_grad_()
    masks.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, m: reassemble(x, m, k, g, s, backend='native'),
        (features, masks))


def test_gradcheck_single_input_function():
    """The custom op asks the kernel for the one gradient it needs."""
    features, masks, _ = _inputs(1, 4, 4, 5, 3, 2, 2, torch.float64)
    masks.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda m: reassemble(features, m, 3, 2, 2, backend='native'),
        (masks, ))
    features.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: reassemble(x, masks.detach(), 3, 2, 2, backend='native'),
        (features, ))


@pytest.mark.parametrize('s', [2, 4])
def test_results_do_not_depend_on_thread_count(s):
    """The work split (bands of rows) follows the thread count; the sums
    that every element gets must not."""
    features, masks, grad_output = _inputs(1, 12, 24, 19, 5, 2, s,
                                           torch.float32)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(
                (_ext.reassemble_forward(features, masks, 5, 2, s), ) +
                _ext.reassemble_backward(grad_output, features, masks, 5, 2,
                                         s, True, True))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_empty_inputs():
    features, masks, grad_output = _inputs(0, 4, 3, 3, 3, 1, 2,
                                           torch.float32)
    assert _ext.reassemble_forward(features, masks, 3, 1, 2).shape == \
        (0, 4, 6, 6)
    grad_features, grad_masks = _ext.reassemble_backward(
        grad_output, features, masks, 3, 1, 2, True, True)
    assert grad_features.shape == features.shape
    assert grad_masks.shape == masks.shape


@pytest.mark.parametrize('call,match', [
    (lambda x, m: _ext.reassemble_forward(x[0], m, 3, 1, 2),
     'features must be 4-D'),
    (lambda x, m: _ext.reassemble_forward(x, m[:, :8], 3, 1, 2),
     'masks must have shape'),
    (lambda x, m: _ext.reassemble_forward(x, m.double(), 3, 1, 2),
     'masks must have dtype Float, got Double'),
    (lambda x, m: _ext.reassemble_forward(x.int(), m.int(), 3, 1, 2),
     'float32, float64, float16 or bfloat16'),
    (lambda x, m: _ext.reassemble_forward(x, m, 3, 0, 2),
     'group_size must be >= 1, got 0'),
    (lambda x, m: _ext.reassemble_forward(x, m, 2, 1, 2), 'kernel_size'),
    (lambda x, m: _ext.reassemble_backward(torch.zeros(1, 4, 6, 5), x, m, 3,
                                           1, 2, True, True),
     'grad_output must have'),
])
def test_argument_checks(call, match):
    features, masks, _ = _inputs(1, 4, 3, 3, 3, 1, 2, torch.float32)
    with pytest.raises(RuntimeError, match=match):
        call(features, masks)
