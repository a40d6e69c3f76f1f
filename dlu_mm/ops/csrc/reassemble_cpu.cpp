/*
 * CPU kernels (C++ / OpenMP) of the CARAFE-style reassembly, built as
 * dlu_mm._ext. Same semantics as mmcv.ops.carafe and as the plain-PyTorch
 * reference dlu_mm/ops/reassemble_torch.py.
 *
 * Notation: features X (N, C, H, W); reassembly kernels ("masks") K
 * (N, G*k*k, sH, sW); output Y (N, C, sH, sW); s = scale factor,
 * r = (k - 1) / 2, Cg = C / G, channel c belongs to group g = c / Cg,
 * tap = dy*k + dx, and X is 0 outside [0, H) x [0, W).
 *
 *   Y[n,c,i,j]  = sum_{dy,dx<k} K[n,g*k*k+tap,i,j] * X[n,c,i/s+dy-r,j/s+dx-r]
 *   dX[n,c,y,x] = sum over (i, j, dy, dx) with i/s+dy-r == y, j/s+dx-r == x
 *                 of dY[n,c,i,j] * K[n,g*k*k+tap,i,j]
 *   dK[n,g*k*k+tap,i,j]
 *               = sum_{c in group g} dY[n,c,i,j] * X[n,c,i/s+dy-r,j/s+dx-r]
 *
 * How the work is laid out:
 *   * A feature row is widened once into an "upsampled row"
 *     U[t] = X[row][t/s - r], t < s*(W+k-1) (zeros outside the map), so that
 *     X[i/s+dy-r][j/s+dx-r] = U_dy[j + s*dx]: every tap reads U contiguously.
 *   * All three directions then reduce to one primitive, sum_products(): for
 *     small blocks of output rows p < P, q < Q,
 *         out[p][q][j] (+)= sum_t lhs[p][t][j] * rhs[q][t][j]
 *     over lists of row pointers. Each loaded row feeds P or Q products, the
 *     sums stay in SIMD registers, and the primitive is compiled for AVX-512,
 *     AVX2+FMA and the baseline ISA, chosen at run time.
 *       forward: p = output row i of a block row, q = channel;
 *                t = (dy, dx), lhs = K rows, rhs = shifted U rows.
 *       dX:      a gather: for input row y and channel q,
 *                  E[t'] = sum_{dy,a,dx} K[tap, row][t' - s*dx]
 *                                        * dY[q, row][t' - s*dx]
 *                with row = (y+r-dy)*s + a; then
 *                  dX[q, y, x] = sum_{b<s} E[(x+r)*s + b].
 *       dK:      p = output row, q = dx; t = channel (of a block of channels).
 *   * Work units are bands of a few input rows of one group of one image,
 *     spread over threads with at::parallel_for; the rows of a band share the
 *     feature / gradient rows loaded for it. Every output element is written
 *     by exactly one unit, and the order of its additions does not depend on
 *     the banding or the thread count: no atomics, deterministic results.
 * Scratch memory is per thread and about a band's worth of kernel rows
 * (kept under ~512 KiB); no tensor k*k times larger than the input or the
 * output is ever allocated. Half types (float16, bfloat16) are widened to
 * float when read, accumulated in float and rounded once when stored;
 * float64 accumulates in double.
 */
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

// ---------------------------------------------------------------------------
// SIMD primitives, written with GNU vector extensions.

// For p < P, q < Q and j < n:
//   out[p*Q + q][j] (+)= sum_{t < terms} lhs[p*lhs_stride + t][j]
//                                        * rhs[q*rhs_stride + t][j]
// ("+=" when accumulate). P <= kMaxLhsRows, Q <= kMaxRhsRows.
template <typename acc_t>
struct RowProducts {
  const acc_t* const* lhs;
  int64_t lhs_stride;
  const acc_t* const* rhs;
  int64_t rhs_stride;
  acc_t* const* out;
  int64_t P, Q, terms, n;
  bool accumulate;
};

constexpr int64_t kMaxLhsRows = 2;
constexpr int64_t kMaxRhsRows = 5;

template <typename acc_t, int kBytes>
struct Vec {
  typedef acc_t type __attribute__((vector_size(kBytes)));
};

