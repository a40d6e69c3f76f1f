"""The gather-based bilinear sampler (DLU's deterministic CUDA path) against
``F.grid_sample(..., padding_mode='border', align_corners=True)``."""
import pytest
import torch
import torch.nn.functional as F

from dlu_mm.ops.kernel_sampling import (sample_bilinear_by_gather,
                                        sample_kernel_space)


def _grids(b, ho, wo, h, w):
    """Random points, points past every border, and the exact pixel centres
    of a zero-offset DLU (integer coordinates, last row/column included)."""
    g = torch.rand(b, ho, wo, 2, dtype=torch.float64) * 3.2 - 1.6
    ys = torch.linspace(-1, 1, h, dtype=torch.float64)
    xs = torch.linspace(-1, 1, w, dtype=torch.float64)
    centres = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), -1)
    g[0, :h, :w] = centres
    return g


@pytest.mark.parametrize('h,w', [(5, 7), (1, 6), (4, 1), (1, 1)])
def test_values_and_gradients_equal_grid_sample(h, w):
    torch.manual_seed(0)
    space = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    grid = _grids(2, 8, 9, h, w).requires_grad_()
    ref = F.grid_sample(space, grid, mode='bilinear', padding_mode='border',
                        align_corners=True)
    got = sample_bilinear_by_gather(space, grid)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    ref_gs, ref_gg = torch.autograd.grad(ref, (space, grid), grad)
    got_gs, got_gg = torch.autograd.grad(got, (space, grid), grad)
    torch.testing.assert_close(got_gs, ref_gs, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_gg, ref_gg, rtol=0, atol=1e-12)


def test_gradcheck():
    torch.manual_seed(1)
    space = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    # away from pixel boundaries, where the bilinear weights have kinks
    grid = (torch.rand(1, 3, 4, 2, dtype=torch.float64) * 1.6 - 0.8)
    grid.requires_grad_()
    assert torch.autograd.gradcheck(sample_bilinear_by_gather, (space, grid))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_deterministic_mode_on_cuda_uses_gather_and_is_repeatable():
    torch.manual_seed(2)
    space = torch.randn(2, 25, 30, 40, device='cuda').softmax(1)
    offsets = torch.randn(2, 8, 30, 40, device='cuda')
    ref = sample_kernel_space(space, offsets, 2)
    torch.use_deterministic_algorithms(True)
    try:
        grads = []
        for _ in range(2):
            s = space.clone().requires_grad_()
            o = offsets.clone().requires_grad_()
            out = sample_kernel_space(s, o, 2)
            torch.autograd.backward(out, torch.ones_like(out))
            grads.append((s.grad, o.grad))
    finally:
        torch.use_deterministic_algorithms(False)
    torch.testing.assert_close(out, ref)
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_cpu_per_channel_path_equals_one_grid_sample():
    """The CPU path samples the K channels as separate maps; values and
    gradients equal one grid_sample over the (N*G, K, H, W) kernel space."""
    torch.manual_seed(3)
    n, g, k, s, h, w = 2, 2, 9, 2, 5, 6
    space = torch.randn(n, g * k, h, w, dtype=torch.float64,
                        requires_grad=True)
    offsets = torch.randn(n, g * 2 * s * s, h, w, dtype=torch.float64,
                          requires_grad=True)
    got = sample_kernel_space(space, offsets, s)
    off = F.pixel_shuffle(offsets, s).reshape(n * g, 2, h * s, w * s)
    base_y = torch.arange(h * s, dtype=torch.float64).div(
        s, rounding_mode='floor')[:, None]
    base_x = torch.arange(w * s, dtype=torch.float64).div(
        s, rounding_mode='floor')[None, :]
    grid = torch.stack(((base_x + off[:, 0]) * 2 / (w - 1) - 1,
                        (base_y + off[:, 1]) * 2 / (h - 1) - 1), -1)
    ref = F.grid_sample(space.reshape(n * g, k, h, w), grid,
                        mode='bilinear', padding_mode='border',
                        align_corners=True).reshape(got.shape)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(got, (space, offsets), grad),
                    torch.autograd.grad(ref, (space, offsets), grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
