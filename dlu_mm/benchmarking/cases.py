"""What the benchmark times: upsample layers and the ops alone, each as a
:class:`Case` that makes fresh inputs and runs one call.

Layers: ``nearest``, ``bilinear``, ``carafe_portable``, ``dlu`` (the
device's default backend: native kernels on CPU, Triton on CUDA),
``dlu[torch]`` (the plain-PyTorch, unfused path) and ``carafe[mmcv]``
(CARAFE's kernel prediction with mmcv's own CUDA op: ``mmcv.ops.carafe``
where mmcv is installed, else the anchor built by
:mod:`dlu_mm.benchmarking.mmcv_carafe`). ``<layer>[kernels]``: a layer's
kernel prediction alone (CARAFE: its kernels; DLU: kernel space and
offsets) -- everything but its op. Ops: ``reassemble[<backend>]`` (masks
given) and ``dlu_reassemble[<backend>]`` (kernel space and offsets given)
on the backend named. Input: (N, C, H, W) at scale s, k_up = 5, G = 1.
"""
import os
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..layers import DLU, CARAFEPortable
from ..ops import dlu_reassemble, reassemble
from ..ops.backend import BACKEND_ENV, resolve_backend
from . import mmcv_carafe

UP_KERNEL = 5  # the paper's k_up
LAYERS = ('nearest', 'bilinear', 'carafe_portable', 'carafe[mmcv]', 'dlu',
          'dlu[torch]')
KERNELS = ('carafe_portable[kernels]', 'dlu[kernels]')
OPS = tuple(f'{op}[{backend}]' for op in ('reassemble', 'dlu_reassemble')
            for backend in ('native', 'triton', 'torch'))
CASES = LAYERS + KERNELS + OPS


def default_cases(device: torch.device) -> List[str]:
    """The cases a plain run times on ``device``."""
    if device.type == 'cuda':
        return ['nearest', 'bilinear', 'carafe_portable', 'carafe[mmcv]',
                'dlu', 'dlu[torch]', 'reassemble[triton]',
                'reassemble[torch]', 'dlu_reassemble[triton]',
                'dlu_reassemble[torch]']
    return ['nearest', 'bilinear', 'carafe_portable', 'dlu', 'dlu[torch]',
            'carafe_portable[kernels]', 'dlu[kernels]', 'reassemble[native]',
            'reassemble[torch]', 'dlu_reassemble[native]',
            'dlu_reassemble[torch]']


def _backend(name: str) -> Optional[str]:
    return name[name.index('[') + 1:-1] if '[' in name else None


def unavailable(name: str, device: torch.device) -> Optional[str]:
    """Why case ``name`` cannot run on ``device``; None if it can."""
    if name == 'carafe[mmcv]':
        if device.type != 'cuda':
            return "mmcv's CARAFE op runs on CUDA only"
        if mmcv_carafe.build_failure() is not None:
            return f"building mmcv's CARAFE failed: " \
                f'{mmcv_carafe.build_failure()}'
        if mmcv_carafe.mmcv_op() is None and not mmcv_carafe.is_built():
            return ('mmcv is not installed and its CARAFE was not built '
                    '(--mmcv-sdist)')
        return None
    if name.startswith(('reassemble[', 'dlu_reassemble[')):
        probe = torch.empty(1, device=device)
        try:
            resolve_backend(probe, _backend(name))
        except RuntimeError as err:
            return str(err).split(': ', 1)[-1]
    return None


@contextmanager
def backend_override(name: Optional[str]):
    """``$DLU_MM_REASSEMBLE_BACKEND`` set to ``name`` within the block
    (read per call by the ops); nothing when ``name`` is None."""
    if name is None:
        yield
        return
    old = os.environ.get(BACKEND_ENV)
    os.environ[BACKEND_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(BACKEND_ENV, None)
        else:
            os.environ[BACKEND_ENV] = old


class Case:
    """One benchmark case on one input shape; ``inputs()`` makes fresh
    inputs, ``run(inputs)`` returns the outputs of one call (a tuple)."""

    def __init__(self, name: str, shape: Tuple[int, int, int, int],
                 scale: int, device: torch.device, dtype: torch.dtype):
        if name not in CASES:
            raise ValueError(f'unknown case {name!r}; cases: {CASES}')
        c = shape[1]
        self.name, self.shape, self.scale = name, shape, scale
        self.device, self.dtype = device, dtype
        self.module: Optional[nn.Module] = None
        self.backend = _backend(name)
        self.kernels_only = name in KERNELS
        layer = name.split('[')[0]
        if layer in ('nearest', 'bilinear'):
            self.module = nn.Upsample(
                scale_factor=scale, mode=layer,
                align_corners=None if layer == 'nearest' else False)
        elif layer == 'carafe_portable':
            self.module = CARAFEPortable(c, scale, up_kernel=UP_KERNEL)
        elif layer == 'carafe':
            self.module = CARAFEPortable(c, scale, up_kernel=UP_KERNEL)
            self.module.reassemble = self._mmcv_reassemble
        elif layer == 'dlu':
            self.module = DLU(c, scale, up_kernel=UP_KERNEL)
        if self.module is not None:
            self.module.to(device=device, dtype=dtype)
            if self.kernels_only:
                self.backend = None

    def _mmcv_reassemble(self, x: Tensor, prediction) -> Tensor:
        op = mmcv_carafe.mmcv_op() or mmcv_carafe.carafe
        return op(x, prediction.kernels, UP_KERNEL, 1, self.scale)

    def inputs(self, requires_grad: bool) -> List[Tensor]:
        n, c, h, w = self.shape
        s, kk = self.scale, UP_KERNEL**2

        def make(*size, normalise=False):
            t = torch.randn(*size, device=self.device, dtype=self.dtype)
            return t.softmax(1) if normalise else t

        tensors = [make(n, c, h, w)]
        if self.name.startswith('reassemble['):
            tensors.append(make(n, kk, s * h, s * w, normalise=True))
        elif self.name.startswith('dlu_reassemble['):
            tensors += [make(n, kk, h, w, normalise=True),
                        make(n, 2 * s * s, h, w) * 0.5]
        return [t.requires_grad_(requires_grad) for t in tensors]

    def output_shapes(self) -> List[Tuple[int, ...]]:
        n, c, h, w = self.shape
        s, kk = self.scale, UP_KERNEL**2
        if self.name == 'carafe_portable[kernels]':
            return [(n, kk, s * h, s * w)]
        if self.name == 'dlu[kernels]':
            return [(n, kk, h, w), (n, 2 * s * s, h, w)]
        return [(n, c, s * h, s * w)]

    def run(self, tensors: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        s = self.scale
        if self.name.startswith('reassemble['):
            return (reassemble(*tensors, UP_KERNEL, 1, s,
                               backend=self.backend), )
        if self.name.startswith('dlu_reassemble['):
            return (dlu_reassemble(*tensors, UP_KERNEL, 1, s,
                                   backend=self.backend), )
        if self.kernels_only:
            prediction = self.module.predict_kernels(tensors[0])
            return tuple(t for t in prediction if t is not None)
        with backend_override(self.backend):  # 'dlu[torch]'
            return (self.module(tensors[0]), )

    def zero_grad(self, tensors: Sequence[Tensor]) -> None:
        for t in tensors:
            t.grad = None
        if self.module is not None:
            self.module.zero_grad(set_to_none=True)