// Columns [j0, j0 + V * lanes) of a P x Q block, summed in registers. The
// small loops are unrolled explicitly so that the arrays live in registers
// (GCC otherwise keeps them on the stack in the AVX2 build).
template <typename acc_t, int kBytes, int P, int Q, int V>
inline __attribute__((always_inline)) void products_chunk(
    const RowProducts<acc_t>& rp, int64_t j0) {
  using vec = typename Vec<acc_t, kBytes>::type;
  constexpr int lanes = kBytes / sizeof(acc_t);
  vec acc[P][Q][V] = {};
  for (int64_t t = 0; t < rp.terms; ++t) {
    vec right[Q][V];
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      const acc_t* row = rp.rhs[q * rp.rhs_stride + t] + j0;
      #pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        __builtin_memcpy(&right[q][v], row + v * lanes, kBytes);
      }
    }
    #pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const acc_t* row = rp.lhs[p * rp.lhs_stride + t] + j0;
      #pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        vec left;
        __builtin_memcpy(&left, row + v * lanes, kBytes);
        #pragma GCC unroll 8
        for (int q = 0; q < Q; ++q) acc[p][q][v] += left * right[q][v];
      }
    }
  }
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      #pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        acc_t* dst = rp.out[p * Q + q] + j0 + v * lanes;
        if (rp.accumulate) {
          vec old;
          __builtin_memcpy(&old, dst, kBytes);
          acc[p][q][v] += old;
        }
        __builtin_memcpy(dst, &acc[p][q][v], kBytes);
      }
    }
  }
}

// One column j of a P x Q block.
template <typename acc_t, int P, int Q>
inline __attribute__((always_inline)) void products_column(
    const RowProducts<acc_t>& rp, int64_t j) {
  acc_t acc[P][Q] = {};
  for (int64_t t = 0; t < rp.terms; ++t) {
    #pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const acc_t left = rp.lhs[p * rp.lhs_stride + t][j];
      #pragma GCC unroll 8
      for (int q = 0; q < Q; ++q) {
        acc[p][q] += left * rp.rhs[q * rp.rhs_stride + t][j];
      }
    }
  }
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      acc_t* dst = rp.out[p * Q + q] + j;
      *dst = rp.accumulate ? *dst + acc[p][q] : acc[p][q];
    }
  }
}

template <typename acc_t, int kBytes, int P, int Q>
inline __attribute__((always_inline)) void products_block(
    const RowProducts<acc_t>& rp) {
  constexpr int lanes = kBytes / sizeof(acc_t);
  // Registers (32 with AVX-512, else 16, a few kept free) for the P*Q*V sums
  // and the Q*V rhs vectors of a term.
  constexpr int registers = kBytes == 64 ? 28 : 14;
  constexpr int V = std::clamp(registers / (Q * (P + 1)), 1, 4);
  int64_t j0 = 0;
  for (; j0 + V * lanes <= rp.n; j0 += V * lanes) {
    products_chunk<acc_t, kBytes, P, Q, V>(rp, j0);
  }
  for (; j0 + lanes <= rp.n; j0 += lanes) {
    products_chunk<acc_t, kBytes, P, Q, 1>(rp, j0);
  }
  if (j0 < rp.n && rp.n >= lanes && !rp.accumulate) {
    // Recompute the last full vector: the overlapping columns get the same
    // values from the same operations, so this is exact.
    products_chunk<acc_t, kBytes, P, Q, 1>(rp, rp.n - lanes);
    return;
  }
  for (; j0 < rp.n; ++j0) products_column<acc_t, P, Q>(rp, j0);
}

template <typename acc_t, int kBytes, int P>
inline __attribute__((always_inline)) void products_lhs_rows(
    const RowProducts<acc_t>& rp) {
  static_assert(kMaxRhsRows == 5, "update the cases below");
  switch (rp.Q) {
    case 1: return products_block<acc_t, kBytes, P, 1>(rp);
    case 2: return products_block<acc_t, kBytes, P, 2>(rp);
    case 3: return products_block<acc_t, kBytes, P, 3>(rp);
    case 4: return products_block<acc_t, kBytes, P, 4>(rp);
    case 5: return products_block<acc_t, kBytes, P, 5>(rp);
  }
  TORCH_CHECK(false, "dlu_mm._ext: unsupported product block Q=", rp.Q);
}

template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void products_any(
    const RowProducts<acc_t>& rp) {
  static_assert(kMaxLhsRows == 2, "update the cases below");
  switch (rp.P) {
    case 1: return products_lhs_rows<acc_t, kBytes, 1>(rp);
    case 2: return products_lhs_rows<acc_t, kBytes, 2>(rp);
  }
  TORCH_CHECK(false, "dlu_mm._ext: unsupported product block P=", rp.P);
}

