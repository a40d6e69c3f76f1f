"""What DLU detectors and segmentors need from mmdeploy to export to plain
ONNX (standard domain only) with dynamic height and width.

* ``grid_sampler`` (:func:`grid_sampler__onnx`): mmdeploy maps every
  ``F.grid_sample`` to its custom ``mmdeploy::grid_sampler`` op, which
  plain ONNX Runtime refuses (it needs mmdeploy's compiled op library), at
  every opset. DLU's kernel space expander is a ``grid_sample``
  (``align_corners=True``, border padding); from opset 16 it is ONNX's own
  ``GridSample``, which this emits for 4-D inputs (mmdeploy's op stays for
  lower opsets, 5-D inputs, and the TensorRT / PPLNN backends, which ship
  kernels for it).
* ``FPN_CARAFE.tensor_add`` (:func:`fpn_carafe__tensor_add`): mmdet's
  "add, cropping the upsampled map when sizes differ" is a Python branch on
  tensor sizes, so the traced graph keeps the branch taken at the export
  size: exported at a multiple of 64, an input whose pyramid has an odd
  level fails in the graph's ``Add``. The rewrite crops unconditionally
  (a no-op crop when sizes agree). It applies to mmdet's ``FPN_CARAFE`` and
  this package's ``FPN_Upsample`` (``dlu_mm.mmdet.fpn_upsample``).
* :func:`dlu_mm.mmseg.upsample_to.upsample_to` (:func:`upsample_to__onnx`):
  the decode heads' "upsample by s, then fit to the finer level" reads the
  target size as Python ints; the rewrite keeps the sizes symbolic.
* ``F.adaptive_avg_pool2d`` (:func:`adaptive_avg_pool2d__onnx`): mmdeploy
  replaces it with an ``avg_pool2d`` whose kernel is computed from the
  export size, which is exact only where the map divides into the bins
  and is frozen at that size (it warns so for dynamic shapes). UperNet's
  pyramid pooling (bins 1, 2, 3, 6) on a 1/32 map of 8x8 already differs.
  The rewrite computes adaptive average pooling exactly for any size, as
  two matrix products with bin matrices built from the input's size.

Every rewrite is numerically the function it replaces (the tests compare
each with the original at several sizes) and is active only inside
mmdeploy's ``RewriterContext``: the two size fixes for every backend, the
``GridSample`` and pooling rewrites for every backend except TensorRT and
PPLNN (and, for pooling, ncnn and TorchScript), where mmdeploy keeps its
own. Only ONNX Runtime is tested.
"""
import torch
import torch.nn as nn
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.pytorch.symbolics.grid_sampler import \
    grid_sampler as mmdeploy_grid_sampler
from torch.nn.modules.utils import _pair

from .bridges import OWN_KERNEL_BACKENDS, ApplyWhen

# F.grid_sample's enums (torch/nn/functional.py) -> ONNX attribute strings;
# GridSample-20 renamed bilinear/bicubic to linear/cubic.
_GRID_MODES = {16: ('bilinear', 'nearest', 'bicubic'),
               20: ('linear', 'nearest', 'cubic')}
_GRID_PADDING = ('zeros', 'border', 'reflection')


@SYMBOLIC_REWRITER.register_symbolic('grid_sampler', is_pytorch=True,
                                     extra_checkers=ApplyWhen())
def grid_sampler__onnx(g, input, grid, interpolation_mode, padding_mode,
                       align_corners=False):
    """``aten::grid_sampler`` as ONNX ``GridSample`` (opset >= 16, 4-D);
    otherwise mmdeploy's own symbolic (``mmdeploy::grid_sampler``)."""
    from torch.onnx import symbolic_helper as sh
    rank = sh._get_tensor_rank(input)
    if g.opset < 16 or rank != 4:
        return mmdeploy_grid_sampler(g, input, grid, interpolation_mode,
                                     padding_mode, align_corners)
    modes = _GRID_MODES[20 if g.opset >= 20 else 16]
    return g.op('GridSample', input, grid,
                mode_s=modes[sh._parse_arg(interpolation_mode, 'i')],
                padding_mode_s=_GRID_PADDING[sh._parse_arg(padding_mode,
                                                           'i')],
                align_corners_i=int(sh._parse_arg(align_corners, 'b')))


