"""The native kernels' output cache (csrc/output_buffers.cpp): released
large output buffers are reused for the next output of the same size, the
values never depend on what a reused buffer held, and the capacity bounds
what it keeps (0 turns it off).

Skipped when the extension is not built.
"""
import os
import subprocess
import sys

import pytest
import torch

_ext = pytest.importorskip('dlu_mm._ext')

from dlu_mm.ops import native, reassemble_torch  # noqa: E402
from dlu_mm.ops.kernel_sampling import sample_kernel_space  # noqa: E402
from op_cases import op_inputs  # noqa: E402

MIB = 2**20
# (N, C, H, W, k, G, s): a 1x128x128x128 float32 output (8 MiB, the
# smallest the cache takes) and a smaller one (4 MiB, left to PyTorch's
# allocator).
LARGE = (1, 128, 64, 64, 5, 1, 2)
SMALL = (1, 64, 64, 64, 5, 1, 2)
LARGE_MIB = 8


@pytest.fixture
def capacity():
    """Runs a test with an empty cache of 64 MiB, restoring the capacity."""
    previous = native.set_output_cache_capacity(0)
    native.set_output_cache_capacity(64 * MIB)
    yield
    native.set_output_cache_capacity(previous)


def _dlu_inputs(case, seed=0):
    n, c, h, w, k, g, s = case
    torch.manual_seed(seed)
    return (torch.randn(n, c, h, w),
            torch.randn(n, g * k * k, h, w).softmax(1),
            torch.randn(n, g * 2 * s * s, h, w), k, g, s)


def _dlu_reference(features, space, offsets, k, g, s):
    kernels = sample_kernel_space(space.double(), offsets.double(), s)
    return reassemble_torch.reassemble_forward(features.double(), kernels,
                                               k, g, s).float()


def test_a_released_output_buffer_is_reused_with_fresh_values(capacity):
    first = _ext.dlu_reassemble_forward(*_dlu_inputs(LARGE, seed=0))
    address = first.data_ptr()
    assert native.cached_output_bytes() == 0
    del first
    assert native.cached_output_bytes() == LARGE_MIB * MIB
    inputs = _dlu_inputs(LARGE, seed=1)
    second = _ext.dlu_reassemble_forward(*inputs)
    assert second.data_ptr() == address
    assert native.cached_output_bytes() == 0
    torch.testing.assert_close(second, _dlu_reference(*inputs),
                               rtol=1e-5, atol=1e-5)


def test_every_large_output_and_gradient_goes_through_the_cache(capacity):
    t = op_inputs(*LARGE, torch.float32)
    out = _ext.reassemble_forward(t['features'], t['masks'], 5, 1, 2)
    grads = _ext.reassemble_backward(torch.ones_like(out), t['features'],
                                     t['masks'], 5, 1, 2, True, True)
    del out, grads
    # the output; grad_features (2 MiB) and grad_masks (1.6 MiB) stay with
    # PyTorch's allocator
    assert native.cached_output_bytes() == LARGE_MIB * MIB


def test_small_outputs_are_not_cached(capacity):
    out = _ext.dlu_reassemble_forward(*_dlu_inputs(SMALL))
    del out
    assert native.cached_output_bytes() == 0


def test_capacity_zero_turns_the_cache_off_and_frees_it(capacity):
    _ext.dlu_reassemble_forward(*_dlu_inputs(LARGE))  # freed at once
    assert native.cached_output_bytes() == LARGE_MIB * MIB
    assert native.set_output_cache_capacity(0) == 64 * MIB
    assert native.cached_output_bytes() == 0
    _ext.dlu_reassemble_forward(*_dlu_inputs(LARGE))  # freed at once
    assert native.cached_output_bytes() == 0


def test_the_oldest_buffers_go_first_when_the_capacity_is_reached(capacity):
    native.set_output_cache_capacity(12 * MIB)
    a = _ext.dlu_reassemble_forward(*_dlu_inputs(LARGE))
    b = _ext.dlu_reassemble_forward(*_dlu_inputs(LARGE))
    newest = b.data_ptr()
    del a, b  # 16 MiB released, 12 MiB capacity: only b's buffer stays
    assert native.cached_output_bytes() == LARGE_MIB * MIB
    assert _ext.dlu_reassemble_forward(
        *_dlu_inputs(LARGE)).data_ptr() == newest


def test_an_output_from_the_cache_can_be_resized(capacity):
    out = _ext.dlu_reassemble_forward(*_dlu_inputs(LARGE))
    out.resize_(2, 128, 128, 128).fill_(1.0)
    assert out.sum().item() == 2 * 128**3


@pytest.mark.parametrize('bad', [-1, 1.5, True])
def test_a_bad_capacity_is_refused(bad):
    with pytest.raises(ValueError, match='capacity_bytes must be an int >= 0'):
        native.set_output_cache_capacity(bad)


def test_a_bad_environment_capacity_names_the_variable():
    code = ('import torch; from dlu_mm import _ext; '
            '_ext.dlu_reassemble_forward(torch.zeros(1, 128, 64, 64), '
            'torch.zeros(1, 25, 64, 64), torch.zeros(1, 8, 64, 64), 5, 1, 2)')
    env = dict(os.environ, DLU_MM_OUTPUT_CACHE_MIB='lots')
    result = subprocess.run([sys.executable, '-c', code], env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert ("DLU_MM_OUTPUT_CACHE_MIB must be a whole number of MiB >= 0 "
            "(0 turns the output cache off), got 'lots'") in result.stderr
