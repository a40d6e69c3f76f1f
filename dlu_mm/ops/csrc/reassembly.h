/*
 * The CARAFE-style reassembly kernels of dlu_mm._ext (CPU, OpenMP), generic
 * in where the reassembly kernels come from, so that one implementation
 * serves mmcv-style stored kernels (reassemble_cpu.cpp) and DLU's kernel
 * space sampled on the fly (dlu_reassemble_cpu.cpp).
 *
 * Notation: features X (N, C, H, W); reassembly kernels K (N, G*k*k, sH,
 * sW); output Y (N, C, sH, sW); s = scale factor, r = (k - 1) / 2,
 * Cg = ceil(C / G), channel c belongs to group g = c / Cg (mmcv's rule; the
 * last groups may hold fewer channels, or none), tap = dy*k + dx, and X is 0
 * outside [0, H) x [0, W).
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
 *   * All three directions then reduce to one primitive, sum_products()
 *     (simd.h): for small blocks of output rows p < P, q < Q,
 *         out[p][q][j] (+)= sum_t lhs[p][t][j] * rhs[q][t][j]
 *     with a term's rows given by per-row bases plus an offset per term.
 *       forward: p = output row i of a block row, q = channel;
 *                t = (dy, dx), lhs = K rows, rhs = shifted U rows.
 *       dX:      a gather: for input row y and channel q,
 *                  E[t'] = sum_{dy,a,dx} K[tap, row][t' - s*dx]
 *                                        * dY[q, row][t' - s*dx]
 *                with row = (y+r-dy)*s + a; then
 *                  dX[q, y, x] = sum_{b<s} E[(x+r)*s + b],
 *                computed by shift dx (see features_grad_kernel):
 *                p = channel, q = dx; t = (dy, a).
 *       dK:      p = output row, q = dx; t = channel (of a block of channels).
 *     The rhs rows of the forward and of dK are shifted feature rows, whose
 *     vector loads straddle cache lines; at s <= 2 two consecutive output
 *     row blocks read k - 1 of their k window rows in common, so both
 *     blocks' 2s output rows share one call there (RowGroup; in the
 *     forward a split block, each half summing only its own taps).
 *   * Work units are bands of a few input rows of one group of one image,
 *     spread over threads with at::parallel_for; the rows of a band share the
 *     feature / gradient rows loaded for it. Every output element is written
 *     by exactly one unit, and the order of its additions does not depend on
 *     the banding or the thread count: no atomics, deterministic results.
 *   * The kernels are read through a KernelSource, whose per-thread loader
 *     is told which output rows a band will read (prepare) and then fills
 *     the wanted tap rows of one output row at a time (load_row) into the
 *     band's scratch; dK rows go to a
 *     KernelGradSink's per-thread writer, one output row (all taps) at a
 *     time. Neither ever needs the whole (N, G*k*k, sH, sW) tensor.
 *   * At s = 4 (AVX-512) the forward runs in phase space instead
 *     (forward_phases_kernel): output columns x*s + b split into s phase
 *     rows of W, the rhs rows are the feature rows themselves (zero-padded,
 *     not upsampled), and sum_products() interleaves the phases in
 *     registers as it stores.
 * Forward outputs larger than the threads' L2 caches are written with
 * non-temporal stores (streams_output).
 * Scratch memory is per thread, 64-byte aligned (scratch.h) and about a
 * band's worth of kernel rows (kept under 3/4 of the L2 cache,
 * band_scratch_bytes). Half types
 * (float16, bfloat16) are widened to float when read, accumulated in
 * float and rounded once when stored;
 * float64 accumulates in double.
 */
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#if defined(__unix__)
#include <unistd.h>
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "output_buffers.h"
#include "scratch.h"
#include "simd.h"

namespace dlu_mm {

// ---------------------------------------------------------------------------
// Geometry, work units and row helpers.

// A row stride for scratch rows of n elements: n rounded up to an odd
// number of 16-element units (64 bytes in float), so that rows start on
// cache lines and the same column of consecutive rows falls into
// different L1 sets. A stride of 16 lines (a 1 KiB row: W = 124 or 128 at
// s=2) maps the same column of every fourth row to one set, and the
// forward reads 100 kernel rows column by column.
inline int64_t odd_lines_stride(int64_t n) {
  const int64_t units = (n + 15) / 16;
  return (units % 2 == 0 ? units + 1 : units) * 16;
}

struct Geometry {
  int64_t N, C, H, W;  // features
  int64_t k, G, s;     // kernel size, groups, scale factor
  int64_t r, kk, Cg;   // (k - 1) / 2, k * k, ceil(C / G)
  int64_t OH, OW;      // output size s*H, s*W
  int64_t ow_stride;   // the stride of the kernels' scratch rows of
                       // output width (see odd_lines_stride)
  int64_t span;        // s * (W + k - 1): length of an upsampled feature row

  Geometry(const at::Tensor& features, int64_t kernel_size, int64_t groups,
           int64_t scale)
      : N(features.size(0)), C(features.size(1)), H(features.size(2)),
        W(features.size(3)), k(kernel_size), G(groups), s(scale),
        r((kernel_size - 1) / 2), kk(kernel_size * kernel_size),
        Cg((features.size(1) + groups - 1) / groups),
        OH(scale * features.size(2)), OW(scale * features.size(3)),
        ow_stride(odd_lines_stride(OW)),
        span(scale * (features.size(3) + kernel_size - 1)) {}

