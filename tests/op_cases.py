"""What the op tests share: random inputs of the reassembly and of DLU's
fused op, and comparison at a dtype's precision."""
import torch

# Relative to the largest reference value: sums of many rounded terms are
# compared at the precision of the dtype.
TOLERANCES = {torch.float64: 1e-12, torch.float32: 2e-5,
              torch.float16: 2e-2, torch.bfloat16: 8e-2}


def case_id(case) -> str:
    return 'x'.join(map(str, case))


def op_inputs(n, c, h, w, k, g, s, dtype=torch.float64,
              offset_std=1.5) -> dict:
    """features (N, C, H, W); normalised masks (N, G*k*k, sH, sW) and
    kernel space (N, G*k*k, H, W); offsets (N, G*2*s*s, H, W) of std
    ``offset_std`` px (beyond the border near it); an output gradient; all
    drawn in float64, then in ``dtype``. No offset is an integer once
    rounded to ``dtype`` (bf16 rounds some to integers): at integer points
    the derivative is one-sided, and the composition's grid_sample, which
    works on rescaled coordinates, may land a rounding error to either side
    of them (the zero-offset test in test_dlu_reassemble.py covers them)."""
    def normalised(*shape):
        t = torch.randn(n, g, k * k, *shape, dtype=torch.float64).mul(2)
        return t.softmax(2).reshape(n, g * k * k, *shape)

    offsets = (torch.randn(n, g * 2 * s * s, h, w, dtype=torch.float64) *
               offset_std).to(dtype)
    offsets[offsets.double().frac() == 0] += 0.25
    tensors = dict(features=torch.randn(n, c, h, w, dtype=torch.float64),
                   masks=normalised(h * s, w * s), space=normalised(h, w),
                   offsets=offsets,
                   grad_output=torch.randn(n, c, h * s, w * s,
                                           dtype=torch.float64))
    return {name: t.to(dtype) for name, t in tensors.items()}


def assert_close(actual, expected, dtype) -> None:
    """``actual`` (of ``dtype``, any device, no NaN) equals ``expected`` to
    the dtype's tolerance, relative to the largest expected value."""
    assert actual.dtype == dtype and actual.shape == expected.shape
    assert not actual.isnan().any(), 'NaN: a load left its tensor?'
    tol = TOLERANCES[dtype]
    expected = expected.double().cpu()
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1
    torch.testing.assert_close(actual.double().cpu(), expected, rtol=tol,
                               atol=tol * scale)
