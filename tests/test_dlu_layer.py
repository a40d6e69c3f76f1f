"""The DLU layer: paper-exact forward against the loop reference, gradients,
parameter counts, dtypes/layouts, initialisation and argument errors."""
import numpy as np
import pytest
import torch

import reference
from dlu_mm.complexity import UpsamplerSpec, dlu_params
from dlu_mm.layers import DLU


def _dlu(c, s, k=5, g=1, ke=3, d=1, cm=8, offset_std=0.7):
    """A DLU whose offsets are non-trivial (the init makes them zero), so
    sampling crosses pixels and, near edges, the border."""
    m = DLU(c, s, up_kernel=k, up_group=g, encoder_kernel=ke,
            encoder_dilation=d, compressed_channels=cm).double()
    torch.nn.init.normal_(m.conv_offset.weight, std=offset_std)
    torch.nn.init.normal_(m.conv_offset.bias, std=offset_std)
    torch.nn.init.normal_(m.kernel_space_generator.weight, std=0.5)
    return m


@pytest.mark.parametrize('n,c,h,w,s,k,g,ke,d', [
    (1, 4, 4, 3, 2, 5, 1, 3, 1),
    (2, 4, 3, 3, 3, 3, 2, 3, 1),
    (1, 8, 3, 4, 4, 5, 4, 3, 2),
    (1, 4, 2, 2, 8, 3, 1, 1, 1),
    (1, 4, 1, 3, 2, 5, 2, 3, 1),   # H = 1
    (2, 2, 3, 1, 2, 3, 1, 5, 1),   # W = 1
    (1, 10, 3, 4, 2, 3, 4, 3, 1),  # G does not divide C (mmcv's groups)
])
def test_matches_paper_reference(backend, n, c, h, w, s, k, g, ke, d):
    m = _dlu(c, s, k, g, ke, d)
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    out = m(x)
    assert out.shape == (n, c, h * s, w * s)
    np.testing.assert_allclose(out.detach().numpy(), reference.dlu(m, x),
                               rtol=1e-9, atol=1e-9)


def test_groups_use_their_own_offsets():
    """The reference code applies group 0's offsets to every group; here
    changing group 1's offsets must change group 1's output only."""
    m = _dlu(4, 2, g=2)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    before = m(x).detach()
    with torch.no_grad():  # channels of group 1's offsets: 8..15
        m.conv_offset.bias[8:] += 0.6
    after = m(x).detach()
    assert torch.equal(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2:], after[:, 2:])


def test_zero_offsets_use_the_source_pixel_kernel():
    """At init (offsets zero) every output pixel of a source pixel shares
    the kernel of that source pixel."""
    m = DLU(8, 3, compressed_channels=4)
    prediction = m.predict_kernels(torch.randn(1, 8, 4, 5))
    assert prediction.kernels is None  # never materialised by the layer
    offsets, kernels = prediction.offsets, prediction.per_pixel_kernels(3)
    assert torch.count_nonzero(offsets) == 0
    blocks = kernels.reshape(1, 25, 4, 3, 5, 3)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    torch.testing.assert_close(kernels.sum(1), torch.ones(1, 12, 15))


def test_gradcheck_whole_layer(backend):
    m = _dlu(4, 2, k=3, g=2, cm=4)
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, ))
    m(x).sum().backward()  # parameters get gradients, the offset conv too
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in m.parameters())


@pytest.mark.parametrize('c,s,k,g,ke,cm', [(256, 2, 5, 1, 3, 64),
                                           (256, 16, 5, 1, 3, 64),
                                           (64, 3, 3, 4, 5, 16),
                                           (32, 8, 7, 2, 1, 8)])
def test_parameter_count_equals_formula(c, s, k, g, ke, cm):
    m = DLU(c, s, up_kernel=k, up_group=g, encoder_kernel=ke,
            compressed_channels=cm)
    spec = UpsamplerSpec(c, s, k, g, ke, cm)
    assert sum(p.numel() for p in m.parameters()) == dlu_params(spec)


def test_paper_parameter_counts():
    assert sum(p.numel() for p in DLU(256, 2).parameters()) == 35489
    assert sum(p.numel() for p in DLU(256, 16).parameters()) == 326297


def test_state_dict_keys_and_init():
    m = DLU(256, 2)
    assert sorted(m.state_dict()) == sorted(
        f'{name}.{p}' for name in ('channel_compressor',
                                   'kernel_space_generator', 'conv_offset')
        for p in ('weight', 'bias'))
    assert torch.count_nonzero(m.conv_offset.weight) == 0
    assert torch.count_nonzero(m.conv_offset.bias) == 0
    assert m.kernel_space_generator.weight.std() < 0.002
    bound = (6 / (256 + 64))**0.5  # Xavier-uniform of the 1x1 compressor
    assert m.channel_compressor.weight.abs().max() <= bound
    assert m.channel_compressor.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5),
                                       (torch.float16, 1e-2),
                                       (torch.bfloat16, 6e-2)])
def test_dtypes(backend, dtype, tol):
    """Whole layer in one dtype vs float64; tolerance relative to the
    output's scale (bf16 keeps 8 mantissa bits through convs, softmax,
    sampling and reassembly)."""
    m = _dlu(8, 2, g=2).float()
    x = torch.randn(2, 8, 7, 5)
    ref = m.double()(x.double()).detach()
    out = m.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    scale = ref.abs().max().item()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol * scale)


def test_autocast_bf16_forward_backward(backend):
    m = _dlu(8, 2).float()
    x = torch.randn(2, 8, 7, 5, requires_grad=True)
    ref = m(x).detach()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = m(x)
    torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.1)
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_layouts_and_batch(backend):
    m = _dlu(8, 2).float()
    x = torch.randn(3, 8, 9, 7)
    ref = m(x)
    torch.testing.assert_close(m(x.to(memory_format=torch.channels_last)),
                               ref)
    wide = torch.randn(3, 8, 9, 14)[..., ::2]
    torch.testing.assert_close(m(wide), m(wide.contiguous()))
    torch.testing.assert_close(m(x[1:2]), ref[1:2])  # batch independence


@pytest.mark.parametrize('kwargs,match', [
    (dict(up_kernel=4), 'up_kernel must be a positive odd integer.*got 4'),
    (dict(up_kernel=-3), 'up_kernel must be a positive odd integer.*got -3'),
    (dict(scale_factor=0), 'scale_factor must be an integer >= 1.*got 0'),
    (dict(scale_factor=2.5), 'scale_factor must be an integer >= 1.*got 2.5'),
    (dict(up_group=0), 'up_group must be a positive integer, got 0'),
    (dict(encoder_kernel=2), 'encoder_kernel must be a positive odd'),
    (dict(compressed_channels=0), 'compressed_channels must be a positive'),
])
def test_bad_arguments(kwargs, match):
    args = dict(channels=16, scale_factor=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DLU(**args)


def test_bad_forward_input():
    m = DLU(16, 2)
    with pytest.raises(ValueError, match='channels=16 but got an input with 8'):
        m(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match='expects a 4-D input'):
        m(torch.randn(16, 4, 4))
