/*
 * CARAFE's reassembly with stored kernels ("masks", N x G*k*k x sH x sW),
 * the semantics of mmcv.ops.carafe and of the plain-PyTorch reference
 * dlu_mm/ops/reassemble_torch.py. The kernels themselves are in
 * reassembly.h; here the kernels are read from, and their gradient written
 * to, tensors.
 */
#include "ops.h"
#include "reassembly.h"

namespace dlu_mm {
namespace {

// Reads kernel rows from the masks tensor.
template <typename scalar_t>
struct StoredKernels {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g;
  const scalar_t* masks;

  struct Loader {
    const StoredKernels& source;
    void prepare(const Band&, int64_t, int64_t) {}
    // dst[tap] (where not null) = row `row` of tap `tap` of the masks.
    void load_row(const Band& band, int64_t row, acc_t* const* dst) {
      const Geometry& g = source.g;
      for (int64_t tap = 0; tap < g.kk; ++tap) {
        if (dst[tap] == nullptr) continue;
        widen_row(g.mask_row(source.masks, band.n, band.group, tap, row),
                  g.OW, dst[tap]);
      }
    }
  };
  Loader loader() const { return Loader{*this}; }
};

// Writes dK rows to the masks' gradient.
template <typename scalar_t>
struct StoredKernelGrads {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g;
  scalar_t* grad_masks;

  static constexpr int64_t kBandAlignment = 1;
  void start(const Banding&) {}
  void finish(const Banding&) {}

  struct Writer {
    const StoredKernelGrads& sink;
    void begin(int64_t, const Band&) {}
    void end(int64_t, const Band&) {}
    void store(const Band& band, int64_t row, const acc_t* const* taps) {
      const Geometry& g = sink.g;
      for (int64_t tap = 0; tap < g.kk; ++tap) {
        narrow_row(taps[tap], g.OW,
                   g.mask_row(sink.grad_masks, band.n, band.group, tap, row));
      }
    }
  };
  Writer writer() const { return Writer{*this}; }
};

void check_inputs(const at::Tensor& features, const at::Tensor& masks,
                  int64_t kernel_size, int64_t group_size,
                  int64_t scale_factor) {
  constexpr const char* op = "reassemble";
  const at::ScalarType dtype = features.scalar_type();
  check_tensor(op, "features", features, dtype);
  check_tensor(op, "masks", masks, dtype);
  check_kernel_args(op, kernel_size, group_size, scale_factor);
  check_shape(op, "masks", masks,
              {features.size(0), group_size * kernel_size * kernel_size,
               scale_factor * features.size(2),
               scale_factor * features.size(3)},
              "(N, G*k*k, sH, sW)");
}

}  // namespace

at::Tensor reassemble_forward(const at::Tensor& features_in,
                              const at::Tensor& masks_in, int64_t kernel_size,
                              int64_t group_size, int64_t scale_factor) {
  check_inputs(features_in, masks_in, kernel_size, group_size, scale_factor);
  const at::Tensor features = features_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const Geometry g(features, kernel_size, group_size, scale_factor);
  at::Tensor output =
      empty_output({g.N, g.C, g.OH, g.OW}, features.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features.scalar_type(), "reassemble_forward",
      [&] {
        const StoredKernels<scalar_t> source{g,
                                             masks.const_data_ptr<scalar_t>()};
        forward_kernel<scalar_t>(g, features.const_data_ptr<scalar_t>(),
                                 source, output.mutable_data_ptr<scalar_t>());
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor> reassemble_backward(
    const at::Tensor& grad_output_in, const at::Tensor& features_in,
    const at::Tensor& masks_in, int64_t kernel_size, int64_t group_size,
    int64_t scale_factor, bool needs_features_grad, bool needs_masks_grad) {
  check_inputs(features_in, masks_in, kernel_size, group_size, scale_factor);
  check_tensor("reassemble", "grad_output", grad_output_in,
               features_in.scalar_type());
  const at::Tensor features = features_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const Geometry g(features, kernel_size, group_size, scale_factor);
  check_shape("reassemble", "grad_output", grad_output_in,
              {g.N, g.C, g.OH, g.OW}, "(N, C, sH, sW)");
  const at::Tensor grad_output = grad_output_in.contiguous();

  at::Tensor grad_features, grad_masks;
  if (needs_features_grad) {
    grad_features = empty_output(features.sizes(), features.options());
  }
  if (needs_masks_grad) {
    grad_masks = empty_output(masks.sizes(), masks.options());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features.scalar_type(), "reassemble_backward",
      [&] {
        if (needs_features_grad) {
          const StoredKernels<scalar_t> source{
              g, masks.const_data_ptr<scalar_t>()};
          features_grad_kernel<scalar_t>(
              g, grad_output.const_data_ptr<scalar_t>(), source,
              grad_features.mutable_data_ptr<scalar_t>());
        }
        if (needs_masks_grad) {
          StoredKernelGrads<scalar_t> sink{
              g, grad_masks.mutable_data_ptr<scalar_t>()};
          kernels_grad_kernel<scalar_t>(
              g, grad_output.const_data_ptr<scalar_t>(),
              features.const_data_ptr<scalar_t>(), sink);
        }
      });
  return {grad_features, grad_masks};
}

}  // namespace dlu_mm