  // Channels of group `group`: [group*Cg, group*Cg + count), as in mmcv's
  // CARAFE (the last groups hold fewer, or none, when G does not divide C).
  int64_t group_channels(int64_t group) const {
    return std::clamp<int64_t>(C - group * Cg, 0, Cg);
  }

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
  // Row i of kernel tap `tap` of group `group` of image n of an
  // (N, G*k*k, sH, sW) tensor (the masks).
  template <typename T>
  T* mask_row(T* base, int64_t n, int64_t group, int64_t tap,
              int64_t i) const {
    return base + (((n * G + group) * kk + tap) * OH + i) * OW;
  }
  // Plane of tap `tap` of group `group` of image n of an (N, G*k*k, H, W)
  // tensor (DLU's kernel space).
  template <typename T>
  T* space_plane(T* base, int64_t n, int64_t group, int64_t tap) const {
    return base + ((n * G + group) * kk + tap) * H * W;
  }
};

// A work unit: input rows [y0, y1) of one group of one image.
struct Band {
  int64_t n, group, y0, y1;
};

// How a pass cuts the rows into bands for a given thread count:
//   kFixedRows:   bands of one size from the top of each map (the forward);
//   kThreadParts: each map's rows in `threads` near-equal parts, each cut
//                 into near-equal bands, so that at::parallel_for's even
//                 split of the units hands every thread the same number of
//                 rows (the backward passes). Fixed 7-row bands left one
//                 thread 63 rows and the other 57 at H = 120, s=2, 2
//                 threads; toggled in one process, direct calls (1x256x
//                 120x120), parts made the s=2 features gradient 3-9%
//                 faster, the kernels gradient 5-7%, s=3 2-5%, and s=4
//                 (already even: 30 bands of 4 rows) unchanged. The forward
//                 keeps fixed rows: with parts it was 1-5% slower at s=2
//                 (bands of 6-8 rows), though 5% faster at s=3.
enum class BandLayout { kFixedRows, kThreadParts };

// This CPU's per-core L2 cache in bytes where the OS tells (sysconf), else
// 0.
inline int64_t l2_cache_bytes() {
  static const int64_t bytes = [] {
    int64_t l2 = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    l2 = static_cast<int64_t>(sysconf(_SC_LEVEL2_CACHE_SIZE));
#endif
    return std::max<int64_t>(0, l2);
  }();
  return bytes;
}

// The scratch a band may use: 3/4 of this CPU's per-core L2 cache where the
// OS tells, within [256 KiB, 3 MiB]; 512 KiB where it does not.
// Bigger bands re-read fewer rows: a band of B input rows reads B + k - 1
// rows of features (or output-gradient row blocks), so at s=4, where a
// kernel row is 4x longer than at s=2, a fixed 512 KiB allowed B = 2 and
// read every feature and gradient row 3 times (2 MiB L2: B = 7).
inline int64_t band_scratch_bytes() {
  const int64_t l2 = l2_cache_bytes();
  if (l2 == 0) return int64_t(512) << 10;
  return std::clamp<int64_t>(l2 / 4 * 3, int64_t(256) << 10,
                             int64_t(3) << 20);
}

// Whether an op writes its output of `bytes` with non-temporal stores:
// when it is larger than the L2 caches of the threads writing it (1 MiB
// each where the OS does not tell), it leaves them before anything reads
// it, and normal stores would first read every line of it from memory
// (read-for-ownership) and evict the op's inputs on the way. Measured
// (1x256x120x120 s=2 float32, 2 threads, streaming on/off alternated in one
// process): the fused DLU forward 7.2 -> 6.8 ms called back to back, 8.4 ->
// 7.3 ms with 256 MiB written between calls; in the benchmark's
// interleaved cases 9.2 -> 8.2 ms; FPN's lateral add reading the output
// right after is no slower.
inline bool streams_output(int64_t bytes) {
  const int64_t l2 =
      l2_cache_bytes() > 0 ? l2_cache_bytes() : int64_t(1) << 20;
  return bytes > at::get_num_threads() * l2;
}

// The bands of a pass, cut from blocks of align() rows: every band but a
// map's last starts and ends on a multiple of align() (DLU's kernel-space
// gradient sums its scatter per block, whatever the bands).
class Banding {
 public:
  // `row_bytes`: the scratch each band row needs (its kernel rows). Bands
  // are at most kMaxRows rows, small enough for their scratch to stay in L2
  // (band_scratch_bytes) but at least `min_rows` (min_band_rows) and, for
  // fixed rows and a given thread count, for about kUnitsPerThread units
  // per thread. The blocks are `align` rows where that much scratch fits,
  // else as many as fit (at least 1).
  Banding(const Geometry& g, int64_t row_bytes, int64_t threads,
          BandLayout layout, int64_t align = 1, int64_t min_rows = 1)
      : g_(g) {
    constexpr int64_t kMaxRows = 8;
    constexpr int64_t kUnitsPerThread = 8;
    const int64_t fitting = std::clamp<int64_t>(
        std::max(band_scratch_bytes() / std::max<int64_t>(1, row_bytes),
                 min_rows),
        1, kMaxRows);
    align_ = std::clamp<int64_t>(align, 1, fitting);
    blocks_ = (g.H + align_ - 1) / align_;
    const int64_t cap = fitting / align_;  // blocks a band may hold
    if (layout == BandLayout::kThreadParts && threads > 1) {
      const int64_t parts = std::min(threads, blocks_);
      const int64_t longest = (blocks_ + parts - 1) / parts;
      const int64_t bands = (longest + cap - 1) / cap;
      if (blocks_ / parts >= bands) {  // else a part would get an empty band
        parts_ = parts;
        per_part_ = bands;
        rows = (longest + bands - 1) / bands * align_;
        per_map_ = parts * bands;
        count = g.N * g.G * per_map_;
        return;
      }
    }
    const int64_t balanced =
        g.N * g.G * blocks_ /
        (kUnitsPerThread * std::max<int64_t>(1, threads));
    rows = std::clamp<int64_t>(balanced, 1, cap) * align_;
    per_map_ = (g.H + rows - 1) / rows;
    count = g.N * g.G * per_map_;
  }

  Band operator[](int64_t unit) const {
    const int64_t map_unit = unit % per_map_;
    const int64_t n = unit / (g_.G * per_map_);
    const int64_t group = (unit / per_map_) % g_.G;
    if (parts_ == 1) {
      const int64_t y0 = map_unit * rows;
      return {n, group, y0, std::min(g_.H, y0 + rows)};
    }
    // Part p: blocks [p*blocks/parts, (p+1)*blocks/parts); band b of it:
    // the same near-equal split of the part's blocks.
    const int64_t part = map_unit / per_part_, b = map_unit % per_part_;
    const int64_t start = part * blocks_ / parts_;
    const int64_t length = (part + 1) * blocks_ / parts_ - start;
    return {n, group, (start + b * length / per_part_) * align_,
            std::min(g_.H, (start + (b + 1) * length / per_part_) * align_)};
  }

  int64_t align() const { return align_; }    // rows per block
  int64_t blocks() const { return blocks_; }  // blocks per map

  int64_t rows;   // the most input rows of a band
  int64_t count;  // number of bands

