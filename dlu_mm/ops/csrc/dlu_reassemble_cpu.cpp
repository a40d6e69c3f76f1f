/*
 * DLU's kernel space expander fused into the reassembly (CPU, OpenMP): the
 * kernel of every output pixel is sampled from the kernel space when a band
 * of the reassembly needs it, and never written to memory.
 *
 * Inputs: features X (N, C, H, W); kernel space S (N, G*k*k, H, W),
 * normalised; offsets O (N, G*2*s*s, H, W). For output pixel (i, j) =
 * (y*s + a, x*s + b) of group g (pixel shuffle of O by s):
 *
 *   ox = O[n, 2g*s*s + a*s + b, y, x],  oy = O[n, (2g+1)*s*s + a*s + b, y, x]
 *   (py, px) = (y + oy, x + ox), each clamped to [0, H-1] / [0, W-1]
 *   K[t](i, j) = sum over the corners (y0|y1, x0|x1) of the bilinear
 *                weights times S[n, g*k*k + t, corner]
 *
 * and the output is the reassembly of reassembly.h with these kernels.
 * This is grid_sample(align_corners=True, padding_mode='border') at those
 * points, in pixel units: a coordinate on or beyond the border has zero
 * gradient, and at an interior integer coordinate the derivative is the
 * one towards the next pixel (x0 = floor(x), wx = x - x0 = 0).
 *
 * Backward, with dK the gradient of the kernels (computed per band by
 * kernels_grad_kernel, never stored whole):
 *   dO_x(i, j) = [px inside] * sum_t dK[t] * ((1-wy)(S01-S00) + wy(S11-S10))
 *   dO_y(i, j) = [py inside] * sum_t dK[t] * ((1-wx)(S10-S00) + wx(S11-S01))
 *   dS[t, corner] += weight(corner) * dK[t](i, j)  over all (i, j)
 * dO is per output pixel, written by the band that owns it. dS is a
 * scatter (a pixel may sample anywhere): the output pixels of every block
 * of a few input rows (SampledKernelGrads::kBandAlignment) add into a
 * partial sum of their own, covering just the kernel-space rows they
 * sample, in row order; then every row of dS is the sum of the partials
 * that cover it, in block order. Both run with the taps innermost (the
 * kernel space and each row's dK transposed to [cell][tap]), so a pixel's
 * four corners are read and its four scatters written as whole vectors.
 * The blocks do not depend on the thread count (the bands, sized and split
 * for it, are made of whole blocks), so neither does the result, and
 * nothing is added atomically.
 *
 * The forward pass and the features gradient sample each output row's
 * kernels for all the taps they need at once (SampledKernels::load_row);
 * with AVX-512 in float32 from the same tap-minor kernel space, four
 * contiguous corner loads a pixel and a 16 x 16 transposition into tap
 * rows (simd.h, avx512_sample_taps), elsewhere one gathered row per tap.
 * Every pass first locates its rows' sampling points (SamplingRows), with
 * AVX-512 in float32 16 pixels at a time (avx512_locate_row).
 */
#include <limits>
#include <memory>

#include "ops.h"
#include "reassembly.h"

namespace dlu_mm {
namespace {

// The x offsets of output row `row` of image n, group `group`, in an
// (N, G*2*s*s, H, W) tensor: O[n, 2g*s*s + a*s + b, y, x] for the output
// pixels (y*s + a, x*s + b) is at [b*H*W + x] (the pixel shuffle undone);
// the y offsets are s*s*H*W further.
template <typename T>
T* x_offsets_of_row(const Geometry& g, T* offsets, int64_t n, int64_t group,
                    int64_t row) {
  const int64_t ss = g.s * g.s;
  return offsets +
         ((n * g.G + group) * 2 * ss + row % g.s * g.s) * g.H * g.W +
         row / g.s * g.W;
}

// Clamps a sampling coordinate to [0, size - 1]; `gate` is the derivative
// of the clamp (0 on and beyond the border, as in grid_sample).
template <typename acc_t>
inline void clamp_coordinate(acc_t p, int64_t size, acc_t& c, acc_t& gate) {
  const acc_t hi = static_cast<acc_t>(size - 1);
  if (p > acc_t(0) && p < hi) {
    c = p;
    gate = acc_t(1);
  } else {
    c = p > acc_t(0) ? hi : acc_t(0);
    gate = acc_t(0);
  }
}

// The sampling points of a range of output rows of one (image, group), in
// per-thread storage: for row i and pixel j, the four corner indices and
// weights, the fractions wx / wy and the clamp gates.
template <typename scalar_t>
class SamplingRows {
 public:
  using acc_t = at::opmath_type<scalar_t>;

