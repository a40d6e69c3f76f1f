"""Portable CARAFE: mmcv CARAFEPack's interface, state dict and numbers."""
import numpy as np
import pytest
import torch
from mmcv.ops import CARAFEPack

import reference
from dlu_mm.complexity import UpsamplerSpec, carafe_params
from dlu_mm.layers import CARAFEPortable


@pytest.mark.parametrize('n,c,h,w,s,k,g,ke', [(1, 4, 4, 3, 2, 5, 1, 3),
                                               (2, 4, 3, 3, 3, 3, 2, 3),
                                               (1, 8, 2, 3, 4, 5, 4, 1),
                                               (1, 2, 1, 2, 8, 3, 1, 3),
                                               (1, 10, 3, 3, 2, 3, 4, 3)])
def test_carafepack_state_dict_loads_and_matches_reference(
        backend, n, c, h, w, s, k, g, ke):
    pack = CARAFEPack(c, s, up_kernel=k, up_group=g, encoder_kernel=ke,
                      compressed_channels=6)
    torch.nn.init.normal_(pack.content_encoder.weight, std=0.5)
    m = CARAFEPortable(c, s, up_kernel=k, up_group=g, encoder_kernel=ke,
                       compressed_channels=6)
    m.load_state_dict(pack.state_dict(), strict=True)  # same keys, shapes
    m.double()
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    np.testing.assert_allclose(m(x).detach().numpy(), reference.carafe(m, x),
                               rtol=1e-9, atol=1e-9)


def test_kernels_match_carafepack_kernel_normalizer():
    """Everything before mmcv's CUDA op is CARAFEPack's own code on CPU."""
    pack = CARAFEPack(16, 2, up_group=2, compressed_channels=8)
    m = CARAFEPortable(16, 2, up_group=2, compressed_channels=8)
    m.load_state_dict(pack.state_dict())
    x = torch.randn(2, 16, 5, 6)
    expected = pack.kernel_normalizer(
        pack.content_encoder(pack.channel_compressor(x)))
    prediction = m.predict_kernels(x)
    assert prediction.kernel_space is None and prediction.offsets is None
    torch.testing.assert_close(prediction.kernels, expected)


def test_init_matches_carafepack():
    torch.manual_seed(1)
    pack = CARAFEPack(64, 2)
    torch.manual_seed(1)
    m = CARAFEPortable(64, 2)
    for key, value in pack.state_dict().items():
        torch.testing.assert_close(m.state_dict()[key], value)


def test_gradcheck(backend):
    m = CARAFEPortable(4, 2, up_kernel=3, up_group=2,
                       compressed_channels=4).double()
    torch.nn.init.normal_(m.content_encoder.weight, std=0.5)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x, ))


def test_parameter_counts():
    for s, expected in ((2, 74148), (16, 3709248)):
        assert sum(p.numel() for p in CARAFEPortable(256, s).parameters()) \
            == expected == carafe_params(UpsamplerSpec(256, s))


def test_bad_arguments():
    with pytest.raises(ValueError, match='up_kernel must be a positive odd'):
        CARAFEPortable(16, 2, up_kernel=2)
    with pytest.raises(ValueError, match='channels=16 but got an input'):
        CARAFEPortable(16, 2)(torch.randn(1, 4, 3, 3))