 private:
  const Geometry& g_;
  int64_t align_;         // rows per block
  int64_t blocks_;        // blocks per map
  int64_t parts_ = 1;     // thread parts per map (kThreadParts)
  int64_t per_part_ = 0;  // bands per part
  int64_t per_map_ = 0;
};

// The dy taps whose row index stays inside the map: [lo, hi).
struct TapRange {
  int64_t lo, hi;
};

// Forward / dK: output row block y reads input rows y + dy - r.
inline TapRange taps_reading_from(const Geometry& g, int64_t y) {
  return {std::max<int64_t>(0, g.r - y), std::min(g.k, g.H + g.r - y)};
}

// dX: input row y is read by output row blocks y + r - dy.
inline TapRange taps_reaching(const Geometry& g, int64_t y) {
  return {std::max<int64_t>(0, y + g.r - g.H + 1), std::min(g.k, y + g.r + 1)};
}

// Input rows whose output rows share the feature rows they read: output
// row block y reads window rows y - y0 + dy (dy in taps_reading_from), so
// blocks y and y + 1 read k - 1 window rows in common. Taking both blocks'
// s output rows together as the lhs rows of one sum_products() call, where
// all 2s fit (s <= 2 with AVX-512), loads each shifted feature row once for
// twice the products (the loads of shifted rows straddle cache lines).
inline int64_t rows_per_group(const Geometry& g, int64_t lhs_rows) {
  return 2 * g.s <= lhs_rows ? 2 : 1;
}

// `count` consecutive output row blocks from y of a band, and the window
// rows (input row y0 - r + m of the band's window) they read.
struct RowGroup {
  RowGroup(const Geometry& g, const Band& band, int64_t y, int64_t count)
      : s(g.s), k(g.k), yb(y - band.y0), count(count) {
    window_lo = yb + taps_reading_from(g, y).lo;
    window_hi = yb + count - 1 + taps_reading_from(g, y + count - 1).hi;
    for (int64_t i = 0; i < count; ++i) reads[i] = taps_reading_from(g, y + i);
  }

  // The lhs rows R = (yb + i)*s + a, as [first, last), of the blocks that
  // read window row m: those with m - (yb + i) among their taps (an
  // interval of i, since the tap row falls by one from block to block).
  std::pair<int64_t, int64_t> rows_reading(int64_t m) const {
    int64_t i0 = count, i1 = 0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t dy = m - (yb + i);
      if (dy >= reads[i].lo && dy < reads[i].hi) {
        i0 = std::min(i0, i);
        i1 = i + 1;
      }
    }
    return {(yb + i0) * s, (yb + std::max(i0, i1)) * s};
  }

  // Terms over the group's window rows, t = (m - window_lo)*k + dx; block
  // 0 reads a prefix of them, [0, shared_end()), block 1 (if any) a
  // suffix, [shared_begin(), terms()); the two overlap or touch.
  int64_t terms() const { return (window_hi - window_lo) * k; }
  int64_t shared_begin() const {
    return (yb + count - 1 + reads[count - 1].lo - window_lo) * k;
  }
  int64_t shared_end() const { return (yb + reads[0].hi - window_lo) * k; }

  int64_t s, k, yb, count, window_lo, window_hi;
  TapRange reads[2];
};

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

// Asks for the input rows [y0 - r, y1 + r) of channels [c_begin, c_end)
// of a band in L2, ahead of their loads: the rows of consecutive channels
// lie a plane apart, so each channel's start a page of their own, where
// the hardware prefetchers start over.
template <typename scalar_t>
void prefetch_feature_rows(const Geometry& g, const scalar_t* features,
                           const Band& band, int64_t c_begin, int64_t c_end) {
  const int64_t y_begin = std::max<int64_t>(0, band.y0 - g.r);
  const int64_t y_end = std::min(g.H, band.y1 + g.r);
  constexpr int64_t kLine = 64;
  for (int64_t c = c_begin; c < c_end && y_begin < y_end; ++c) {
    const char* first = reinterpret_cast<const char*>(
        g.feature_row(features, band.n, c, y_begin));
    const char* last = reinterpret_cast<const char*>(
        g.feature_row(features, band.n, c, y_end));
    for (const char* line = first; line < last; line += kLine) {
      __builtin_prefetch(line, 0, 2);
    }
  }
}

// The forward passes' prefetch: while the channel tile [c0, c0 + tile) of
// bands[unit] is computed, the next tile's feature rows, or the first
// tile's of the thread's next band (units up to `end`).
template <typename scalar_t>
void prefetch_next_tile(const Geometry& g, const scalar_t* features,
                        const Banding& bands, int64_t unit, int64_t end,
                        int64_t c0, int64_t tile) {
  const Band band = bands[unit];
  const int64_t group_channels = g.group_channels(band.group);
  const int64_t first = band.group * g.Cg;
  if (c0 + tile < group_channels) {
    prefetch_feature_rows(g, features, band, first + c0 + tile,
                          first + std::min(c0 + 2 * tile, group_channels));
  } else if (unit + 1 < end) {
    const Band next = bands[unit + 1];
    const int64_t next_first = next.group * g.Cg;
    prefetch_feature_rows(
        g, features, next, next_first,
        next_first + std::min(tile, g.group_channels(next.group)));
  }
}

// Calls f(dx0, cols) for the k column taps dx of a kernel row in near-equal
// tiles [dx0, dx0 + cols) of at most kMaxRhsRows (sum_products()' Q).
template <typename F>
void for_each_dx_tile(int64_t k, F&& f) {
  const int64_t tiles = (k + kMaxRhsRows - 1) / kMaxRhsRows;
  for (int64_t tile = 0, dx0 = 0; tile < tiles; ++tile) {
    const int64_t cols = (k - dx0) / (tiles - tile);
    f(dx0, cols);
    dx0 += cols;
  }
}

// The backward passes size their bands for twice the kernel rows: beside
// a band's kernel rows (dX) or dK rows (dK) they keep about as much again
// in L2 (dX: the tile's output-gradient rows over the band's window and
// its products; dK: a block of channels' widened feature rows over the
// window and their output-gradient rows). Sized for the kernel rows alone,
// the band at s=4 (7-8 rows of 192 KiB) overflowed a 2 MiB L2: 4-row bands
// took both gradients from 44 to 37 ms (dX) and 41 to 35 ms (dK),
// 1x256x120x120, 2 threads.
constexpr int64_t kBackwardScratchRows = 2;

// The fewest input rows of a forward or features-gradient band, whatever
// band_scratch_bytes() allows: k - 1, so that a band reads its B + k - 1
// input rows (forward) or output-gradient row blocks (dX) at most twice
// over. With a 1 MiB L2 (AMD EPYC, 2026-12-02) the budget allowed dX 1-row
// bands at s=4, which read every output-gradient row 5 times: 4-row bands
// took the features gradient from 66-110 to 50-60 ms (stored kernels
// 53-95 to 48-56; old and new builds alternated, 1x256x120x120, 2
// threads). There, 8-row bands were 10% faster again (48 vs 54 ms), but on
// the 2 MiB-L2 Xeon of the day before 4-row bands had beaten 7-8-row ones
// (37 vs 44 ms, before later changes), so the floor stays k - 1.
inline int64_t min_band_rows(const Geometry& g) { return g.k - 1; }