  explicit SamplingRows(const Geometry& g)
      : g_(g), locate_(std::is_same_v<scalar_t, acc_t> &&
                               g.s * g.H * g.W <=
                                   std::numeric_limits<int32_t>::max()
                           ? sampling_kernels<scalar_t>().locate_row
                           : nullptr) {
    if (locate_ == nullptr) return;
    // Pixel j = x*s + b of an output row reads its offsets at b*H*W + x
    // of the row's x-offset pointer (x_offsets_of_row).
    source_.resize(g.OW);
    column_.resize(g.OW);
    for (int64_t j = 0; j < g.OW; ++j) {
      source_[j] = static_cast<int32_t>(j % g.s * g.H * g.W + j / g.s);
      column_[j] = static_cast<acc_t>(j / g.s);
    }
  }

  void compute(const scalar_t* offsets, const Band& band, int64_t row_begin,
               int64_t row_end) {
    const Geometry& g = g_;
    const int64_t rows = row_end - row_begin;
    const int64_t hw = g.H * g.W, ss = g.s * g.s;
    first_row_ = row_begin;
    index_.resize(rows * 4 * g.OW);
    values_.resize(rows * kArrays * g.OW);
    int64_t corner_rows[2] = {std::numeric_limits<int64_t>::max(), -1};
    for (int64_t i = row_begin; i < row_end; ++i) {
      const int64_t y = i / g.s;
      const scalar_t* ox_rows =
          x_offsets_of_row(g, offsets, band.n, band.group, i);
      const scalar_t* oy_rows = ox_rows + ss * hw;
      int32_t* idx = index_.data() + (i - row_begin) * 4 * g.OW;
      acc_t* v = values_.data() + (i - row_begin) * kArrays * g.OW;
      const PointRow<acc_t> out{
          {idx, idx + g.OW, idx + 2 * g.OW, idx + 3 * g.OW},
          {v, v + g.OW, v + 2 * g.OW, v + 3 * g.OW},
          v + kFracX * g.OW,
          v + kFracY * g.OW,
          v + kGateX * g.OW,
          v + kGateY * g.OW};
      int64_t j = 0;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        if (locate_ != nullptr) {
          j = locate_(ox_rows, oy_rows, source_.data(), column_.data(),
                      static_cast<acc_t>(y), g.H, g.W, g.OW, out,
                      corner_rows);
        }
      }
      // The rest (all of it for other types), pixel j = x*s + b.
      for (int64_t x = j / g.s, b = j % g.s; j < g.OW; ++j) {
        acc_t cx, cy;
        clamp_coordinate(static_cast<acc_t>(x) +
                             static_cast<acc_t>(ox_rows[b * hw + x]),
                         g.W, cx, out.gate_x[j]);
        clamp_coordinate(static_cast<acc_t>(y) +
                             static_cast<acc_t>(oy_rows[b * hw + x]),
                         g.H, cy, out.gate_y[j]);
        const int64_t x0 = static_cast<int64_t>(cx);
        const int64_t y0 = static_cast<int64_t>(cy);
        const int64_t x1 = std::min(x0 + 1, g.W - 1);
        const int64_t y1 = std::min(y0 + 1, g.H - 1);
        const acc_t wx = cx - static_cast<acc_t>(x0);
        const acc_t wy = cy - static_cast<acc_t>(y0);
        out.index[0][j] = static_cast<int32_t>(y0 * g.W + x0);
        out.index[1][j] = static_cast<int32_t>(y0 * g.W + x1);
        out.index[2][j] = static_cast<int32_t>(y1 * g.W + x0);
        out.index[3][j] = static_cast<int32_t>(y1 * g.W + x1);
        out.weight[0][j] = (acc_t(1) - wy) * (acc_t(1) - wx);
        out.weight[1][j] = (acc_t(1) - wy) * wx;
        out.weight[2][j] = wy * (acc_t(1) - wx);
        out.weight[3][j] = wy * wx;
        out.wx[j] = wx;
        out.wy[j] = wy;
        corner_rows[0] = std::min(corner_rows[0], y0);
        corner_rows[1] = std::max(corner_rows[1], y1);
        if (++b == g.s) {
          b = 0;
          ++x;
        }
      }
    }
    min_corner_row_ = corner_rows[0];
    max_corner_row_ = corner_rows[1];
  }