// Nearest upsampling of a row with zero borders: u[t] = x[(t - border)/s]
// for t < border + s*W + border, 0 where the source column is outside the row.
template <typename acc_t>
inline __attribute__((always_inline)) void upsample_row_impl(
    const acc_t* __restrict x, int64_t W, int64_t s, int64_t border,
    acc_t* __restrict u) {
  std::fill(u, u + border, acc_t(0));
  acc_t* dst = u + border;
  if (s == 1) {
    std::copy(x, x + W, dst);
  } else if (s == 2) {  // the common case, vectorised as a lane permutation
    for (int64_t col = 0; col < W; ++col) {
      dst[2 * col] = x[col];
      dst[2 * col + 1] = x[col];
    }
  } else {
    for (int64_t col = 0; col < W; ++col) {
      for (int64_t b = 0; b < s; ++b) dst[col * s + b] = x[col];
    }
  }
  std::fill(dst + s * W, dst + s * W + border, acc_t(0));
}

// Sums of s neighbours: dst[x] = sum_{b < s} src[x*s + b], x < W.
template <typename acc_t>
inline __attribute__((always_inline)) void downsample_row_impl(
    const acc_t* __restrict src, int64_t W, int64_t s, acc_t* __restrict dst) {
  if (s == 1) {
    std::copy(src, src + W, dst);
  } else if (s == 2) {
    for (int64_t x = 0; x < W; ++x) dst[x] = src[2 * x] + src[2 * x + 1];
  } else {
    for (int64_t x = 0; x < W; ++x) {
      acc_t sum = src[x * s];
      for (int64_t b = 1; b < s; ++b) sum += src[x * s + b];
      dst[x] = sum;
    }
  }
}

// The primitives for one instruction set.
template <typename acc_t>
struct SimdKernels {
  void (*sum_products)(const RowProducts<acc_t>&);
  void (*upsample_row)(const acc_t* x, int64_t W, int64_t s, int64_t border,
                       acc_t* u);
  void (*downsample_row)(const acc_t* src, int64_t W, int64_t s, acc_t* dst);
};

#define DLU_DEFINE_SIMD_KERNELS(name, attributes, bytes)                    \
  template <typename acc_t>                                                 \
  attributes void name##_sum_products(const RowProducts<acc_t>& rp) {       \
    products_any<acc_t, bytes>(rp);                                         \
  }                                                                         \
  template <typename acc_t>                                                 \
  attributes void name##_upsample_row(const acc_t* x, int64_t W, int64_t s, \
                                      int64_t border, acc_t* u) {           \
    upsample_row_impl<acc_t>(x, W, s, border, u);                           \
  }                                                                         \
  template <typename acc_t>                                                 \
  attributes void name##_downsample_row(const acc_t* src, int64_t W,        \
                                        int64_t s, acc_t* dst) {            \
    downsample_row_impl<acc_t>(src, W, s, dst);                             \
  }                                                                         \
  template <typename acc_t>                                                 \
  constexpr SimdKernels<acc_t> name##_kernels() {                           \
    return {&name##_sum_products<acc_t>, &name##_upsample_row<acc_t>,       \
            &name##_downsample_row<acc_t>};                                 \
  }

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DLU_X86_DISPATCH 1
DLU_DEFINE_SIMD_KERNELS(avx512, __attribute__((target("arch=x86-64-v4"))), 64)
DLU_DEFINE_SIMD_KERNELS(avx2, __attribute__((target("arch=x86-64-v3"))), 32)
#endif
DLU_DEFINE_SIMD_KERNELS(baseline, , 16)

// The widest instruction set this CPU runs, chosen once.
template <typename acc_t>
const SimdKernels<acc_t>& simd_kernels() {
  static const SimdKernels<acc_t> kernels = [] {
#ifdef DLU_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return avx512_kernels<acc_t>();
    if (__builtin_cpu_supports("x86-64-v3")) return avx2_kernels<acc_t>();
#endif
    return baseline_kernels<acc_t>();
  }();
  return kernels;
}

// ---------------------------------------------------------------------------
// Geometry, work units and row helpers.

struct Geometry {
  int64_t N, C, H, W;  // features
  int64_t k, G, s;     // kernel size, groups, scale factor
  int64_t r, kk, Cg;   // (k - 1) / 2, k * k, C / G
  int64_t OH, OW;      // output size s*H, s*W
  int64_t span;        // s * (W + k - 1): length of an upsampled feature row

  Geometry(const at::Tensor& features, int64_t kernel_size, int64_t groups,
           int64_t scale)
      : N(features.size(0)), C(features.size(1)), H(features.size(2)),
        W(features.size(3)), k(kernel_size), G(groups), s(scale),
        r((kernel_size - 1) / 2), kk(kernel_size * kernel_size),
        Cg(features.size(1) / groups), OH(scale * features.size(2)),
        OW(scale * features.size(3)),
        span(scale * (features.size(3) + kernel_size - 1)) {}

