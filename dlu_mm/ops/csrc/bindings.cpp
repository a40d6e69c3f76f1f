// Python bindings of dlu_mm._ext. The ops that Python code calls are the
// torch.library custom ops of dlu_mm/ops/library.py, which call these.
#include <torch/extension.h>

#include "ops.h"
#include "output_buffers.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dlu_mm native CPU kernels (C++/OpenMP): CARAFE-style "
            "reassembly and DLU's fused kernel sampling + reassembly";
  m.def("reassemble_forward", &dlu_mm::reassemble_forward,
        "Y = reassemble(features, masks): (N, C, H, W), (N, G*k*k, sH, sW) "
        "-> (N, C, sH, sW)",
        py::arg("features"), py::arg("masks"), py::arg("kernel_size"),
        py::arg("group_size"), py::arg("scale_factor"));
  m.def("reassemble_backward", &dlu_mm::reassemble_backward,
        "(grad_features, grad_masks); an undefined tensor for a gradient "
        "that is not needed",
        py::arg("grad_output"), py::arg("features"), py::arg("masks"),
        py::arg("kernel_size"), py::arg("group_size"), py::arg("scale_factor"),
        py::arg("needs_features_grad"), py::arg("needs_masks_grad"));
  m.def("dlu_reassemble_forward", &dlu_mm::dlu_reassemble_forward,
        "Y = DLU(features, kernel_space, offsets): (N, C, H, W), "
        "(N, G*k*k, H, W), (N, G*2*s*s, H, W) -> (N, C, sH, sW)",
        py::arg("features"), py::arg("kernel_space"), py::arg("offsets"),
        py::arg("kernel_size"), py::arg("group_size"),
        py::arg("scale_factor"));
  m.def("dlu_reassemble_backward", &dlu_mm::dlu_reassemble_backward,
        "(grad_features, grad_kernel_space, grad_offsets); undefined "
        "tensors for gradients that are not needed",
        py::arg("grad_output"), py::arg("features"), py::arg("kernel_space"),
        py::arg("offsets"), py::arg("kernel_size"), py::arg("group_size"),
        py::arg("scale_factor"), py::arg("needs_features_grad"),
        py::arg("needs_sampling_grads"));
  m.def("cached_output_bytes", &dlu_mm::cached_output_bytes,
        "bytes held by the output cache (released output buffers kept for "
        "reuse)");
  m.def("output_cache_capacity", &dlu_mm::output_cache_capacity,
        "the output cache's capacity in bytes (0: off)");
  m.def("set_output_cache_capacity", &dlu_mm::set_output_cache_capacity,
        "sets the output cache's capacity in bytes (0 turns it off and "
        "frees what it holds); returns the previous capacity",
        py::arg("bytes"));
}