// Channels per sum_products() call in the forward pass (its rhs rows, Q:
// five, the most, since the lhs rows are prefetched; four was 4-8% slower
// then, direct and interleaved calls, s = 2 and 4) and in dX (its lhs
// rows, P <= kMaxLhsRows).
constexpr int64_t kForwardChannelTile = kMaxRhsRows;
constexpr int64_t kChannelTile = 4;
// Channels summed per sum_products() call in dK (its terms).
constexpr int64_t kChannelBlock = 16;

// ---------------------------------------------------------------------------
// Forward.

// Loads, through a KernelSource's loader, the kernel rows of a band's
// output rows y*s + a (y in the band), of the taps whose input row is
// inside the map, all taps of a row at once: to destination(y - y0, a,
// tap); then calls loaded(y - y0, a, taps) with the row's TapRange.
template <typename Loader, typename Destination, typename Loaded,
          typename acc_t>
void load_band_kernels(const Geometry& g, const Band& band, Loader& kernels,
                       std::vector<acc_t*>& destinations,
                       Destination&& destination, Loaded&& loaded) {
  kernels.prepare(band, band.y0 * g.s, band.y1 * g.s);
  for (int64_t y = band.y0; y < band.y1; ++y) {
    const TapRange dys = taps_reading_from(g, y);
    for (int64_t a = 0; a < g.s; ++a) {
      for (int64_t tap = 0; tap < g.kk; ++tap) {
        const int64_t dy = tap / g.k;
        destinations[tap] = dy >= dys.lo && dy < dys.hi
                                ? destination(y - band.y0, a, tap)
                                : nullptr;
      }
      kernels.load_row(band, y * g.s + a, destinations.data());
      loaded(y - band.y0, a, dys);
    }
  }
}

// Loads the input rows [y0 - r, y1 + r) of channel c that lie inside the
// map as padded rows P[t] = X[row][t - r], t < W + 2r (zero outside the
// row): row y0 - r + m goes to rows + m*(W + 2r).
template <typename scalar_t, typename acc_t>
void load_padded_rows(const Geometry& g, const scalar_t* features,
                      const Band& band, int64_t c, acc_t* rows) {
  const int64_t first = band.y0 - g.r;
  const int64_t padded = g.W + 2 * g.r;
  for (int64_t y = std::max<int64_t>(0, first);
       y < std::min(g.H, band.y1 + g.r); ++y) {
    acc_t* row = rows + (y - first) * padded;
    std::fill(row, row + g.r, acc_t(0));
    widen_row(g.feature_row(features, band.n, c, y), g.W, row + g.r);
    std::fill(row + g.r + g.W, row + padded, acc_t(0));
  }
}

// Whether the forward pass runs in phase space (forward_phases_kernel):
// at s = 4, where this instruction set's sum_products() blocks hold the 4
// phases of an output row (AVX-512), and the upsampled feature rows it
// spares are 4x the feature rows. Toggled in one process (1x256x120x120,
// 2 threads, the benchmark's 8 interleaved s=4 cases, medians of 9-15
// rounds): forward + backward, CARAFE's reassembly 81.6 -> 78.3 and
// 84.0 -> 80.9 ms, the fused DLU op 84.0 -> 80.6 and 86.1 -> 83.4 ms;
// forward alone the fused op 23.4 -> 23.1 and 23.3 -> 22.9 ms, the
// reassembly of stored kernels 22.2 -> 23.4 and 21.6 -> 23.5 ms (slower:
// its kernels come from memory and are deinterleaved as a second pass).
// At s = 2 the phase path was slower (forward 7.3 -> 8.1 ms): the
// upsampled rows are only twice the feature rows, the interleave costs
// shuffles, and W = 120 columns fill 7.5 vectors where sW = 240 fill 15.
inline bool forward_in_phases(const Geometry& g, int64_t lhs_rows) {
  return g.s == 4 && lhs_rows >= 4;
}

// The forward pass in phase space. With output column j = x*s + b, output
// row i = y*s + a splits into s phase rows of W columns,
//   Y[c, i, x*s + b] = sum_{dy,dx} K_ab[dy*k + dx][x] * P_c[y+dy-r][x + dx]
// with K_ab[tap][x] = K[g*k*k + tap, i, x*s + b] (the kernel rows,
// deinterleaved as they are loaded, once per band) and P_c the feature
// rows with r zeros on both sides (load_padded_rows): the rhs rows are
// feature rows read at a column shift, with no upsampled copy, and every
// load of one serves the s phases of an output row. One sum_products()
// block takes the s phases of an output row and interleaves them in
// registers as it stores (RowProducts::interleave).
// The terms of every output element are added in the same order as in
// the upsampled forward pass, so the results are the same.
template <typename scalar_t, typename KernelSource>
void forward_phases_kernel(const Geometry& g, const scalar_t* features,
                           const KernelSource& source, scalar_t* output) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  const SimdKernels<acc_t>& simd = simd_kernels<acc_t>();
  const Banding bands(g, g.s * g.kk * g.OW * sizeof(acc_t),
                      at::get_num_threads(), BandLayout::kFixedRows,
                      1, min_band_rows(g));
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // input rows read by a band
  const int64_t padded = g.W + 2 * g.r;
  const int64_t tile = std::min(kForwardChannelTile, g.Cg);
  const bool stream =
      !widened && streams_output(g.N * g.C * g.OH * g.OW * sizeof(scalar_t));
  // Terms over the taps of input row y, t = tap - lo*k (lo its first tap
  // row): kernel row t is t rows past the first; feature row t is window
  // row t / k past the first, shifted by t % k.
  std::vector<int64_t> kernel_offsets(g.kk), feature_offsets(g.kk);
  for (int64_t t = 0; t < g.kk; ++t) {
    kernel_offsets[t] = t * g.W;
    feature_offsets[t] = t / g.k * padded + t % g.k;
  }
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // Kernel phase rows [y - y0][a][b][tap] of W; one output row's kernel
    // rows as loaded [tap] of sW; padded feature rows [channel][window
    // row]; the first rows of a call's terms: kernel rows [b], feature
    // rows [channel].
    ScratchVector<acc_t> kernel_rows(B * g.s * g.kk * g.OW);
    ScratchVector<acc_t> loaded(g.kk * g.OW);
    ScratchVector<acc_t> feature_rows(tile * window * padded);
    ScratchVector<acc_t> widened_rows(widened ? tile * g.OW : 0);
    std::vector<const acc_t*> kernel_bases(g.s);
    std::vector<const acc_t*> feature_bases(tile);
    std::vector<acc_t*> out(tile);
    std::vector<acc_t*> destinations(g.kk);
    auto kernels = source.loader();
    // Phase row b of tap `tap` of output row y*s + a, yb = y - y0.
    auto kernel_row = [&](int64_t yb, int64_t a, int64_t b, int64_t tap) {
      return kernel_rows.data() + (((yb * g.s + a) * g.s + b) * g.kk + tap) *
                                      g.W;
    };
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      const int64_t group_channels = g.group_channels(band.group);
      if (group_channels == 0) continue;
      load_band_kernels(
          g, band, kernels, destinations,
          [&](int64_t, int64_t, int64_t tap) {
            return loaded.data() + tap * g.OW;
          },
          [&](int64_t yb, int64_t a, const TapRange& dys) {
            for (int64_t tap = dys.lo * g.k; tap < dys.hi * g.k; ++tap) {
              simd.deinterleave_row(loaded.data() + tap * g.OW, g.W, g.s,
                                    kernel_row(yb, a, 0, tap), g.kk * g.W);
            }
          });
      for (int64_t c0 = 0; c0 < group_channels; c0 += tile) {
        const int64_t channels = std::min(tile, group_channels - c0);
        const int64_t c_first = band.group * g.Cg + c0;
        prefetch_next_tile(g, features, bands, unit, end, c0, tile);
        for (int64_t ci = 0; ci < channels; ++ci) {
          load_padded_rows(g, features, band, c_first + ci,
                           feature_rows.data() + ci * window * padded);
        }
        for (int64_t y = band.y0; y < band.y1; ++y) {
          const int64_t yb = y - band.y0;
          const TapRange dys = taps_reading_from(g, y);
          for (int64_t ci = 0; ci < channels; ++ci) {
            feature_bases[ci] =
                feature_rows.data() + (ci * window + yb + dys.lo) * padded;
          }
          for (int64_t a = 0; a < g.s; ++a) {
            for (int64_t b = 0; b < g.s; ++b) {
              kernel_bases[b] = kernel_row(yb, a, b, dys.lo * g.k);
            }
            for (int64_t q = 0; q < channels; ++q) {
              if constexpr (widened) {
                out[q] = widened_rows.data() + q * g.OW;
              } else {
                out[q] = g.output_row(output, band.n, c_first + q,
                                      y * g.s + a);
              }
            }
            RowProducts<acc_t> products{
                kernel_bases.data(),
                kernel_offsets.data(),
                feature_bases.data(),
                feature_offsets.data(),
                out.data(),
                g.s,
                channels,
                (dys.hi - dys.lo) * g.k,
                g.W,
                false};
            products.stream = stream;
            products.interleave = static_cast<int>(g.s);
            simd.sum_products(products);
            if constexpr (widened) {
              for (int64_t q = 0; q < channels; ++q) {
                narrow_row(out[q], g.OW,
                           g.output_row(output, band.n, c_first + q,
                                        y * g.s + a));
              }
            }
          }
        }
      }
    }
    if (stream) stream_fence();
  });
}