  SamplePoints<acc_t> points(int64_t row) const {
    const int32_t* idx = index_.data() + (row - first_row_) * 4 * g_.OW;
    const acc_t* v = values_.data() + (row - first_row_) * kArrays * g_.OW;
    return {{idx, idx + g_.OW, idx + 2 * g_.OW, idx + 3 * g_.OW},
            {v, v + g_.OW, v + 2 * g_.OW, v + 3 * g_.OW},
            v + kFracX * g_.OW,
            v + kFracY * g_.OW};
  }
  const acc_t* gate_x(int64_t row) const { return array(row, kGateX); }
  const acc_t* gate_y(int64_t row) const { return array(row, kGateY); }
  // The kernel-space rows that the computed points touch: [min, max].
  int64_t min_corner_row() const { return min_corner_row_; }
  int64_t max_corner_row() const { return max_corner_row_; }

 private:
  // Per row: 4 weights, then these arrays of OW values.
  static constexpr int64_t kFracX = 4, kFracY = 5, kGateX = 6, kGateY = 7;
  static constexpr int64_t kArrays = 8;

  const acc_t* array(int64_t row, int64_t which) const {
    return values_.data() + ((row - first_row_) * kArrays + which) * g_.OW;
  }

  const Geometry& g_;
  // The vector kernel (float with AVX-512) and, for it, each pixel's offset
  // position within a row and its source column as a float.
  LocateRow<acc_t> locate_;
  std::vector<int32_t> source_;
  ScratchVector<acc_t> column_;
  int64_t first_row_ = 0;
  int64_t min_corner_row_ = 0, max_corner_row_ = -1;
  std::vector<int32_t> index_;
  ScratchVector<acc_t> values_;
};

// Kernel rows sampled from the kernel space at the offset points.
// `space_t`: the kernel space tap-minor (taps_innermost), for the
// instruction sets that sample all taps of a row at once (sample_taps);
// null otherwise.
template <typename scalar_t>
struct SampledKernels {
  using acc_t = at::opmath_type<scalar_t>;
  const Geometry& g;
  const scalar_t* space;
  const scalar_t* offsets;
  const acc_t* space_t;
  int64_t kkp;

  struct Loader {
    const SampledKernels& source;
    SamplingRows<scalar_t> rows;
    const SamplingKernels<scalar_t>& simd;

    void prepare(const Band& band, int64_t row_begin, int64_t row_end) {
      rows.compute(source.offsets, band, row_begin, row_end);
    }
    // dst[tap] (where not null) = tap `tap` of output row `row`'s kernels.
    void load_row(const Band& band, int64_t row, acc_t* const* dst) {
      const Geometry& g = source.g;
      const SamplePoints<acc_t> points = rows.points(row);
      if (source.space_t != nullptr) {
        simd.sample_taps(
            source.space_t +
                (band.n * g.G + band.group) * g.H * g.W * source.kkp,
            source.kkp, points, g.OW, g.kk, dst);
        return;
      }
      for (int64_t tap = 0; tap < g.kk; ++tap) {
        if (dst[tap] == nullptr) continue;
        simd.sample_row(g.space_plane(source.space, band.n, band.group, tap),
                        points, g.OW, dst[tap]);
      }
    }
  };
  Loader loader() const {
    return Loader{*this, SamplingRows<scalar_t>(g),
                  sampling_kernels<scalar_t>()};
  }
};

// The taps of a kernel-space cell (or of a pixel's kernel gradient) padded
// to whole vectors, for the tap-minor layouts of the backward pass.
template <typename acc_t>
int64_t padded_taps(int64_t kk) {
  constexpr int64_t lanes = 64 / sizeof(acc_t);  // the widest vector
  return (kk + lanes - 1) / lanes * lanes;
}

// The kernel space of every (image, group) tap-minor, in acc_t:
// [(n*G + group)*H*W + cell][t < kkp], zero past k*k. Written once per
// cell, padding included, into memory left uninitialised (zeroing it all
// first was a third of this transposition's time).
template <typename scalar_t>
ScratchArray<at::opmath_type<scalar_t>> taps_innermost(
    const Geometry& g, const scalar_t* space, int64_t kkp) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hw = g.H * g.W;
  ScratchArray<acc_t> out = uninitialised_scratch<acc_t>(g.N * g.G * hw * kkp);
  // In blocks of cells whose kkp-wide rows stay in L1 while every tap is
  // written into them (one tap at a time over all cells would stream the
  // whole tap-minor array through the caches k*k times).
  constexpr int64_t kCells = 64;
  const int64_t blocks = (hw + kCells - 1) / kCells;
  at::parallel_for(0, g.N * g.G * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t map = item / blocks;
      const int64_t first = item % blocks * kCells;
      const int64_t last = std::min(hw, first + kCells);
      acc_t* cells = out.get() + map * hw * kkp;
      for (int64_t t = 0; t < g.kk; ++t) {
        const scalar_t* src = space + (map * g.kk + t) * hw;
        for (int64_t cell = first; cell < last; ++cell) {
          cells[cell * kkp + t] = static_cast<acc_t>(src[cell]);
        }
      }
      for (int64_t cell = first; cell < last; ++cell) {
        std::fill(cells + cell * kkp + g.kk, cells + (cell + 1) * kkp,
                  acc_t(0));
      }
    }
  });
  return out;
}

