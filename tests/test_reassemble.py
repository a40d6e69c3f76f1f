"""The shared reassembly op against the loop reference, its gradients and
its argument checks, on every available backend."""
import numpy as np
import pytest
import torch

import reference
from dlu_mm.ops import reassemble

CASES = [  # (N, C, H, W, k, G, s)
    (1, 4, 5, 3, 5, 1, 2),
    (2, 6, 4, 4, 3, 2, 3),
    (1, 8, 3, 5, 5, 4, 4),
    (1, 4, 2, 3, 3, 1, 8),
    (1, 3, 1, 4, 5, 1, 2),  # H = 1
    (2, 4, 3, 1, 7, 2, 2),  # W = 1
    (1, 2, 3, 3, 1, 1, 1),
    (1, 10, 3, 4, 3, 3, 2),  # G does not divide C: groups of 4, 4, 2
    (1, 5, 2, 3, 3, 4, 2),  # groups of 2, 2, 1 and an empty one
]


def _inputs(n, c, h, w, k, g, s, dtype=torch.float64):
    x = torch.randn(n, c, h, w, dtype=dtype)
    masks = torch.rand(n, g * k * k, h * s, w * s, dtype=dtype)
    return x, masks


@pytest.mark.parametrize('n,c,h,w,k,g,s', CASES)
def test_matches_loop_reference(backend, n, c, h, w, k, g, s):
    x, masks = _inputs(n, c, h, w, k, g, s)
    out = reassemble(x, masks, k, g, s)
    assert out.shape == (n, c, h * s, w * s)
    np.testing.assert_allclose(out.numpy(),
                               reference.reassemble(x, masks, k, g, s),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('n,c,h,w,k,g,s', [CASES[0], CASES[1], CASES[4],
                                           CASES[7]])
def test_gradcheck(backend, n, c, h, w, k, g, s):
    x, masks = _inputs(n, c, h, w, k, g, s)
    x.requires_grad_()
    masks.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: reassemble(a, b, k, g, s), (x, masks))


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5),
                                       (torch.float16, 2e-2),
                                       (torch.bfloat16, 6e-2)])
def test_low_precision(backend, dtype, tol):
    x, masks = _inputs(2, 8, 5, 7, 5, 2, 2)
    masks = masks / masks.sum(1, keepdim=True)
    out = reassemble(x.to(dtype), masks.to(dtype), 5, 2, 2)
    assert out.dtype == dtype
    ref = reassemble(x.to(dtype).double(), masks.to(dtype).double(), 5, 2, 2)
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


def test_ragged_groups_follow_mmcv():
    """G need not divide C: as mmcv's CARAFE, channel c uses the kernels of
    group c // ceil(C/G), so C=5, G=4 puts channels 0-1, 2-3, 4 in groups
    0, 1, 2 and leaves group 3's kernels unused."""
    x, masks = _inputs(1, 5, 3, 4, 3, 4, 2)
    out = reassemble(x, masks, 3, 4, 2)
    for group, channels in ((0, [0, 1]), (1, [2, 3]), (2, [4])):
        part = reassemble(x[:, channels], masks[:, group * 9:group * 9 + 9],
                          3, 1, 2)
        torch.testing.assert_close(out[:, channels], part)
    m = masks.clone().requires_grad_()
    reassemble(x, m, 3, 4, 2).sum().backward()
    assert m.grad[:, 27:].abs().max() == 0
    assert m.grad[:, :27].abs().amax(dim=(0, 2, 3)).min() > 0


def test_layouts_and_mixed_dtypes(backend):
    x, masks = _inputs(2, 8, 6, 5, 3, 2, 2, torch.float32)
    ref = reassemble(x, masks, 3, 2, 2)
    channels_last = reassemble(x.to(memory_format=torch.channels_last),
                               masks.to(memory_format=torch.channels_last),
                               3, 2, 2)
    torch.testing.assert_close(channels_last, ref)
    wide = torch.randn(2, 8, 6, 10)[..., ::2]  # non-contiguous view
    torch.testing.assert_close(
        reassemble(wide, masks, 3, 2, 2),
        reassemble(wide.contiguous(), masks, 3, 2, 2))
    mixed = reassemble(x, masks.bfloat16(), 3, 2, 2)  # autocast-style mix
    assert mixed.dtype == torch.float32


def test_backends_agree_on_a_benchmark_like_shape():
    if 'native' not in __import__('conftest').BACKENDS:
        pytest.skip('only one backend built')  # unreachable in CI
    x, masks = _inputs(1, 64, 30, 30, 5, 1, 2, torch.float32)
    a = reassemble(x, masks, 5, 1, 2, backend='torch')
    b = reassemble(x, masks, 5, 1, 2, backend='native')
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('args,match', [
    ((4, 1, 2), 'kernel_size must be a positive odd integer.*got 4'),
    ((0, 1, 2), 'kernel_size must be a positive odd integer.*got 0'),
    ((5, 1, 0), 'scale_factor must be an integer >= 1, got 0'),
    ((5, 1, 1.5), 'scale_factor must be an integer >= 1, got 1.5'),
    ((5, 0, 2), 'group_size must be a positive integer, got 0'),
    ((5, 3, 2), r'masks must have shape \(N, G\*k\*k, sH, sW\) = '
                r'\(1, 75, 6, 6\)'),
])
def test_bad_arguments(args, match):
    x, masks = _inputs(1, 4, 3, 3, 5, 1, 2)
    with pytest.raises(ValueError, match=match):
        reassemble(x, masks, *args)


def test_bad_shapes():
    x, masks = _inputs(1, 4, 3, 3, 5, 1, 2)
    with pytest.raises(ValueError, match='masks must have shape'):
        reassemble(x, masks[:, :, :-1], 5, 1, 2)
    with pytest.raises(ValueError, match='features must be a 4-D tensor'):
        reassemble(x[0], masks, 5, 1, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        reassemble(x, masks, 5, 1, 2, backend='cuda')