// `source` makes, once per thread, a loader of the reassembly kernels (see
// StoredKernels below and DLU's SampledKernels).
template <typename scalar_t, typename KernelSource>
void forward_kernel(const Geometry& g, const scalar_t* features,
                    const KernelSource& source, scalar_t* output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t lhs_rows = simd_kernels<acc_t>().max_lhs_rows;
  if (forward_in_phases(g, lhs_rows)) {
    return forward_phases_kernel(g, features, source, output);
  }
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  const Banding bands(g, g.s * g.kk * g.ow_stride * sizeof(acc_t),
                      at::get_num_threads(), BandLayout::kFixedRows,
                      1, min_band_rows(g));
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // input rows read by a band
  const int64_t tile = std::min(kForwardChannelTile, g.Cg);
  const auto sum_products = simd_kernels<acc_t>().sum_products;
  // Output row blocks computed together (RowGroup): a pair's 2s output rows
  // are one split block of sum_products(), each row summing its own taps in
  // the same order as alone, so the results do not depend on the pairing.
  const int64_t pair = rows_per_group(g, lhs_rows);
  const int64_t groups = (B + pair - 1) / pair;
  const int64_t max_terms = (g.k + pair - 1) * g.k;  // window rows x dx
  // Half types are stored through narrow_row(), not streamed. Streamed
  // output rows that do not all start on a cache line are summed into
  // scratch rows and copied from there (copy_row: non-temporal stores
  // from each row's first 64-byte boundary on).
  const bool stream =
      !widened && streams_output(g.N * g.C * g.OH * g.OW * sizeof(scalar_t));
  const bool staged =
      widened ||
      (stream && g.OW * static_cast<int64_t>(sizeof(scalar_t)) %
                         static_cast<int64_t>(kCacheLine) != 0);
  const auto copy_row = simd_kernels<acc_t>().copy_row;
  // A row group's terms run over the window rows it reads, t = (m - first
  // window row)*k + dx: kernel row t is t rows past the group's first (of
  // each output row, see below), feature row t is window row t / k past
  // the first, shifted by s*(t % k).
  std::vector<int64_t> kernel_offsets(max_terms), feature_offsets(max_terms);
  for (int64_t t = 0; t < max_terms; ++t) {
    kernel_offsets[t] = t * g.ow_stride;
    feature_offsets[t] = t / g.k * g.span + g.s * (t % g.k);
  }
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // Kernel rows [y - y0][a][tap]; upsampled feature rows
    // [channel][window row]; per row group, the rows of its term 0:
    // kernel rows [group][y - group's y][a] (of the tap row it would read
    // from window row m0 -- one before its first for the second block of
    // a pair) and feature rows [group][channel]; when staged, a block's
    // output rows [p][channel] (for half types also a widened input row).
    ScratchVector<acc_t> kernel_rows(B * g.s * g.kk * g.ow_stride);
    ScratchVector<acc_t> feature_rows(tile * window * g.span);
    ScratchVector<acc_t> staged_rows(
        staged ? std::max(g.W, kMaxLhsRows * tile * g.ow_stride) : 0);
    std::vector<const acc_t*> kernel_bases(groups * pair * g.s);
    std::vector<const acc_t*> feature_bases(groups * tile);
    std::vector<RowGroup> row_groups;  // the band's
    std::vector<acc_t*> out(kMaxLhsRows * tile);
    std::vector<acc_t*> destinations(g.kk);
    auto kernels = source.loader();
    // Kernel row of tap `tap`, output row y*s + a, yb = y - y0.
    auto kernel_row = [&](int64_t yb, int64_t a, int64_t tap) {
      return kernel_rows.data() + ((yb * g.s + a) * g.kk + tap) * g.ow_stride;
    };
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      const int64_t group_channels = g.group_channels(band.group);
      if (group_channels == 0) continue;
      load_band_kernels(g, band, kernels, destinations, kernel_row,
                        [](int64_t, int64_t, const TapRange&) {});
      row_groups.clear();
      for (int64_t y = band.y0; y < band.y1; y += pair) {
        const int64_t gi = static_cast<int64_t>(row_groups.size());
        const RowGroup& group = row_groups.emplace_back(
            g, band, y, std::min(pair, band.y1 - y));
        const int64_t m0 = group.window_lo;
        for (int64_t ci = 0; ci < tile; ++ci) {
          feature_bases[gi * tile + ci] =
              feature_rows.data() + (ci * window + m0) * g.span;
        }
        for (int64_t i = 0; i < group.count; ++i) {
          // Tap row m0 - (yb + i) of block i: >= 0 for the first, >= -1 for
          // the second (whose rows follow the first's in kernel_rows).
          const int64_t dy0 = m0 - (group.yb + i);
          for (int64_t a = 0; a < g.s; ++a) {
            kernel_bases[(gi * pair + i) * g.s + a] =
                kernel_row(group.yb + i, a, 0) + dy0 * g.k * g.ow_stride;
          }
        }
      }
      for (int64_t c0 = 0; c0 < group_channels; c0 += tile) {
        const int64_t channels = std::min(tile, group_channels - c0);
        const int64_t c_first = band.group * g.Cg + c0;
        prefetch_next_tile(g, features, bands, unit, end, c0, tile);
        for (int64_t ci = 0; ci < channels; ++ci) {
          load_feature_rows(g, features, band, c_first + ci,
                            staged_rows.data(),
                            feature_rows.data() + ci * window * g.span);
        }
        for (int64_t gi = 0; gi < static_cast<int64_t>(row_groups.size());
             ++gi) {
          const RowGroup& group = row_groups[gi];
          const int64_t y = band.y0 + group.yb;
          // Output rows y*s + p0 + p, p < rows: a pair's 2s rows as one
          // split block, else blocks of at most lhs_rows of y's s rows.
          const int64_t all_rows = group.count * g.s;
          const bool split = group.count == 2;
          const int64_t terms = group.terms();
          const int64_t shared_begin = group.shared_begin();
          const int64_t shared_end = group.shared_end();
          for (int64_t p0 = 0; p0 < all_rows; p0 += lhs_rows) {
            const int64_t rows = std::min(lhs_rows, all_rows - p0);
            for (int64_t p = 0; p < rows; ++p) {
              for (int64_t q = 0; q < channels; ++q) {
                acc_t* scratch =
                    staged_rows.data() + (p * channels + q) * g.ow_stride;
                if constexpr (widened) {
                  out[p * channels + q] = scratch;
                } else {
                  out[p * channels + q] =
                      staged ? scratch
                             : g.output_row(output, band.n, c_first + q,
                                            y * g.s + p0 + p);
                }
              }
            }
            RowProducts<acc_t> products{
                kernel_bases.data() + gi * pair * g.s + p0,
                kernel_offsets.data(),
                feature_bases.data() + gi * tile,
                feature_offsets.data(),
                out.data(),
                rows,
                channels,
                terms,
                g.OW,
                false};
            products.split = split;
            products.shared_begin = shared_begin;
            products.shared_end = shared_end;
            products.stream = stream && !staged;
            sum_products(products);
            if (staged) {
              for (int64_t p = 0; p < rows; ++p) {
                for (int64_t q = 0; q < channels; ++q) {
                  scalar_t* dst = g.output_row(output, band.n, c_first + q,
                                               y * g.s + p0 + p);
                  if constexpr (widened) {
                    narrow_row(out[p * channels + q], g.OW, dst);
                  } else {
                    copy_row(out[p * channels + q], g.OW, dst, stream);
                  }
                }
              }
            }
          }
        }
      }
    }
    if (stream) stream_fence();
  });
}