// The kernel space tap-minor, made when the sampling gradients need it
// (`always`) or when this CPU's sample_taps() samples from it.
template <typename scalar_t>
struct SpaceTapMinor {
  using acc_t = at::opmath_type<scalar_t>;
  const bool sampling = sampling_kernels<scalar_t>().sample_taps != nullptr;
  int64_t kkp;
  ScratchArray<acc_t> values;

  SpaceTapMinor(const Geometry& g, const at::Tensor& space, bool always)
      : kkp(padded_taps<acc_t>(g.kk)) {
    if (always || sampling) {
      values = taps_innermost(g, space.const_data_ptr<scalar_t>(), kkp);
    }
  }
  const acc_t* for_sampling() const {
    return sampling ? values.get() : nullptr;
  }
};

// One band's share of the kernel space's gradient: kernel-space rows
// [first_row, first_row + rows), tap-minor ([row][column][t < kkp]).
template <typename acc_t>
struct PartialSum {
  int64_t first_row = 0, rows = 0;
  ScratchVector<acc_t> values;
};

// From dK: the offsets' gradient (per output pixel) and the kernel space's
// gradient (partial sums per block of rows, added up in block order in
// finish()).
template <typename scalar_t>
struct SampledKernelGrads {
  using acc_t = at::opmath_type<scalar_t>;
  // Input rows of output pixels per partial sum of the kernel space's
  // gradient (Banding's blocks: that many where a band's scratch holds
  // them, else fewer): few enough that bands of whole blocks can share the
  // rows out evenly among the threads (at H = 120, s=2: 30 blocks, 15 a
  // thread, where 15 bands of 8 rows, fixed for any thread count, gave one
  // of 2 threads 64 rows and the other 56; toggled in one process, this
  // pass 4.5% faster at s=2, the same at s=4), and many enough that the
  // partials' rows are not much more than the 8-row bands' were (a partial
  // covers its block's rows plus the offsets' reach).
  static constexpr int64_t kBandAlignment = 4;

  const Geometry& g;
  const scalar_t* offsets;
  const acc_t* space_t;  // taps_innermost() of the kernel space
  int64_t kkp;
  scalar_t* grad_space;
  scalar_t* grad_offsets;
  int64_t sum_rows = 1;        // input rows per block
  int64_t blocks_per_map = 0;  // blocks per (image, group)
  std::vector<PartialSum<acc_t>> partials;  // per (image, group, block)

  void start(const Banding& bands) {
    sum_rows = bands.align();
    blocks_per_map = bands.blocks();
    partials.resize(g.N * g.G * blocks_per_map);
  }

  struct Writer {
    SampledKernelGrads& sink;
    SamplingRows<scalar_t> rows;
    const SimdKernels<acc_t>& simd;
    const TransposeTaps<acc_t> transpose;
    ScratchVector<acc_t> grad_x, grad_y;  // one output row
    ScratchVector<acc_t> dk;              // one output row's dK, tap-minor
    int64_t block = -1;                 // the block of `partial`, if any
    PartialSum<acc_t> partial;

    void begin(int64_t, const Band&) {
      const Geometry& g = sink.g;
      grad_x.resize(g.OW);
      grad_y.resize(g.OW);
      dk.assign(g.OW * sink.kkp, acc_t(0));
    }