  // Row y of channel c of image n of an (N, C, H, W) tensor.
  template <typename T>
  T* feature_row(T* base, int64_t n, int64_t c, int64_t y) const {
    return base + ((n * C + c) * H + y) * W;
  }
  // Row i of channel c of image n of an (N, C, sH, sW) tensor.
  template <typename T>
  T* output_row(T* base, int64_t n, int64_t c, int64_t i) const {
    return base + ((n * C + c) * OH + i) * OW;
  }
  // Row i of kernel tap `tap` of group `group` of image n of the masks.
  template <typename T>
  T* mask_row(T* base, int64_t n, int64_t group, int64_t tap,
              int64_t i) const {
    return base + (((n * G + group) * kk + tap) * OH + i) * OW;
  }
};

// A work unit: input rows [y0, y1) of one group of one image.
struct Band {
  int64_t n, group, y0, y1;
};

class Banding {
 public:
  // `row_bytes`: the scratch each band row needs (its kernel rows). Bands
  // are at most kMaxRows rows, small enough for about kUnitsPerThread units
  // per thread (load balance) and for their scratch to stay in L2.
  Banding(const Geometry& g, int64_t row_bytes) : g_(g) {
    constexpr int64_t kMaxRows = 8;
    constexpr int64_t kScratchBytes = 512 * 1024;
    constexpr int64_t kUnitsPerThread = 8;
    const int64_t balanced =
        g.N * g.G * g.H / (kUnitsPerThread * at::get_num_threads());
    const int64_t fitting = kScratchBytes / std::max<int64_t>(1, row_bytes);
    rows = std::clamp<int64_t>(std::min(balanced, fitting), 1, kMaxRows);
    per_map_ = (g.H + rows - 1) / rows;
    count = g.N * g.G * per_map_;
  }

  Band operator[](int64_t unit) const {
    const int64_t y0 = (unit % per_map_) * rows;
    return {unit / (g_.G * per_map_), (unit / per_map_) % g_.G, y0,
            std::min(g_.H, y0 + rows)};
  }

  int64_t rows;   // input rows per band (the last one may have fewer)
  int64_t count;  // number of bands

 private:
  const Geometry& g_;
  int64_t per_map_;
};

// The dy taps whose row index stays inside the map: [lo, hi).
struct TapRange {
  int64_t lo, hi;
};

// Forward / dK: output row block y reads input rows y + dy - r.
TapRange taps_reading_from(const Geometry& g, int64_t y) {
  return {std::max<int64_t>(0, g.r - y), std::min(g.k, g.H + g.r - y)};
}

// dX: input row y is read by output row blocks y + r - dy.
TapRange taps_reaching(const Geometry& g, int64_t y) {
  return {std::max<int64_t>(0, y + g.r - g.H + 1), std::min(g.k, y + g.r + 1)};
}

template <typename scalar_t, typename acc_t>
void widen_row(const scalar_t* src, int64_t n, acc_t* dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<acc_t>(src[j]);
}

template <typename acc_t, typename scalar_t>
void narrow_row(const acc_t* src, int64_t n, scalar_t* dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<scalar_t>(src[j]);
}

// Loads the input rows [y0 - r, y1 + r) of channel c that lie inside the map
// as upsampled rows U[t] = X[row][t/s - r] (t < span, zero outside the map),
// so that X[row][j/s + dx - r] == U[j + s*dx]. Row y0 - r + m goes to
// rows + m*span; `widened` holds W elements for half-precision inputs.
template <typename scalar_t, typename acc_t>
void load_feature_rows(const Geometry& g, const scalar_t* features,
                       const Band& band, int64_t c, acc_t* widened,
                       acc_t* rows) {
  const int64_t first = band.y0 - g.r;
  for (int64_t y = std::max<int64_t>(0, first);
       y < std::min(g.H, band.y1 + g.r); ++y) {
    const scalar_t* src = g.feature_row(features, band.n, c, y);
    const acc_t* x;
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      x = src;
    } else {
      widen_row(src, g.W, widened);
      x = widened;
    }
    simd_kernels<acc_t>().upsample_row(x, g.W, g.s, g.s * g.r,
                                       rows + (y - first) * g.span);
  }
}

// Channels per sum_products() call in the forward pass and in dX (Q).
constexpr int64_t kChannelTile = 4;
// Channels summed per sum_products() call in dK (its terms).
constexpr int64_t kChannelBlock = 16;

// ---------------------------------------------------------------------------
// Forward.

