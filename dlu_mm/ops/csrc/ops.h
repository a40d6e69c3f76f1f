// The entry points of dlu_mm._ext (bound to Python in bindings.cpp).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace dlu_mm {

// CARAFE's reassembly with stored kernels (reassemble_cpu.cpp):
// features (N, C, H, W), masks (N, G*k*k, sH, sW) -> (N, C, sH, sW).
at::Tensor reassemble_forward(const at::Tensor& features,
                              const at::Tensor& masks, int64_t kernel_size,
                              int64_t group_size, int64_t scale_factor);

// (grad_features, grad_masks); an undefined tensor for one not needed.
std::tuple<at::Tensor, at::Tensor> reassemble_backward(
    const at::Tensor& grad_output, const at::Tensor& features,
    const at::Tensor& masks, int64_t kernel_size, int64_t group_size,
    int64_t scale_factor, bool needs_features_grad, bool needs_masks_grad);

// DLU's fused kernel sampling + reassembly (dlu_reassemble_cpu.cpp):
// features (N, C, H, W), kernel_space (N, G*k*k, H, W), offsets
// (N, G*2*s*s, H, W) -> (N, C, sH, sW).
at::Tensor dlu_reassemble_forward(const at::Tensor& features,
                                  const at::Tensor& kernel_space,
                                  const at::Tensor& offsets,
                                  int64_t kernel_size, int64_t group_size,
                                  int64_t scale_factor);

// (grad_features, grad_kernel_space, grad_offsets); undefined tensors for
// the features' gradient when not needed, and for both sampling gradients
// when those are not needed.
std::tuple<at::Tensor, at::Tensor, at::Tensor> dlu_reassemble_backward(
    const at::Tensor& grad_output, const at::Tensor& features,
    const at::Tensor& kernel_space, const at::Tensor& offsets,
    int64_t kernel_size, int64_t group_size, int64_t scale_factor,
    bool needs_features_grad, bool needs_sampling_grads);

}  // namespace dlu_mm