    // Hands the open block's partial sum to the sink.
    void close(const Band& band) {
      if (block < 0) return;
      const int64_t map = band.n * sink.g.G + band.group;
      sink.partials[map * sink.blocks_per_map + block] = std::move(partial);
      partial = PartialSum<acc_t>();
      block = -1;
    }

    // Starts block b of the band's map: its sampling points and a zero
    // partial sum over the kernel-space rows they touch.
    void open(const Band& band, int64_t b) {
      const Geometry& g = sink.g;
      const int64_t y0 = b * sink.sum_rows;
      const int64_t y1 = std::min(g.H, y0 + sink.sum_rows);
      rows.compute(sink.offsets, band, y0 * g.s, y1 * g.s);
      partial.first_row = rows.min_corner_row();
      partial.rows = rows.max_corner_row() - rows.min_corner_row() + 1;
      partial.values.assign(partial.rows * g.W * sink.kkp, acc_t(0));
      block = b;
    }

    // Output row `row` (the band's rows arrive in order): its dK rows.
    void store(const Band& band, int64_t row, const acc_t* const* taps) {
      const Geometry& g = sink.g;
      const int64_t kkp = sink.kkp;
      if (row / g.s / sink.sum_rows != block) {
        close(band);
        open(band, row / g.s / sink.sum_rows);
      }
      transpose(taps, g.kk, g.OW, kkp, dk.data());
      const SamplePoints<acc_t> p = rows.points(row);
      simd.sampling_grads(
          {dk.data(),
           sink.space_t + (band.n * g.G + band.group) * g.H * g.W * kkp, &p,
           g.OW, kkp, partial.first_row * g.W, partial.values.data(),
           grad_x.data(), grad_y.data()});
      // dO, un-shuffled: pixel (y*s + a, x*s + b) -> O[.., a*s + b, y, x].
      const int64_t hw = g.H * g.W;
      scalar_t* gox =
          x_offsets_of_row(g, sink.grad_offsets, band.n, band.group, row);
      scalar_t* goy = gox + g.s * g.s * hw;
      const acc_t* gate_x = rows.gate_x(row);
      const acc_t* gate_y = rows.gate_y(row);
      for (int64_t x = 0; x < g.W; ++x) {
        for (int64_t b = 0; b < g.s; ++b) {
          const int64_t j = x * g.s + b;
          gox[b * hw + x] = static_cast<scalar_t>(grad_x[j] * gate_x[j]);
          goy[b * hw + x] = static_cast<scalar_t>(grad_y[j] * gate_y[j]);
        }
      }
    }

    void end(int64_t, const Band& band) { close(band); }
  };
  Writer writer() {
    return Writer{*this,
                  SamplingRows<scalar_t>(g),
                  simd_kernels<acc_t>(),
                  sampling_kernels<scalar_t>().transpose_taps,
                  {}, {}, {}, -1, {}};
  }

  // dS[n, g*k*k + t, row] = sum of the partials of (n, g) that cover the
  // row, in block order.
  void finish(const Banding&) {
    const int64_t H = g.H, W = g.W;
    at::parallel_for(0, g.N * g.G * H, 1, [&](int64_t begin, int64_t end) {
      ScratchVector<acc_t> sum(W * kkp);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t n = item / (g.G * H), group = (item / H) % g.G;
        const int64_t row = item % H;
        const int64_t first = (n * g.G + group) * blocks_per_map;
        std::fill(sum.begin(), sum.end(), acc_t(0));
        for (int64_t b = first; b < first + blocks_per_map; ++b) {
          const PartialSum<acc_t>& part = partials[b];
          if (row < part.first_row || row >= part.first_row + part.rows) {
            continue;
          }
          const acc_t* src =
              part.values.data() + (row - part.first_row) * W * kkp;
          for (int64_t i = 0; i < W * kkp; ++i) sum[i] += src[i];
        }
        for (int64_t t = 0; t < g.kk; ++t) {
          scalar_t* dst = g.space_plane(grad_space, n, group, t) + row * W;
          for (int64_t x = 0; x < W; ++x) {
            dst[x] = static_cast<scalar_t>(sum[x * kkp + t]);
          }
        }
      }
    });
  }
};