template <typename scalar_t>
void forward_kernel(const Geometry& g, const scalar_t* features,
                    const scalar_t* masks, scalar_t* output) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  const Banding bands(g, g.s * g.kk * g.OW * sizeof(acc_t));
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // input rows read by a band
  const int64_t tile = std::min(kChannelTile, g.Cg);
  const auto sum_products = simd_kernels<acc_t>().sum_products;
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // Kernel rows [y - y0][a][tap]; upsampled feature rows
    // [channel][window row]; term lists: kernel rows [y - y0][a][term] and
    // shifted feature rows [y - y0][channel][term], term = (dy - lo)*k + dx.
    std::vector<acc_t> kernel_rows(B * g.s * g.kk * g.OW);
    std::vector<acc_t> feature_rows(tile * window * g.span);
    std::vector<acc_t> widened_rows(
        widened ? std::max(g.W, kMaxLhsRows * tile * g.OW) : 0);
    std::vector<const acc_t*> kernel_terms(B * g.s * g.kk);
    std::vector<const acc_t*> feature_terms(B * tile * g.kk);
    std::vector<int64_t> terms(B);
    std::vector<acc_t*> out(kMaxLhsRows * tile);
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      for (int64_t y = band.y0; y < band.y1; ++y) {
        const int64_t yb = y - band.y0;
        const TapRange dys = taps_reading_from(g, y);
        terms[yb] = (dys.hi - dys.lo) * g.k;
        for (int64_t dy = dys.lo; dy < dys.hi; ++dy) {
          for (int64_t dx = 0; dx < g.k; ++dx) {
            const int64_t tap = dy * g.k + dx;
            const int64_t term = (dy - dys.lo) * g.k + dx;
            for (int64_t a = 0; a < g.s; ++a) {
              acc_t* row =
                  kernel_rows.data() + ((yb * g.s + a) * g.kk + tap) * g.OW;
              widen_row(g.mask_row(masks, band.n, band.group, tap,
                                   y * g.s + a),
                        g.OW, row);
              kernel_terms[(yb * g.s + a) * g.kk + term] = row;
            }
            for (int64_t ci = 0; ci < tile; ++ci) {
              feature_terms[(yb * tile + ci) * g.kk + term] =
                  feature_rows.data() + (ci * window + yb + dy) * g.span +
                  g.s * dx;
            }
          }
        }
      }
      for (int64_t c0 = 0; c0 < g.Cg; c0 += tile) {
        const int64_t channels = std::min(tile, g.Cg - c0);
        const int64_t c_first = band.group * g.Cg + c0;
        for (int64_t ci = 0; ci < channels; ++ci) {
          load_feature_rows(g, features, band, c_first + ci,
                            widened_rows.data(),
                            feature_rows.data() + ci * window * g.span);
        }
        for (int64_t y = band.y0; y < band.y1; ++y) {
          const int64_t yb = y - band.y0;
          for (int64_t a0 = 0; a0 < g.s; a0 += kMaxLhsRows) {
            const int64_t rows = std::min(kMaxLhsRows, g.s - a0);
            for (int64_t p = 0; p < rows; ++p) {
              for (int64_t q = 0; q < channels; ++q) {
                if constexpr (widened) {
                  out[p * channels + q] =
                      widened_rows.data() + (p * channels + q) * g.OW;
                } else {
                  out[p * channels + q] = g.output_row(
                      output, band.n, c_first + q, y * g.s + a0 + p);
                }
              }
            }
            sum_products({kernel_terms.data() + (yb * g.s + a0) * g.kk, g.kk,
                          feature_terms.data() + yb * tile * g.kk, g.kk,
                          out.data(), rows, channels, terms[yb], g.OW,
                          false});
            if constexpr (widened) {
              for (int64_t p = 0; p < rows; ++p) {
                for (int64_t q = 0; q < channels; ++q) {
                  narrow_row(out[p * channels + q], g.OW,
                             g.output_row(output, band.n, c_first + q,
                                          y * g.s + a0 + p));
                }
              }
            }
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Gradient with respect to the features: a gather, for each input row y,
// over the output rows (y + r - dy)*s + a that read it.

template <typename scalar_t>
void features_grad_kernel(const Geometry& g, const scalar_t* grad_output,
                          const scalar_t* masks, scalar_t* grad_features) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  // Rows are stored with `pad` zeros on both sides so that every term of E,
  // shifted by s*dx, can be read over the whole span without bounds checks.
  const int64_t pad = g.s * (g.k - 1);
  const int64_t padded = g.OW + 2 * pad;
  const Banding bands(g, g.s * g.kk * padded * sizeof(acc_t));
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // output row blocks read by a band
  const int64_t row_terms = g.k * g.s * g.k;
  const int64_t tile = std::min(kChannelTile, g.Cg);
  const SimdKernels<acc_t>& simd = simd_kernels<acc_t>();
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // Kernel rows [y - y0][term] and output-gradient rows
    // [channel][block - (y0 - r)][a], both zero-padded; term lists: shifted
    // kernel rows [y - y0][term] and shifted gradient rows
    // [y - y0][channel][term], term = ((dy - lo)*s + a)*k + dx.
    std::vector<acc_t> kernel_rows(B * row_terms * padded, acc_t(0));
    std::vector<acc_t> grad_rows(tile * window * g.s * padded, acc_t(0));
    std::vector<acc_t> spread(tile * g.span);  // E per channel
    std::vector<acc_t> widened_row(widened ? g.W : 0);
    std::vector<const acc_t*> kernel_terms(B * row_terms);
    std::vector<const acc_t*> grad_terms(B * tile * row_terms);
    std::vector<int64_t> terms(B);
    std::vector<acc_t*> out(tile);
    for (int64_t ci = 0; ci < tile; ++ci) out[ci] = spread.data() + ci * g.span;
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      const int64_t first_block = band.y0 - g.r;
      for (int64_t y = band.y0; y < band.y1; ++y) {
        const int64_t yb = y - band.y0;
        const TapRange dys = taps_reaching(g, y);
        int64_t term = 0;
        for (int64_t dy = dys.lo; dy < dys.hi; ++dy) {
          const int64_t block = y + g.r - dy;
          for (int64_t a = 0; a < g.s; ++a) {
            for (int64_t dx = 0; dx < g.k; ++dx, ++term) {
              acc_t* row =
                  kernel_rows.data() + (yb * row_terms + term) * padded + pad;
              widen_row(g.mask_row(masks, band.n, band.group, dy * g.k + dx,
                                   block * g.s + a),
                        g.OW, row);
              kernel_terms[yb * row_terms + term] = row - g.s * dx;
              for (int64_t ci = 0; ci < tile; ++ci) {
                grad_terms[(yb * tile + ci) * row_terms + term] =
                    grad_rows.data() +
                    ((ci * window + block - first_block) * g.s + a) * padded +
                    pad - g.s * dx;
              }
            }
          }
        }
        terms[yb] = term;
      }
      for (int64_t c0 = 0; c0 < g.Cg; c0 += tile) {
        const int64_t channels = std::min(tile, g.Cg - c0);
        const int64_t c_first = band.group * g.Cg + c0;
        for (int64_t ci = 0; ci < channels; ++ci) {
          for (int64_t block = std::max<int64_t>(0, first_block);
               block < std::min(g.H, band.y1 + g.r); ++block) {
            for (int64_t a = 0; a < g.s; ++a) {
              widen_row(
                  g.output_row(grad_output, band.n, c_first + ci,
                               block * g.s + a),
                  g.OW,
                  grad_rows.data() +
                      ((ci * window + block - first_block) * g.s + a) *
                          padded +
                      pad);
            }
          }
        }
        for (int64_t y = band.y0; y < band.y1; ++y) {
          const int64_t yb = y - band.y0;
          simd.sum_products({kernel_terms.data() + yb * row_terms, row_terms,
                             grad_terms.data() + yb * tile * row_terms,
                             row_terms, out.data(), 1, channels, terms[yb],
                             g.span, false});
          for (int64_t ci = 0; ci < channels; ++ci) {
            // dX[y][x] = sum_{b < s} E[(x + r)*s + b]
            scalar_t* dst =
                g.feature_row(grad_features, band.n, c_first + ci, y);
            const acc_t* src = out[ci] + g.r * g.s;
            if constexpr (widened) {
              simd.downsample_row(src, g.W, g.s, widened_row.data());
              narrow_row(widened_row.data(), g.W, dst);
            } else {
              simd.downsample_row(src, g.W, g.s, dst);
            }
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Gradient with respect to the masks: a sum over the channels of a group,
// kChannelBlock channels (the terms) per sum_products() call.

template <typename scalar_t>
void masks_grad_kernel(const Geometry& g, const scalar_t* grad_output,
                       const scalar_t* features, scalar_t* grad_masks) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  const Banding bands(g, g.s * g.kk * g.OW * sizeof(acc_t));
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // input rows read by a band
  const int64_t block = std::min(kChannelBlock, g.Cg);
  // The k taps dx of a kernel row, in near-equal tiles of <= kMaxRhsRows.
  const int64_t dx_tiles = (g.k + kMaxRhsRows - 1) / kMaxRhsRows;
  const auto sum_products = simd_kernels<acc_t>().sum_products;
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // dK rows of the band [y - y0][a][tap]; upsampled feature rows
    // [channel][window row]; term lists (t = channel of the block):
    // output-gradient rows [y - y0][a][channel] and shifted feature rows
    // [dx][channel] of the current (y, dy).
    std::vector<acc_t> grad_kernel_rows(B * g.s * g.kk * g.OW);
    std::vector<acc_t> feature_rows(block * window * g.span);
    std::vector<acc_t> grad_rows(widened ? block * B * g.s * g.OW : 0);
    std::vector<acc_t> widened_row(widened ? g.W : 0);
    std::vector<const acc_t*> grad_terms(B * g.s * block);
    std::vector<const acc_t*> feature_terms(g.k * block);
    std::vector<acc_t*> out(kMaxLhsRows * kMaxRhsRows);
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      for (int64_t c0 = 0; c0 < g.Cg; c0 += block) {
        const int64_t channels = std::min(block, g.Cg - c0);
        for (int64_t ci = 0; ci < channels; ++ci) {
          const int64_t c = band.group * g.Cg + c0 + ci;
          load_feature_rows(g, features, band, c, widened_row.data(),
                            feature_rows.data() + ci * window * g.span);
          for (int64_t y = band.y0; y < band.y1; ++y) {
            for (int64_t a = 0; a < g.s; ++a) {
              const int64_t slot = ((y - band.y0) * g.s + a) * block + ci;
              const scalar_t* src =
                  g.output_row(grad_output, band.n, c, y * g.s + a);
              if constexpr (widened) {
                acc_t* row = grad_rows.data() + slot * g.OW;
                widen_row(src, g.OW, row);
                grad_terms[slot] = row;
              } else {
                grad_terms[slot] = src;
              }
            }
          }
        }
        for (int64_t y = band.y0; y < band.y1; ++y) {
          const int64_t yb = y - band.y0;
          const TapRange dys = taps_reading_from(g, y);
          for (int64_t dy = dys.lo; dy < dys.hi; ++dy) {
            for (int64_t dx = 0; dx < g.k; ++dx) {
              for (int64_t ci = 0; ci < channels; ++ci) {
                feature_terms[dx * block + ci] = feature_rows.data() +
                    (ci * window + yb + dy) * g.span + g.s * dx;
              }
            }
            for (int64_t a0 = 0; a0 < g.s; a0 += kMaxLhsRows) {
              const int64_t rows = std::min(kMaxLhsRows, g.s - a0);
              for (int64_t tile = 0, dx0 = 0; tile < dx_tiles; ++tile) {
                const int64_t cols = (g.k - dx0) / (dx_tiles - tile);
                for (int64_t p = 0; p < rows; ++p) {
                  for (int64_t q = 0; q < cols; ++q) {
                    out[p * cols + q] = grad_kernel_rows.data() +
                        ((yb * g.s + a0 + p) * g.kk + dy * g.k + dx0 + q) *
                            g.OW;
                  }
                }
                sum_products({grad_terms.data() + (yb * g.s + a0) * block,
                              block, feature_terms.data() + dx0 * block,
                              block, out.data(), rows, cols, channels, g.OW,
                              c0 > 0});
                dx0 += cols;
              }
            }
          }
        }
      }
      for (int64_t y = band.y0; y < band.y1; ++y) {
        const TapRange dys = taps_reading_from(g, y);
        for (int64_t a = 0; a < g.s; ++a) {
          const int64_t row0 = ((y - band.y0) * g.s + a) * g.kk;
          for (int64_t tap = 0; tap < g.kk; ++tap) {
            scalar_t* dst =
                g.mask_row(grad_masks, band.n, band.group, tap, y * g.s + a);
            const int64_t dy = tap / g.k;
            if (dy >= dys.lo && dy < dys.hi) {
              narrow_row(grad_kernel_rows.data() + (row0 + tap) * g.OW, g.OW,
                         dst);
            } else {  // the tap reads only the zero border
              std::fill(dst, dst + g.OW, scalar_t(0));
            }
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Argument checks and entry points.

void check_inputs(const at::Tensor& features, const at::Tensor& masks,
                  int64_t kernel_size, int64_t group_size,
                  int64_t scale_factor) {
  TORCH_CHECK(features.device().is_cpu() && masks.device().is_cpu(),
              "dlu_mm._ext reassembly: features and masks must be CPU "
              "tensors, got ", features.device(), " and ", masks.device());
  TORCH_CHECK(features.dim() == 4,
              "dlu_mm._ext reassembly: features must be 4-D (N, C, H, W), "
              "got shape ", features.sizes());
  TORCH_CHECK(masks.dim() == 4,
              "dlu_mm._ext reassembly: masks must be 4-D (N, G*k*k, sH, sW), "
              "got shape ", masks.sizes());
  const at::ScalarType dtype = features.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              "dlu_mm._ext reassembly: features must be float32, float64, "
              "float16 or bfloat16, got ", dtype);
  TORCH_CHECK(features.scalar_type() == masks.scalar_type(),
              "dlu_mm._ext reassembly: features and masks must have the same "
              "dtype, got ", features.scalar_type(), " and ",
              masks.scalar_type());
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1,
              "dlu_mm._ext reassembly: kernel_size must be a positive odd "
              "integer, got ", kernel_size);
  TORCH_CHECK(group_size >= 1 && features.size(1) % group_size == 0,
              "dlu_mm._ext reassembly: group_size must be >= 1 and divide "
              "the ", features.size(1), " feature channels, got ", group_size);
  TORCH_CHECK(scale_factor >= 1,
              "dlu_mm._ext reassembly: scale_factor must be >= 1, got ",
              scale_factor);
  const std::vector<int64_t> expected = {
      features.size(0), group_size * kernel_size * kernel_size,
      scale_factor * features.size(2), scale_factor * features.size(3)};
  TORCH_CHECK(masks.sizes() == at::IntArrayRef(expected),
              "dlu_mm._ext reassembly: masks must have shape (N, G*k*k, sH, "
              "sW) = ", at::IntArrayRef(expected), " for features of shape ",
              features.sizes(), ", got ", masks.sizes());
}

// A new, not yet written tensor of `shape`, whose large buffers may be
// backed by transparent huge pages. A multi-megabyte buffer comes straight
// from mmap, and touching it the first time costs a page fault every 4 KiB:
// for a 1x256x240x240 float32 output that is more than half of the forward
// pass. MADV_HUGEPAGE (Linux, THP in "madvise" or "always" mode) makes it
// one fault every 2 MiB. It only advises the kernel, about this buffer's own
// 2 MiB-aligned pages: the values, and what other tensors get, do not change.
at::Tensor empty_output(at::IntArrayRef shape, const at::TensorOptions& opts) {
  at::Tensor out = at::empty(shape, opts);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + out.nbytes()) & ~(kHugePage - 1);
  if (out.nbytes() >= 4 * kHugePage && last > first) {
    // Advice only: where THP is off or this fails, the buffer keeps 4 KiB
    // pages and the kernels run as they would without it.
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

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
        forward_kernel<scalar_t>(g, features.const_data_ptr<scalar_t>(),
                                 masks.const_data_ptr<scalar_t>(),
                                 output.mutable_data_ptr<scalar_t>());
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor> reassemble_backward(
    const at::Tensor& grad_output_in, const at::Tensor& features_in,
    const at::Tensor& masks_in, int64_t kernel_size, int64_t group_size,
    int64_t scale_factor, bool needs_features_grad, bool needs_masks_grad) {
  check_inputs(features_in, masks_in, kernel_size, group_size, scale_factor);
  const at::Tensor features = features_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const Geometry g(features, kernel_size, group_size, scale_factor);
  const std::vector<int64_t> output_shape = {g.N, g.C, g.OH, g.OW};
  TORCH_CHECK(grad_output_in.device().is_cpu(),
              "dlu_mm._ext reassembly: grad_output must be a CPU tensor, got ",
              grad_output_in.device());
  TORCH_CHECK(grad_output_in.scalar_type() == features.scalar_type(),
              "dlu_mm._ext reassembly: grad_output must have the features' "
              "dtype ", features.scalar_type(), ", got ",
              grad_output_in.scalar_type());
  TORCH_CHECK(grad_output_in.sizes() == at::IntArrayRef(output_shape),
              "dlu_mm._ext reassembly: grad_output must have the output "
              "shape (N, C, sH, sW) = ", at::IntArrayRef(output_shape),
              ", got ", grad_output_in.sizes());
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
          features_grad_kernel<scalar_t>(
              g, grad_output.const_data_ptr<scalar_t>(),
              masks.const_data_ptr<scalar_t>(),
              grad_features.mutable_data_ptr<scalar_t>());
        }
        if (needs_masks_grad) {
          masks_grad_kernel<scalar_t>(
              g, grad_output.const_data_ptr<scalar_t>(),
              features.const_data_ptr<scalar_t>(),
              grad_masks.mutable_data_ptr<scalar_t>());
        }
      });
  return {grad_features, grad_masks};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dlu_mm native CARAFE-style reassembly kernels (CPU, OpenMP)";
  m.def("reassemble_forward", &reassemble_forward,
        "Y = reassemble(features, masks): (N, C, H, W), (N, G*k*k, sH, sW) "
        "-> (N, C, sH, sW)",
        py::arg("features"), py::arg("masks"), py::arg("kernel_size"),
        py::arg("group_size"), py::arg("scale_factor"));
  m.def("reassemble_backward", &reassemble_backward,
        "(grad_features, grad_masks); an undefined tensor for a gradient "
        "that is not needed",
        py::arg("grad_output"), py::arg("features"), py::arg("masks"),
        py::arg("kernel_size"), py::arg("group_size"), py::arg("scale_factor"),
        py::arg("needs_features_grad"), py::arg("needs_masks_grad"));
}
