"""Find the learned upsamplers in a model, capture what each one is given
while the model runs, and run a layer to get what it predicts.

A *learned upsampler* here is a reassembly upsampler: :class:`~dlu_mm.
layers.DLU`, :class:`~dlu_mm.layers.CARAFEPortable` or mmcv's
``CARAFEPack``. The first two expose ``predict_kernels``; for ``CARAFEPack``
the same :class:`~dlu_mm.layers.KernelPrediction` is computed from its
``channel_compressor``, ``content_encoder`` and ``kernel_normalizer``, which
run on the CPU (its reassembly, mmcv's ``carafe`` op, is CUDA-only; see
:func:`portable_mmcv_carafe`). Torch only (mmcv optional).
"""
import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..layers import DLU, CARAFEPortable, KernelPrediction
from ..ops import reassemble

try:  # mmcv is optional for the layers; its CARAFEPack is recognised if there
    from mmcv.ops.carafe import CARAFEPack
except ImportError:  # pragma: no cover - mmcv is in the project's env
    CARAFEPack = None

LEARNED_TYPES: Tuple[type, ...] = (DLU, CARAFEPortable) + (
    (CARAFEPack, ) if CARAFEPack is not None else ())
"""The layer classes this module inspects."""


class NoLearnedUpsamplerError(ValueError):
    """The model has no layer of :data:`LEARNED_TYPES`."""


def upsampler_kind(module: nn.Module) -> str:
    """``'DLU'`` or ``'CARAFE'`` (portable or mmcv's); ``ValueError`` for any
    other module."""
    if isinstance(module, DLU):
        return 'DLU'
    if isinstance(module, LEARNED_TYPES):
        return 'CARAFE'
    raise ValueError(f'{type(module).__name__} is not a learned upsampler; '
                     f'accepted: {[t.__name__ for t in LEARNED_TYPES]}')