void check_inputs(const at::Tensor& features, const at::Tensor& kernel_space,
                  const at::Tensor& offsets, int64_t kernel_size,
                  int64_t group_size, int64_t scale_factor) {
  constexpr const char* op = "dlu_reassemble";
  const at::ScalarType dtype = features.scalar_type();
  check_tensor(op, "features", features, dtype);
  check_tensor(op, "kernel_space", kernel_space, dtype);
  check_tensor(op, "offsets", offsets, dtype);
  check_kernel_args(op, kernel_size, group_size, scale_factor);
  const int64_t n = features.size(0), h = features.size(2),
                w = features.size(3);
  check_shape(op, "kernel_space", kernel_space,
              {n, group_size * kernel_size * kernel_size, h, w},
              "(N, G*k*k, H, W)");
  check_shape(op, "offsets", offsets,
              {n, group_size * 2 * scale_factor * scale_factor, h, w},
              "(N, G*2*s*s, H, W)");
  TORCH_CHECK(h * w <= std::numeric_limits<int32_t>::max(),
              "dlu_mm._ext ", op, ": H*W must fit in 32 bits, got ", h, "x",
              w);
}

}  // namespace

at::Tensor dlu_reassemble_forward(const at::Tensor& features_in,
                                  const at::Tensor& kernel_space_in,
                                  const at::Tensor& offsets_in,
                                  int64_t kernel_size, int64_t group_size,
                                  int64_t scale_factor) {
  check_inputs(features_in, kernel_space_in, offsets_in, kernel_size,
               group_size, scale_factor);
  const at::Tensor features = features_in.contiguous();
  const at::Tensor space = kernel_space_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const Geometry g(features, kernel_size, group_size, scale_factor);
  at::Tensor output =
      empty_output({g.N, g.C, g.OH, g.OW}, features.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features.scalar_type(),
      "dlu_reassemble_forward", [&] {
        const SpaceTapMinor<scalar_t> space_t(g, space, false);
        const SampledKernels<scalar_t> source{
            g, space.const_data_ptr<scalar_t>(),
            offsets.const_data_ptr<scalar_t>(), space_t.for_sampling(),
            space_t.kkp};
        forward_kernel<scalar_t>(g, features.const_data_ptr<scalar_t>(),
                                 source, output.mutable_data_ptr<scalar_t>());
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dlu_reassemble_backward(
    const at::Tensor& grad_output_in, const at::Tensor& features_in,
    const at::Tensor& kernel_space_in, const at::Tensor& offsets_in,
    int64_t kernel_size, int64_t group_size, int64_t scale_factor,
    bool needs_features_grad, bool needs_sampling_grads) {
  check_inputs(features_in, kernel_space_in, offsets_in, kernel_size,
               group_size, scale_factor);
  check_tensor("dlu_reassemble", "grad_output", grad_output_in,
               features_in.scalar_type());
  const at::Tensor features = features_in.contiguous();
  const at::Tensor space = kernel_space_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const Geometry g(features, kernel_size, group_size, scale_factor);
  check_shape("dlu_reassemble", "grad_output", grad_output_in,
              {g.N, g.C, g.OH, g.OW}, "(N, C, sH, sW)");
  const at::Tensor grad_output = grad_output_in.contiguous();

  at::Tensor grad_features, grad_space, grad_offsets;
  if (needs_features_grad) {
    grad_features = empty_output(features.sizes(), features.options());
  }
  if (needs_sampling_grads) {
    grad_space = at::empty(space.sizes(), space.options());
    grad_offsets = at::empty(offsets.sizes(), offsets.options());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, features.scalar_type(),
      "dlu_reassemble_backward", [&] {
        const SpaceTapMinor<scalar_t> space_t(g, space, needs_sampling_grads);
        if (needs_features_grad) {
          const SampledKernels<scalar_t> source{
              g, space.const_data_ptr<scalar_t>(),
              offsets.const_data_ptr<scalar_t>(), space_t.for_sampling(),
              space_t.kkp};
          features_grad_kernel<scalar_t>(
              g, grad_output.const_data_ptr<scalar_t>(), source,
              grad_features.mutable_data_ptr<scalar_t>());
        }
        if (needs_sampling_grads) {
          SampledKernelGrads<scalar_t> sink{
              g,
              offsets.const_data_ptr<scalar_t>(),
              space_t.values.get(),
              space_t.kkp,
              grad_space.mutable_data_ptr<scalar_t>(),
              grad_offsets.mutable_data_ptr<scalar_t>(),
              {}};
          kernels_grad_kernel<scalar_t>(
              g, grad_output.const_data_ptr<scalar_t>(),
              features.const_data_ptr<scalar_t>(), sink);
        }
      });
  return {grad_features, grad_space, grad_offsets};
}

}  // namespace dlu_mm