// ---------------------------------------------------------------------------
// Gradient with respect to the features: a gather, for each input row y,
// over the output rows row = (y + r - dy)*s + a that read it. By the
// column shift dx, with the products taken unshifted:
//   F_dx[u] = sum_{dy, a} dY[c, row][u] * K[dy*k + dx, row][u],  u < sW
//   E[r*s + u] = sum_{dx < k} F_dx[u + (r - dx)*s]  (terms outside
//                [0, sW) left out), u < sW
//   dX[c, y, x] = sum_{b < s} E[(x + r)*s + b].
// One sum_products() call per (y, channel tile): lhs = the tile's dY rows,
// rhs = the k kernel rows dx, terms (dy, a); every dY row is read in place
// (no padded copy) and used by k products per load.

template <typename scalar_t, typename KernelSource>
void features_grad_kernel(const Geometry& g, const scalar_t* grad_output,
                          const KernelSource& source,
                          scalar_t* grad_features) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  const Banding bands(g, kBackwardScratchRows * g.s * g.kk * g.ow_stride *
                          static_cast<int64_t>(sizeof(acc_t)),
                      at::get_num_threads(), BandLayout::kThreadParts, 1,
                      min_band_rows(g));
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // output row blocks read by a band
  const int64_t row_terms = g.k * g.s;  // (dy, a) of an input row
  const int64_t tile = std::min(kChannelTile, g.Cg);
  const SimdKernels<acc_t>& simd = simd_kernels<acc_t>();
  // Terms (dy, a) of input row y, term = (dy - lo)*s + a: the dY row of
  // term 0 is output row (y + r - lo)*s, term's is (dy - lo)*s rows
  // before it, plus a (rows of OW, whether read in place or widened); the
  // kernel row of term 0, tap column dx, is followed by term's at a stride
  // of k rows.
  std::vector<int64_t> grad_offsets(row_terms), kernel_offsets(row_terms);
  for (int64_t term = 0; term < row_terms; ++term) {
    grad_offsets[term] = (term % g.s - term / g.s * g.s) * g.OW;
    kernel_offsets[term] = term * g.k * g.ow_stride;
  }
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // Kernel rows [y - y0][(dy*s + a)*k + dx]; for half types the tile's
    // dY rows widened, [channel][block - (y0 - r)][a]; F [channel][dx];
    // the rows of term 0: dY rows [channel], kernel rows [dx].
    ScratchVector<acc_t> kernel_rows(B * row_terms * g.k * g.ow_stride);
    ScratchVector<acc_t> grad_rows(widened ? tile * window * g.s * g.OW : 0);
    // F rows with at least r*s zeros on both sides (never written), so
    // that their shifted sums need no bounds. The zeros before a row are
    // whole cache lines and the row stride a multiple of them, so that
    // sum_products() stores every F row from a 64-byte boundary (toggled
    // in one process, direct calls: the s=2 features gradient 8-13%
    // faster than with r*s zeros, whose rows start 16 bytes off a line;
    // s=4 unchanged).
    const int64_t reach = g.r * g.s;
    constexpr int64_t line = int64_t(kCacheLine / sizeof(acc_t));
    const int64_t pad = (reach + line - 1) / line * line;
    const int64_t padded = (pad + g.OW + reach + line - 1) / line * line;
    ScratchVector<acc_t> products(tile * g.k * padded, acc_t(0));
    ScratchVector<acc_t> spread(g.OW);  // E
    ScratchVector<acc_t> row(widened ? g.W : 0);
    std::vector<const acc_t*> grad_bases(tile);
    std::vector<const acc_t*> kernel_bases(g.k);
    std::vector<acc_t*> out(kMaxLhsRows * kMaxRhsRows);
    std::vector<acc_t*> destinations(g.kk);
    auto kernels = source.loader();
    // Kernel row of tap (dy, dx), output row (y + r - dy)*s + a, for input
    // row y of the band starting at y0.
    auto kernel_row = [&](int64_t y0, int64_t y, int64_t dy, int64_t a,
                          int64_t dx) {
      return kernel_rows.data() +
             (((y - y0) * row_terms + dy * g.s + a) * g.k + dx) * g.ow_stride;
    };
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      const int64_t group_channels = g.group_channels(band.group);
      if (group_channels == 0) continue;
      const int64_t first_block = band.y0 - g.r;
      const int64_t block_begin = std::max<int64_t>(0, first_block);
      const int64_t block_end = std::min(g.H, band.y1 + g.r);
      kernels.prepare(band, block_begin * g.s, block_end * g.s);
      // Each output row the band reads, all its taps at once: tap (dy, dx)
      // of row block*s + a is read by input row y = block + dy - r.
      for (int64_t block = block_begin; block < block_end; ++block) {
        for (int64_t a = 0; a < g.s; ++a) {
          for (int64_t dy = 0; dy < g.k; ++dy) {
            const int64_t y = block + dy - g.r;
            const bool in_band = y >= band.y0 && y < band.y1;
            for (int64_t dx = 0; dx < g.k; ++dx) {
              destinations[dy * g.k + dx] =
                  in_band ? kernel_row(band.y0, y, dy, a, dx) : nullptr;
            }
          }
          kernels.load_row(band, block * g.s + a, destinations.data());
        }
      }
      for (int64_t c0 = 0; c0 < group_channels; c0 += tile) {
        const int64_t channels = std::min(tile, group_channels - c0);
        const int64_t c_first = band.group * g.Cg + c0;
        // The dY row of channel ci, output row block `block`, sub-row a.
        auto grad_row = [&](int64_t ci, int64_t block,
                            int64_t a) -> const acc_t* {
          if constexpr (widened) {
            return grad_rows.data() +
                   ((ci * window + block - first_block) * g.s + a) * g.OW;
          } else {
            return g.output_row(grad_output, band.n, c_first + ci,
                                block * g.s + a);
          }
        };
        if constexpr (widened) {
          for (int64_t ci = 0; ci < channels; ++ci) {
            for (int64_t block = block_begin; block < block_end; ++block) {
              for (int64_t a = 0; a < g.s; ++a) {
                widen_row(g.output_row(grad_output, band.n, c_first + ci,
                                       block * g.s + a),
                          g.OW, const_cast<acc_t*>(grad_row(ci, block, a)));
              }
            }
          }
        }
        for (int64_t y = band.y0; y < band.y1; ++y) {
          const TapRange dys = taps_reaching(g, y);
          const int64_t terms = (dys.hi - dys.lo) * g.s;
          for (int64_t ci = 0; ci < channels; ++ci) {
            grad_bases[ci] = grad_row(ci, y + g.r - dys.lo, 0);
          }
          for (int64_t dx = 0; dx < g.k; ++dx) {
            kernel_bases[dx] = kernel_row(band.y0, y, dys.lo, 0, dx);
          }
          for_each_dx_tile(g.k, [&](int64_t dx0, int64_t cols) {
            for (int64_t p = 0; p < channels; ++p) {
              for (int64_t q = 0; q < cols; ++q) {
                out[p * cols + q] =
                    products.data() + (p * g.k + dx0 + q) * padded + pad;
              }
            }
            simd.sum_products({grad_bases.data(), grad_offsets.data(),
                               kernel_bases.data() + dx0,
                               kernel_offsets.data(), out.data(), channels,
                               cols, terms, g.OW, false});
          });
          for (int64_t ci = 0; ci < channels; ++ci) {
            // E[r*s + u] = sum_dx F_dx[u + (r - dx)*s], then
            // dX[y][x] = sum_{b < s} E[(x + r)*s + b].
            simd.shifted_sum(products.data() + ci * g.k * padded + pad, g.k,
                             padded, g.OW, reach, g.s, spread.data());
            scalar_t* dst =
                g.feature_row(grad_features, band.n, c_first + ci, y);
            if constexpr (widened) {
              simd.downsample_row(spread.data(), g.W, g.s, row.data());
              narrow_row(row.data(), g.W, dst);
            } else {
              simd.downsample_row(spread.data(), g.W, g.s, dst);
            }
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Gradient with respect to the reassembly kernels, dK: a sum over the
// channels of a group, kChannelBlock channels (the terms) per sum_products()
// call. `sink` makes, once per thread, a writer that is handed the band's
// dK rows (all k*k taps of one output row at a time, in row order; see
// StoredKernelGrads and DLU's SampledKernelGrads), and asks for bands cut
// from blocks of kBandAlignment rows (Banding's `align`).

template <typename scalar_t, typename KernelGradSink>
void kernels_grad_kernel(const Geometry& g, const scalar_t* grad_output,
                         const scalar_t* features, KernelGradSink& sink) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool widened = !std::is_same_v<scalar_t, acc_t>;
  const Banding bands(g, kBackwardScratchRows * g.s * g.kk * g.ow_stride *
                          static_cast<int64_t>(sizeof(acc_t)),
                      at::get_num_threads(), BandLayout::kThreadParts,
                      KernelGradSink::kBandAlignment);
  sink.start(bands);
  const int64_t B = bands.rows;
  const int64_t window = B + g.k - 1;  // input rows read by a band
  const int64_t block = std::min(kChannelBlock, g.Cg);
  const auto sum_products = simd_kernels<acc_t>().sum_products;
  const int64_t lhs_rows = simd_kernels<acc_t>().max_lhs_rows;
  const int64_t pair = rows_per_group(g, lhs_rows);
  // The terms are the block's channels: the dY row of channel ci is
  // channel 0's plus ci planes (read in place) or ci rows (widened, see
  // grad_rows below); its feature row is channel 0's plus ci windows.
  std::vector<int64_t> grad_offsets(block), feature_offsets(block);
  for (int64_t ci = 0; ci < block; ++ci) {
    grad_offsets[ci] = ci * (widened ? g.OW : g.OH * g.OW);
    feature_offsets[ci] = ci * window * g.span;
  }
  at::parallel_for(0, bands.count, 1, [&](int64_t begin, int64_t end) {
    // dK rows of the band [y - y0][a][tap]; upsampled feature rows
    // [channel][window row]; for half types the block's dY rows widened,
    // [y - y0][a][channel]; the rows of channel 0: output-gradient rows
    // [y - y0][a] and shifted feature rows [dx] of the current (y, dy).
    ScratchVector<acc_t> grad_kernel_rows(B * g.s * g.kk * g.ow_stride);
    ScratchVector<acc_t> feature_rows(block * window * g.span);
    ScratchVector<acc_t> grad_rows(widened ? block * B * g.s * g.OW : 0);
    ScratchVector<acc_t> widened_row(widened ? g.W : 0);
    std::vector<const acc_t*> grad_bases(B * g.s);
    std::vector<const acc_t*> feature_bases(g.k);
    std::vector<acc_t*> out(kMaxLhsRows * kMaxRhsRows);
    std::vector<const acc_t*> taps(g.kk);
    auto writer = sink.writer();
    for (int64_t unit = begin; unit < end; ++unit) {
      const Band band = bands[unit];
      const int64_t group_channels = g.group_channels(band.group);
      writer.begin(unit, band);
      for (int64_t c0 = 0; c0 < group_channels; c0 += block) {
        const int64_t channels = std::min(block, group_channels - c0);
        for (int64_t ci = 0; ci < channels; ++ci) {
          const int64_t c = band.group * g.Cg + c0 + ci;
          load_feature_rows(g, features, band, c, widened_row.data(),
                            feature_rows.data() + ci * window * g.span);
          if constexpr (widened) {
            for (int64_t y = band.y0; y < band.y1; ++y) {
              for (int64_t a = 0; a < g.s; ++a) {
                const int64_t slot = ((y - band.y0) * g.s + a) * block + ci;
                widen_row(g.output_row(grad_output, band.n, c, y * g.s + a),
                          g.OW, grad_rows.data() + slot * g.OW);
              }
            }
          }
        }
        for (int64_t R = 0; R < (band.y1 - band.y0) * g.s; ++R) {
          if constexpr (widened) {
            grad_bases[R] = grad_rows.data() + R * block * g.OW;
          } else {
            grad_bases[R] = g.output_row(grad_output, band.n,
                                         band.group * g.Cg + c0,
                                         band.y0 * g.s + R);
          }
        }
        for (int64_t y = band.y0; y < band.y1; y += pair) {
          const RowGroup group(g, band, y, std::min(pair, band.y1 - y));
          for (int64_t m = group.window_lo; m < group.window_hi; ++m) {
            // The output rows of the group that read window row m: input
            // rows y0 + i, i in [i0, i1), sub-rows a, as lhs rows
            // R = (y0 + i - band.y0)*s + a in [first, last); row R reads
            // it with tap row dy = m - R/s.
            const auto [first, last] = group.rows_reading(m);
            for (int64_t dx = 0; dx < g.k; ++dx) {
              feature_bases[dx] = feature_rows.data() + m * g.span + g.s * dx;
            }
            for (int64_t R0 = first; R0 < last; R0 += lhs_rows) {
              const int64_t rows = std::min(lhs_rows, last - R0);
              for_each_dx_tile(g.k, [&](int64_t dx0, int64_t cols) {
                for (int64_t p = 0; p < rows; ++p) {
                  const int64_t R = R0 + p, dy = m - R / g.s;
                  for (int64_t q = 0; q < cols; ++q) {
                    out[p * cols + q] = grad_kernel_rows.data() +
                        (R * g.kk + dy * g.k + dx0 + q) * g.ow_stride;
                  }
                }
                sum_products({grad_bases.data() + R0, grad_offsets.data(),
                              feature_bases.data() + dx0,
                              feature_offsets.data(), out.data(), rows, cols,
                              channels, g.OW, c0 > 0});
              });
            }
          }
        }
      }
      for (int64_t y = band.y0; y < band.y1; ++y) {
        const TapRange dys = taps_reading_from(g, y);
        for (int64_t a = 0; a < g.s; ++a) {
          const int64_t row0 = ((y - band.y0) * g.s + a) * g.kk;
          for (int64_t tap = 0; tap < g.kk; ++tap) {
            acc_t* row = grad_kernel_rows.data() + (row0 + tap) * g.ow_stride;
            const int64_t dy = tap / g.k;
            if (group_channels == 0 || dy < dys.lo || dy >= dys.hi) {
              // no channel, or the tap reads only the zero border
              std::fill(row, row + g.OW, acc_t(0));
            }
            taps[tap] = row;
          }
          writer.store(band, y * g.s + a, taps.data());
        }
      }
      writer.end(unit, band);
    }
  });
  sink.finish(bands);
}


// Checks shared by the entry points: a CPU tensor of `name`, 4-D, of one of
// the supported floating types and of `dtype`.
inline void check_tensor(const char* op, const char* name,
                         const at::Tensor& t, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "dlu_mm._ext ", op, ": ", name,
              " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == 4, "dlu_mm._ext ", op, ": ", name,
              " must be 4-D, got shape ", t.sizes());
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              "dlu_mm._ext ", op, ": tensors must be float32, float64, "
              "float16 or bfloat16, got ", dtype);
  TORCH_CHECK(t.scalar_type() == dtype, "dlu_mm._ext ", op, ": ", name,
              " must have dtype ", dtype, ", got ", t.scalar_type());
}

inline void check_shape(const char* op, const char* name, const at::Tensor& t,
                        const std::vector<int64_t>& expected,
                        const char* layout) {
  TORCH_CHECK(t.sizes() == at::IntArrayRef(expected), "dlu_mm._ext ", op,
              ": ", name, " must have shape ", layout, " = ",
              at::IntArrayRef(expected), ", got ", t.sizes());
}

inline void check_kernel_args(const char* op, int64_t kernel_size,
                              int64_t group_size, int64_t scale_factor) {
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1, "dlu_mm._ext ", op,
              ": kernel_size must be a positive odd integer, got ",
              kernel_size);
  TORCH_CHECK(group_size >= 1, "dlu_mm._ext ", op,
              ": group_size must be >= 1, got ", group_size);
  TORCH_CHECK(scale_factor >= 1, "dlu_mm._ext ", op,
              ": scale_factor must be >= 1, got ", scale_factor);
}

}  // namespace dlu_mm
