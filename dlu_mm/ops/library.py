"""The ops as ``torch.library`` custom ops, so that ``torch.compile``,
``torch.library.opcheck`` and ``torch.export`` see them as single nodes:

* ``dlu_mm::reassemble(features, masks, kernel_size, group_size,
  scale_factor, backend) -> output`` -- CARAFE's reassembly;
* ``dlu_mm::dlu_reassemble(features, kernel_space, offsets, kernel_size,
  group_size, scale_factor, backend) -> output`` -- DLU's kernel sampling
  fused into the reassembly;

each with a fake (meta) kernel and a registered autograd formula whose
backward is another custom op (``..._backward``). ``backend`` ('native',
'triton' or 'torch', see :mod:`dlu_mm.ops.backend`) is resolved by the
public wrappers (:func:`dlu_mm.ops.reassemble`,
:func:`dlu_mm.ops.dlu_reassemble`) and picks the implementation; outputs
are in the inputs' dtype (which the wrappers make common). A gradient that
autograd does not need is returned as an empty tensor and not computed.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import native, reassemble_torch, triton_backend
from .kernel_sampling import sample_kernel_space, sample_kernel_space_backward

_IMPLEMENTATIONS = {'native': native, 'triton': triton_backend,
                    'torch': reassemble_torch}


def _implementation(backend: str):
    try:
        return _IMPLEMENTATIONS[backend]
    except KeyError:
        raise ValueError(f'backend must be one of {sorted(_IMPLEMENTATIONS)}'
                         f', got {backend!r}') from None


def _or_empty(grad: Optional[Tensor], like: Tensor) -> Tensor:
    return like.new_empty(0) if grad is None else grad


def _or_none(grad: Tensor, needed: bool) -> Optional[Tensor]:
    return grad if needed else None


def _upsampled_shape(features: Tensor, scale_factor: int):
    n, c, h, w = features.shape
    return (n, c, h * scale_factor, w * scale_factor)


# ------------------------------------------------------------- reassemble
@torch.library.custom_op('dlu_mm::reassemble', mutates_args=())
def reassemble_op(features: Tensor, masks: Tensor, kernel_size: int,
                  group_size: int, scale_factor: int, backend: str) -> Tensor:
    return _implementation(backend).reassemble_forward(
        features, masks, kernel_size, group_size, scale_factor)


@reassemble_op.register_fake
def _(features, masks, kernel_size, group_size, scale_factor, backend):
    return features.new_empty(_upsampled_shape(features, scale_factor))


@torch.library.custom_op('dlu_mm::reassemble_backward', mutates_args=())
def reassemble_backward_op(grad_output: Tensor, features: Tensor,
                           masks: Tensor, kernel_size: int, group_size: int,
                           scale_factor: int, backend: str,
                           needs_features_grad: bool,
                           needs_masks_grad: bool) -> Tuple[Tensor, Tensor]:
    grad_features, grad_masks = _implementation(backend).reassemble_backward(
        grad_output, features, masks, kernel_size, group_size, scale_factor,
        needs_features_grad, needs_masks_grad)
    return _or_empty(grad_features, features), _or_empty(grad_masks, masks)


@reassemble_backward_op.register_fake
def _(grad_output, features, masks, kernel_size, group_size, scale_factor,
      backend, needs_features_grad, needs_masks_grad):
    return (torch.empty_like(features) if needs_features_grad else
            features.new_empty(0),
            torch.empty_like(masks) if needs_masks_grad else
            masks.new_empty(0))


def _reassemble_setup(ctx, inputs, output):
    features, masks, kernel_size, group_size, scale_factor, backend = inputs
    ctx.save_for_backward(features, masks)
    ctx.args = (kernel_size, group_size, scale_factor, backend)


def _reassemble_backward(ctx, grad_output):
    features, masks = ctx.saved_tensors
    needs = ctx.needs_input_grad[:2]
    grad_features, grad_masks = reassemble_backward_op(
        grad_output.contiguous(), features, masks, *ctx.args, *needs)
    return (_or_none(grad_features, needs[0]), _or_none(grad_masks, needs[1]),
            None, None, None, None)


reassemble_op.register_autograd(_reassemble_backward,
                                setup_context=_reassemble_setup)


# --------------------------------------------------------- dlu_reassemble
def _dlu_torch_forward(features, kernel_space, offsets, kernel_size,
                       group_size, scale_factor):
    """The unfused composition: sample the kernels, then reassemble."""
    kernels = sample_kernel_space(kernel_space, offsets, scale_factor)
    return reassemble_torch.reassemble_forward(features, kernels, kernel_size,
                                               group_size, scale_factor)


def _dlu_torch_backward(grad_output, features, kernel_space, offsets,
                        kernel_size, group_size, scale_factor,
                        needs_features_grad, needs_sampling_grads):
    """Gradients of the unfused composition (the plain reassembly backward,
    then grid_sample's backward for the sampling)."""
    kernels = sample_kernel_space(kernel_space, offsets, scale_factor)
    grad_features, grad_kernels = reassemble_torch.reassemble_backward(
        grad_output, features, kernels, kernel_size, group_size,
        scale_factor, needs_features_grad, needs_sampling_grads)
    grad_space = grad_off = None
    if needs_sampling_grads:
        grad_space, grad_off = sample_kernel_space_backward(
            grad_kernels, kernel_space, offsets, scale_factor)
    return grad_features, grad_space, grad_off


def _dlu_implementation(backend: str):
    if backend == 'torch':
        return _dlu_torch_forward, _dlu_torch_backward
    module = _implementation(backend)
    return module.dlu_reassemble_forward, module.dlu_reassemble_backward


@torch.library.custom_op('dlu_mm::dlu_reassemble', mutates_args=())
def dlu_reassemble_op(features: Tensor, kernel_space: Tensor,
                      offsets: Tensor, kernel_size: int, group_size: int,
                      scale_factor: int, backend: str) -> Tensor:
    return _dlu_implementation(backend)[0](features, kernel_space, offsets,
                                           kernel_size, group_size,
                                           scale_factor)


@dlu_reassemble_op.register_fake
def _(features, kernel_space, offsets, kernel_size, group_size, scale_factor,
      backend):
    return features.new_empty(_upsampled_shape(features, scale_factor))


@torch.library.custom_op('dlu_mm::dlu_reassemble_backward', mutates_args=())
def dlu_reassemble_backward_op(
        grad_output: Tensor, features: Tensor, kernel_space: Tensor,
        offsets: Tensor, kernel_size: int, group_size: int,
        scale_factor: int, backend: str, needs_features_grad: bool,
        needs_sampling_grads: bool) -> Tuple[Tensor, Tensor, Tensor]:
    grads = _dlu_implementation(backend)[1](
        grad_output, features, kernel_space, offsets, kernel_size,
        group_size, scale_factor, needs_features_grad, needs_sampling_grads)
    return tuple(_or_empty(g, like)
                 for g, like in zip(grads, (features, kernel_space, offsets)))


@dlu_reassemble_backward_op.register_fake
def _(grad_output, features, kernel_space, offsets, kernel_size, group_size,
      scale_factor, backend, needs_features_grad, needs_sampling_grads):
    return tuple(
        torch.empty_like(t) if needed else t.new_empty(0)
        for t, needed in ((features, needs_features_grad),
                          (kernel_space, needs_sampling_grads),
                          (offsets, needs_sampling_grads)))


def _dlu_setup(ctx, inputs, output):
    features, kernel_space, offsets = inputs[:3]
    ctx.save_for_backward(features, kernel_space, offsets)
    ctx.args = inputs[3:]


def _dlu_backward(ctx, grad_output):
    needs = ctx.needs_input_grad
    grads = dlu_reassemble_backward_op(grad_output.contiguous(),
                                       *ctx.saved_tensors, *ctx.args,
                                       needs[0], needs[1] or needs[2])
    return (*(_or_none(g, n) for g, n in zip(grads, needs[:3])), None, None,
            None, None)


dlu_reassemble_op.register_autograd(_dlu_backward, setup_context=_dlu_setup)
