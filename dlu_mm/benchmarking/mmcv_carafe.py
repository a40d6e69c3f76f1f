"""mmcv's own CARAFE CUDA kernels, as the anchor DLU is compared against
on a GPU machine that has no mmcv: built there with
``torch.utils.cpp_extension.load`` (nvcc) from the four CARAFE files of
mmcv's source distribution (``mmcv-2.1.0.tar.gz``, carried, ~470 KB), plus
a binding of ours. Nothing of mmcv is copied into this repository.

:func:`carafe` mirrors ``mmcv.ops.carafe`` (``CARAFEFunction``): the same
launchers, the same scratch tensors allocated per call, so its time is what
``CARAFEPack`` spends in its op.
"""
import tarfile
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

SOURCES = {  # member of the sdist (below mmcv-<version>/) -> local name
    'mmcv/ops/csrc/pytorch/cuda/carafe_cuda.cu': 'carafe_cuda.cu',
    'mmcv/ops/csrc/common/cuda/carafe_cuda_kernel.cuh':
    'carafe_cuda_kernel.cuh',
    'mmcv/ops/csrc/common/pytorch_cuda_helper.hpp':
    'pytorch_cuda_helper.hpp',
    'mmcv/ops/csrc/common/cuda/common_cuda_helper.hpp':
    'common_cuda_helper.hpp',
}
# torch >= 1.11 no longer ships THC; mmcv 2.1's helper still includes it.
THC_SHIM = '#pragma once\n#include <ATen/cuda/Atomic.cuh>\n'
BINDING = '''#include <torch/extension.h>
using at::Tensor;
void CARAFEForwardCUDAKernelLauncher(const Tensor features, const Tensor masks,
    Tensor rfeatures, Tensor routput, Tensor rmasks, Tensor output,
    const int kernel_size, const int group_size, const int scale_factor);
void CARAFEBackwardCUDAKernelLauncher(const Tensor top_grad,
    const Tensor rfeatures, const Tensor masks, Tensor rtop_grad,
    Tensor rbottom_grad_hs, Tensor rbottom_grad, Tensor rmask_grad,
    Tensor bottom_grad, Tensor mask_grad, const int kernel_size,
    const int group_size, const int scale_factor);
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &CARAFEForwardCUDAKernelLauncher);
  m.def("backward", &CARAFEBackwardCUDAKernelLauncher);
}
'''
_module = None
_failure: Optional[str] = None


def extract_sources(sdist: str, dest: str) -> Path:
    """Write the CARAFE sources of the mmcv sdist at ``sdist``, the THC
    shim and the binding into ``dest``; returns ``dest``. Raises
    ``FileNotFoundError`` naming the sdist and the missing member."""
    dest = Path(dest)
    (dest / 'THC').mkdir(parents=True, exist_ok=True)
    path = Path(sdist)
    if not path.is_file():
        raise FileNotFoundError(f'mmcv source distribution {sdist!r} not '
                                f'found (e.g. mmcv-2.1.0.tar.gz from PyPI)')
    with tarfile.open(path) as tar:
        members = {m.name.split('/', 1)[-1]: m for m in tar.getmembers()}
        for member, name in SOURCES.items():
            if member not in members:
                raise FileNotFoundError(f'{sdist!r} has no {member}: not an '
                                        f'mmcv 2.x source distribution')
            data = tar.extractfile(members[member]).read()
            (dest / name).write_bytes(data)
    (dest / 'THC' / 'THCAtomics.cuh').write_text(THC_SHIM)
    (dest / 'binding.cpp').write_text(BINDING)
    return dest


def build(sdist: str, build_dir: str, verbose: bool = False):
    """Compile the anchor (nvcc, through torch.utils.cpp_extension)."""
    global _module, _failure
    from torch.utils.cpp_extension import load
    try:
        src = extract_sources(sdist, build_dir)
        _module = load(name='mmcv_carafe_anchor',
                       sources=[str(src / 'binding.cpp'),
                                str(src / 'carafe_cuda.cu')],
                       extra_include_paths=[str(src)],
                       build_directory=str(src), verbose=verbose)
    except Exception as err:
        lines = str(err).strip().splitlines() or ['']
        _failure = f'{type(err).__name__}: {lines[-1]}'
        raise
    return _module


def build_failure() -> Optional[str]:
    """Why the last :func:`build` failed (its error's last line); None if
    it did not."""
    return _failure


def is_built() -> bool:
    return _module is not None


class _CARAFE(torch.autograd.Function):
    """``mmcv.ops.carafe``'s CARAFEFunction on the built launchers."""

    @staticmethod
    def forward(ctx, features, masks, kernel_size, group_size, scale_factor):
        n, c, h, w = features.shape
        output = features.new_zeros(n, c, h * scale_factor, w * scale_factor)
        routput = features.new_zeros(output.shape)
        rfeatures = features.new_zeros(features.shape)
        rmasks = masks.new_zeros(masks.shape)
        _module.forward(features, masks, rfeatures, routput, rmasks, output,
                        kernel_size, group_size, scale_factor)
        ctx.save_for_backward(features, masks, rfeatures)
        ctx.args = (kernel_size, group_size, scale_factor)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        features, masks, rfeatures = ctx.saved_tensors
        rtop_grad = torch.zeros_like(grad_output)
        rbottom_grad_hs = torch.zeros_like(grad_output)
        rbottom_grad = torch.zeros_like(features)
        rmask_grad = torch.zeros_like(masks)
        bottom_grad = torch.zeros_like(features)
        mask_grad = torch.zeros_like(masks)
        _module.backward(grad_output.contiguous(), rfeatures, masks,
                         rtop_grad, rbottom_grad_hs, rbottom_grad, rmask_grad,
                         bottom_grad, mask_grad, *ctx.args)
        return bottom_grad, mask_grad, None, None, None


def carafe(features: Tensor, masks: Tensor, kernel_size: int,
           group_size: int, scale_factor: int) -> Tensor:
    """mmcv's CUDA reassembly (after :func:`build`)."""
    if _module is None:
        raise RuntimeError('the mmcv CARAFE anchor is not built: call '
                           'dlu_mm.benchmarking.mmcv_carafe.build(sdist, dir)')
    return _CARAFE.apply(features.contiguous(), masks.contiguous(),
                         kernel_size, group_size, scale_factor)


def mmcv_op() -> Optional[object]:
    """``mmcv.ops.carafe`` where mmcv with its CUDA ops is installed."""
    try:
        from mmcv.ops import carafe as mmcv_carafe
    except ImportError:
        return None
    return mmcv_carafe