def _crop_add(a, b):
    return a + b[:, :, :a.size(2), :a.size(3)]


@FUNCTION_REWRITER.register_rewriter(
    'mmdet.models.necks.fpn_carafe.FPN_CARAFE.tensor_add',
    extra_checkers=ApplyWhen((),
                             loaded_modules=['mmdet.models.necks.fpn_carafe']))
def fpn_carafe__tensor_add(self, a, b):
    """``a + b`` with ``b`` (N, C, H', W'), H' >= H, W' >= W, cropped to
    ``a``'s (N, C, H, W) without a test on the sizes."""
    return _crop_add(a, b)


@FUNCTION_REWRITER.register_rewriter(
    'dlu_mm.mmdet.fpn_upsample.FPN_Upsample.tensor_add',
    extra_checkers=ApplyWhen((),
                             loaded_modules=['dlu_mm.mmdet.fpn_upsample']))
def fpn_upsample__tensor_add(self, a, b):
    """As :func:`fpn_carafe__tensor_add`, for ``FPN_Upsample`` (which
    inherits ``tensor_add`` today; rewritten by its own name so that an
    override of its own is covered too)."""
    return _crop_add(a, b)


# 'dlu_mm.mmseg.upsample_to' is the function: the package re-exports it
# under its module's name. mmdeploy swaps every reference to the function
# (the heads' module globals included) for the rewrite, and back on exit.
@FUNCTION_REWRITER.register_rewriter(
    'dlu_mm.mmseg.upsample_to',
    extra_checkers=ApplyWhen((),
                             loaded_modules=['dlu_mm.mmseg.upsample_to']))
def upsample_to__onnx(upsampler, x, size, scale_factor,
                      align_corners=False):
    """:func:`dlu_mm.mmseg.upsample_to.upsample_to` with symbolic sizes.

    Interpolation layers resize straight to ``size``; any other layer
    upsamples by s, is cropped to ``size`` and then resized to ``size``.
    Whether the resize is needed (a backbone that rounds level sizes down)
    depends on the input size, so the graph always has it; where the sizes
    already agree it is the identity (every output pixel falls on an input
    pixel with weight 1), so the numbers are the eager function's."""
    from mmseg.models.utils import resize
    ctx = FUNCTION_REWRITER.get_context()
    if not torch.onnx.is_in_onnx_export():
        return ctx.origin_func(upsampler, x, size, scale_factor,
                               align_corners)
    height, width = size
    if isinstance(upsampler, nn.Upsample):
        return resize(x, size=(height, width), mode=upsampler.mode,
                      align_corners=upsampler.align_corners, warning=False)
    out = upsampler(x)[..., :height, :width]
    return resize(out, size=(height, width), mode='bilinear',
                  align_corners=align_corners, warning=False)


def _bin_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) matrix of adaptive average pooling along one axis: row
    i averages [floor(i * size / bins), ceil((i + 1) * size / bins)).
    ``size`` may be a traced 0-dim tensor (then the matrix follows it)."""
    i = torch.arange(bins, device=like.device)
    start = torch.div(i * size, bins, rounding_mode='floor')
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode='floor')
    j = torch.arange(size, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


# mmdeploy has its own for ncnn and TorchScript (PyTorch's op as it is).
@FUNCTION_REWRITER.register_rewriter(
    'torch.nn.functional.adaptive_avg_pool2d',
    extra_checkers=ApplyWhen(OWN_KERNEL_BACKENDS + ('ncnn', 'torchscript')))
def adaptive_avg_pool2d__onnx(input, output_size):
    """``F.adaptive_avg_pool2d`` of (N, C, H, W) to (N, C, h, w) for any H,
    W: ``B_h @ input @ B_w^T`` with :func:`_bin_matrix` (MatMul and
    standard element-wise ops in ONNX). Output 1x1 keeps PyTorch's own
    export (``GlobalAveragePool``)."""
    ctx = FUNCTION_REWRITER.get_context()
    out_h, out_w = _pair(output_size)
    if out_h is None or out_w is None or (out_h, out_w) == (1, 1):
        return ctx.origin_func(input, output_size)
    rows = _bin_matrix(input.size(-2), int(out_h), input)
    cols = _bin_matrix(input.size(-1), int(out_w), input)
    return torch.matmul(torch.matmul(rows, input), cols.transpose(0, 1))