def find_upsamplers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` of every learned upsampler in ``model``, in
    ``named_modules`` order (e.g. ``neck.upsample_modules.0``).

    Raises:
        NoLearnedUpsamplerError: if there is none; the message names the
            modules that upsample instead (``nn.Upsample``, transposed
            convs, pixel shuffles) and the upsample types that would work.
    """
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, LEARNED_TYPES)]
    if found:
        return found
    others = [f'{name} ({_describe(m)})' for name, m in model.named_modules()
              if isinstance(m, (nn.Upsample, nn.ConvTranspose2d,
                                nn.PixelShuffle))]
    raise NoLearnedUpsamplerError(
        f'{type(model).__name__} has no learned upsampler (accepted layers: '
        f'{", ".join(t.__name__ for t in LEARNED_TYPES)}); its upsampling is '
        f'done by {", ".join(others) if others else "no upsample layer"}. '
        f"Use a config whose upsample_cfg type is 'dlu', 'carafe_portable' "
        f"or 'carafe'.")


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Upsample):
        return f'{type(module).__name__}, mode={module.mode}'
    return type(module).__name__


def predict_kernels(layer: nn.Module, x: Tensor) -> KernelPrediction:
    """What ``layer`` predicts from ``x`` (N, C, H, W) before reassembling:
    ``layer.predict_kernels(x)`` for DLU / CARAFEPortable; for mmcv's
    ``CARAFEPack`` the normalised kernels (N, G*k^2, sH, sW) from its own
    submodules (``kernel_space`` and ``offsets`` None)."""
    if hasattr(layer, 'predict_kernels'):
        return layer.predict_kernels(x)
    if CARAFEPack is not None and isinstance(layer, CARAFEPack):
        return KernelPrediction(layer.kernel_normalizer(
            layer.content_encoder(layer.channel_compressor(x))))
    raise ValueError(f'layer must be one of '
                     f'{[t.__name__ for t in LEARNED_TYPES]}, got '
                     f'{type(layer).__name__}')


@dataclass
class UpsamplerRecord:
    """One learned upsampler seen on one input. Shapes for an input
    (N, C, H, W), s = ``scale_factor``, k = ``up_kernel``, G = ``up_group``:

    * ``input``: (N, C, H, W) (N = images, or RoIs in a mask head);
    * ``output``: (N, C, sH, sW), the layer's output on ``input``;
    * ``prediction``: :class:`~dlu_mm.layers.KernelPrediction` (DLU: kernel
      space (N, G*k^2, H, W) and offsets (N, G*2*s^2, H, W); CARAFE:
      kernels (N, G*k^2, sH, sW));
    * ``calls``: how often the model called the layer (``input`` is the
      first call's).
    """
    name: str
    kind: str
    layer_type: str
    scale_factor: int
    up_kernel: int
    up_group: int
    input: Tensor
    output: Tensor
    prediction: KernelPrediction
    calls: int = 1


@torch.no_grad()
def inspect_upsampler(layer: nn.Module, x: Tensor, name: str = '',
                      output: Tensor = None, calls: int = 1
                      ) -> UpsamplerRecord:
    """Run ``layer`` on ``x`` (N, C, H, W) and return its kernel space,
    offsets and kernels (:class:`UpsamplerRecord`). ``output``: the layer's
    output on ``x`` if already known (else it is computed; mmcv's
    ``CARAFEPack`` on a CPU tensor reassembles with
    :func:`dlu_mm.ops.reassemble`)."""
    prediction = predict_kernels(layer, x)
    if output is None:
        with portable_mmcv_carafe(layer):
            output = layer(x)
    return UpsamplerRecord(
        name=name, kind=upsampler_kind(layer),
        layer_type=type(layer).__name__,
        scale_factor=int(layer.scale_factor), up_kernel=int(layer.up_kernel),
        up_group=int(layer.up_group), input=x, output=output,
        prediction=prediction, calls=calls)


@contextlib.contextmanager
def portable_mmcv_carafe(model: nn.Module) -> Iterator[None]:
    """Within the block, every mmcv ``CARAFEPack`` in ``model`` (``model``
    itself included) reassembles CPU tensors with
    :func:`dlu_mm.ops.reassemble` (the numbers of mmcv's CUDA op; CUDA
    tensors still go to mmcv's op). This is what lets a model with mmcv's
    CARAFE run on the CPU for inspection."""
    if CARAFEPack is None:
        yield
        return
    patched = [m for m in model.modules() if isinstance(m, CARAFEPack)]

    def portable(layer):
        original = layer.feature_reassemble

        def feature_reassemble(x: Tensor, mask: Tensor) -> Tensor:
            if x.is_cuda:
                return original(x, mask)
            return reassemble(x, mask, layer.up_kernel, layer.up_group,
                              layer.scale_factor)
        return feature_reassemble

    for m in patched:
        m.feature_reassemble = portable(m)
    try:
        yield
    finally:
        for m in patched:
            del m.feature_reassemble  # the class's method again


@dataclass
class _Seen:
    input: Tensor = None
    output: Tensor = None
    calls: int = 0


@contextlib.contextmanager
def capture_upsamplers(upsamplers: Sequence[Tuple[str, nn.Module]]
                       ) -> Iterator[Dict[str, _Seen]]:
    """Record each layer's first input and output (and its number of calls)
    while the block runs; yields ``{name: seen}``, filled as the model runs.
    Turn the result into records with :func:`records_from_capture`."""
    seen = {name: _Seen() for name, _ in upsamplers}

    def hook_for(name):
        def hook(module, args, output):
            entry = seen[name]
            if entry.calls == 0:
                entry.input = args[0].detach()
                entry.output = output.detach()
            entry.calls += 1
        return hook

    handles = [layer.register_forward_hook(hook_for(name))
               for name, layer in upsamplers]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def records_from_capture(upsamplers: Sequence[Tuple[str, nn.Module]],
                         seen: Dict[str, _Seen]) -> List[UpsamplerRecord]:
    """One :class:`UpsamplerRecord` per layer the model called (layers that
    did not run, e.g. a mask head on an image without detections, are left
    out)."""
    return [inspect_upsampler(layer, seen[name].input, name,
                              output=seen[name].output,
                              calls=seen[name].calls)
            for name, layer in upsamplers if seen[name].calls]
