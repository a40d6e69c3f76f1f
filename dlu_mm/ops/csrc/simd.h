/*
 * SIMD primitives of the CPU kernels (dlu_mm._ext), written with GNU vector
 * extensions and compiled three times -- for AVX-512 (x86-64-v4 features),
 * AVX2 + FMA (x86-64-v3) and the baseline instruction set -- with the
 * widest one this CPU runs chosen once at run time. The instruction sets
 * are named by their features (GCC >= 5 and clang accept these target
 * attributes; the "x86-64-v4" names need GCC >= 12).
 *
 *   sum_products():   out[p][q][j] (+)= sum_t lhs[p][t][j] * rhs[q][t][j]
 *                     (all reassembly directions reduce to this; at s = 4
 *                     the forward's blocks interleave 4 column phases as
 *                     they store, RowProducts::interleave);
 *   upsample_row() / downsample_row(): nearest widening of a feature row
 *                     and the matching sums of s neighbours;
 *   deinterleave_row(): a row's s column phases as rows of their own;
 *   sample_row():     DLU's bilinear kernel sampling of one kernel-space tap
 *                     at a row of sampling points;
 *   sampling_grads(): its backward for a row of pixels (coordinates'
 *                     gradient, kernel-space gradient scattered into a
 *                     partial sum), taps innermost.
 */
#pragma once

#include <ATen/OpMathType.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dlu_mm {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DLU_X86_DISPATCH 1
#define DLU_TARGET_AVX2                                                    \
  __attribute__((target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe")))
#define DLU_TARGET_AVX512                                                  \
  __attribute__((target("avx512f,avx512bw,avx512cd,avx512dq,avx512vl,"    \
                        "avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c,movbe")))
#endif

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The widest instruction set this CPU runs (checked feature by feature).
inline Isa cpu_isa() {
#ifdef DLU_X86_DISPATCH
  static const Isa isa = [] {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") &&
                      __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("bmi2");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vl");
    return avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kBaseline;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

// ---------------------------------------------------------------------------
// SIMD primitives, written with GNU vector extensions.

// For p < P, q < Q and j < n:
//   out[p*Q + q][j] (+)= sum_{t < terms} lhs[p][lhs_offsets[t] + j]
//                                        * rhs[q][rhs_offsets[t] + j]
// ("+=" when accumulate), the terms added in order of t. P <= kMaxLhsRows,
// Q <= kMaxRhsRows. A term's row is a row base plus an offset shared by
// all rows (offsets in elements, negative ones too): every caller's rows
// are laid out alike, and one offset load per term and side, with the
// bases in registers, replaces P + Q loads from a table of row pointers
// (a hand-written 4 x 5 block on data in L1, one core of this host's
// Xeon: 55-69 -> 78-79 GMAC/s; sum_products itself on the forward's split
// blocks 55-64 -> 61-67; direct calls of the ops, alternated builds, s=2:
// forward 1-8%, features gradient 8-11%, kernels gradient 2-5% faster).
// Split (P even): the lhs rows are two halves with term ranges of their
// own, the first half p < P/2 summing terms [0, shared_end), the second
// p >= P/2 terms [shared_begin, terms); the offsets of terms outside a
// row's range are never added to its base (its rows there need not
// exist). (Two output rows whose windows overlap by the shared terms,
// computed as one block: see the forward pass.)
// Interleave S = 4 (P = 4, not accumulating): the lhs rows are the phases
// b < 4 of one output row, and the sums of lhs row b, rhs row q go to the
// columns j*4 + b of out[q] (rows of 4n): the forward pass in phase space
// (forward_phases_kernel).
template <typename acc_t>
struct RowProducts {
  const acc_t* const* lhs;     // P row bases
  const int64_t* lhs_offsets;  // per term
  const acc_t* const* rhs;     // Q row bases
  const int64_t* rhs_offsets;  // per term
  acc_t* const* out;
  int64_t P, Q, terms, n;
  bool accumulate;
  bool split = false;
  int64_t shared_begin = 0, shared_end = 0;
  // Store the sums with non-temporal (streaming) stores where the
  // instruction set and the address allow (AVX-512, 64-byte aligned, not
  // accumulating), else normal ones; see streams_output().
  bool stream = false;
  int interleave = 1;  // 1 or 4
};

constexpr int64_t kMaxLhsRows = 4;
constexpr int64_t kMaxRhsRows = 5;

template <typename acc_t, int kBytes>
struct Vec {
  typedef acc_t type __attribute__((vector_size(kBytes)));
};

// Adds terms [t_begin, t_end) to the sums of lhs rows [PB, PE) of columns
// [j0, j0 + V * lanes). The small loops are unrolled explicitly so that the
// arrays live in registers (GCC otherwise keeps them on the stack in the
// AVX2 build).
template <typename acc_t, int kBytes, int P, int Q, int V, int PB, int PE>
inline __attribute__((always_inline)) void chunk_terms(
    const RowProducts<acc_t>& rp, int64_t j0, int64_t t_begin,
    int64_t t_end, typename Vec<acc_t, kBytes>::type (&acc)[P][Q][V]) {
  using vec = typename Vec<acc_t, kBytes>::type;
  constexpr int lanes = kBytes / sizeof(acc_t);
  const acc_t* left_rows[P];
  const acc_t* right_rows[Q];
  #pragma GCC unroll 8
  for (int p = PB; p < PE; ++p) left_rows[p] = rp.lhs[p] + j0;
  #pragma GCC unroll 8
  for (int q = 0; q < Q; ++q) right_rows[q] = rp.rhs[q] + j0;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int64_t left_offset = rp.lhs_offsets[t];
    const int64_t right_offset = rp.rhs_offsets[t];
    vec right[Q][V];
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      const acc_t* row = right_rows[q] + right_offset;
      #pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        __builtin_memcpy(&right[q][v], row + v * lanes, kBytes);
      }
    }
    #pragma GCC unroll 8
    for (int p = PB; p < PE; ++p) {
      const acc_t* row = left_rows[p] + left_offset;
      // The same row's next chunk, one chunk ahead of its loads: the lhs
      // rows (kernel rows, output-gradient rows) come from L2 or memory,
      // more of them at once than the hardware prefetchers follow.
      __builtin_prefetch(row + V * lanes);
      #pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        vec left;
        __builtin_memcpy(&left, row + v * lanes, kBytes);
        #pragma GCC unroll 8
        for (int q = 0; q < Q; ++q) acc[p][q][v] += left * right[q][v];
      }
    }
  }
}

// Lane shuffles of a vector type: zip(a, b) = (a0 b0 a1 b1 ..., the same
// of the upper halves); unzip(a, b) = (a0 a2 ... b0 b2 ..., a1 a3 ...
// b1 b3 ...), its inverse.
template <typename acc_t, int kBytes>
struct Shuffles {
  using vec = typename Vec<acc_t, kBytes>::type;
  using index_t = std::conditional_t<sizeof(acc_t) == 4, int32_t, int64_t>;
  typedef index_t mask __attribute__((vector_size(kBytes)));
  static constexpr int lanes = kBytes / sizeof(acc_t);

  static inline __attribute__((always_inline)) mask zip_mask(int half) {
    mask m;
    for (int i = 0; i < lanes; ++i) {
      m[i] = (i % 2 ? lanes : 0) + half * lanes / 2 + i / 2;
    }
    return m;
  }
  static inline __attribute__((always_inline)) mask unzip_mask(int odd) {
    mask m;
    for (int i = 0; i < lanes; ++i) m[i] = 2 * i + odd;
    return m;
  }
  static inline __attribute__((always_inline)) void zip(vec a, vec b,
                                                        vec& lo, vec& hi) {
    lo = __builtin_shuffle(a, b, zip_mask(0));
    hi = __builtin_shuffle(a, b, zip_mask(1));
  }
  static inline __attribute__((always_inline)) void unzip(vec a, vec b,
                                                          vec& even,
                                                          vec& odd) {
    even = __builtin_shuffle(a, b, unzip_mask(0));
    odd = __builtin_shuffle(a, b, unzip_mask(1));
  }
  // out: the 4 vectors of columns x*4 + b (x over in's lanes), in[b] the
  // phase-b values.
  static inline __attribute__((always_inline)) void interleave4(
      const vec (&in)[4], vec (&out)[4]) {
    vec t0, t1, t2, t3;
    zip(in[0], in[2], t0, t1);  // phases 0 and 2, alternating
    zip(in[1], in[3], t2, t3);
    zip(t0, t2, out[0], out[1]);
    zip(t1, t3, out[2], out[3]);
  }
  // The inverse: in the 4 vectors of columns x*4 + b, out[b] phase b.
  static inline __attribute__((always_inline)) void deinterleave4(
      const vec (&in)[4], vec (&out)[4]) {
    vec e0, o0, e1, o1;
    unzip(in[0], in[1], e0, o0);  // phases 0 and 2 / 1 and 3
    unzip(in[2], in[3], e1, o1);
    unzip(e0, e1, out[0], out[2]);
    unzip(o0, o1, out[1], out[3]);
  }
};

// A non-temporal store of one 64-byte vector to 64-byte aligned dst (AVX-512
// builds only: the instruction is written out, as GCC's intrinsic cannot be
// inlined into these target-generic templates). Such stores bypass the
// caches and are weakly ordered: the op ends its threads' work with
// stream_fence().
template <typename vec>
inline __attribute__((always_inline)) void stream_store(void* dst,
                                                        const vec& value) {
  static_assert(sizeof(vec) == 64, "64-byte vectors only");
  asm volatile("vmovntps %1, %0"
               : "=m"(*static_cast<vec*>(dst))
               : "v"(value));
}

// Orders this thread's non-temporal stores before its later stores (and
// before the end of a parallel region that other threads then read).
inline void stream_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

// Stores a sum to dst (64-byte vectors aligned to 64 bytes streamed where
// asked, see RowProducts::stream).
template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void store_sum(
    const RowProducts<acc_t>& rp, acc_t* dst,
    const typename Vec<acc_t, kBytes>::type& sum) {
  if constexpr (kBytes == 64) {
    if (rp.stream && (reinterpret_cast<uintptr_t>(dst) & 63) == 0) {
      stream_store(dst, sum);
      return;
    }
  }
  __builtin_memcpy(dst, &sum, kBytes);
}

// The sums of columns [j0, j0 + V * lanes) of a P x Q block, every row's
// terms in order (a split block's halves over their own term ranges).
template <typename acc_t, int kBytes, int P, int Q, int V, bool Split>
inline __attribute__((always_inline)) void chunk_sums(
    const RowProducts<acc_t>& rp, int64_t j0,
    typename Vec<acc_t, kBytes>::type (&acc)[P][Q][V]) {
  if constexpr (Split) {
    constexpr int half = P / 2;
    chunk_terms<acc_t, kBytes, P, Q, V, 0, half>(rp, j0, 0, rp.shared_begin,
                                                 acc);
    chunk_terms<acc_t, kBytes, P, Q, V, 0, P>(rp, j0, rp.shared_begin,
                                              rp.shared_end, acc);
    chunk_terms<acc_t, kBytes, P, Q, V, half, P>(rp, j0, rp.shared_end,
                                                 rp.terms, acc);
  } else {
    chunk_terms<acc_t, kBytes, P, Q, V, 0, P>(rp, j0, 0, rp.terms, acc);
  }
}

// Columns [j0, j0 + V * lanes) of a P x Q block, summed in registers.
template <typename acc_t, int kBytes, int P, int Q, int V, bool Split,
          int S = 1>
inline __attribute__((always_inline)) void products_chunk(
    const RowProducts<acc_t>& rp, int64_t j0) {
  using vec = typename Vec<acc_t, kBytes>::type;
  constexpr int lanes = kBytes / sizeof(acc_t);
  vec acc[P][Q][V] = {};
  chunk_sums<acc_t, kBytes, P, Q, V, Split>(rp, j0, acc);
  if constexpr (S == 4) {  // phases b to the columns j*4 + b
    static_assert(P == 4, "interleaved blocks hold the 4 phases of a row");
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      #pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        const vec phases[4] = {acc[0][q][v], acc[1][q][v], acc[2][q][v],
                               acc[3][q][v]};
        vec columns[4];
        Shuffles<acc_t, kBytes>::interleave4(phases, columns);
        acc_t* dst = rp.out[q] + (j0 + v * lanes) * 4;
        #pragma GCC unroll 4
        for (int b = 0; b < 4; ++b) {
          store_sum<acc_t, kBytes>(rp, dst + b * lanes, columns[b]);
        }
      }
    }
    return;
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
        store_sum<acc_t, kBytes>(rp, dst, acc[p][q][v]);
      }
    }
  }
}

// One column j of a P x Q block.
template <typename acc_t, int P, int Q, bool Split, int S = 1>
inline __attribute__((always_inline)) void products_column(
    const RowProducts<acc_t>& rp, int64_t j) {
  acc_t acc[P][Q] = {};
  for (int64_t t = 0; t < rp.terms; ++t) {
    #pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      if (Split && (p < P / 2 ? t >= rp.shared_end : t < rp.shared_begin)) {
        continue;
      }
      const acc_t left = rp.lhs[p][rp.lhs_offsets[t] + j];
      #pragma GCC unroll 8
      for (int q = 0; q < Q; ++q) {
        acc[p][q] += left * rp.rhs[q][rp.rhs_offsets[t] + j];
      }
    }
  }
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      if constexpr (S == 4) {
        rp.out[q][j * 4 + p] = acc[p][q];
        continue;
      }
      acc_t* dst = rp.out[p * Q + q] + j;
      *dst = rp.accumulate ? *dst + acc[p][q] : acc[p][q];
    }
  }
}

// The columns [j0, n) of an accumulating P x Q block (n - lanes < j0 <
// n): the sums of the last full vector [n - lanes, n), of the same terms
// in the same order as products_column(), added to out only in the lanes
// from j0 on.
template <typename acc_t, int kBytes, int P, int Q, bool Split>
inline __attribute__((always_inline)) void products_tail(
    const RowProducts<acc_t>& rp, int64_t j0) {
  using vec = typename Vec<acc_t, kBytes>::type;
  using index_t = std::conditional_t<sizeof(acc_t) == 4, int32_t, int64_t>;
  typedef index_t lane_t __attribute__((vector_size(kBytes)));
  constexpr int lanes = kBytes / sizeof(acc_t);
  const int64_t start = rp.n - lanes;
  vec acc[P][Q][1] = {};
  chunk_sums<acc_t, kBytes, P, Q, 1, Split>(rp, start, acc);
  lane_t lane;
  for (int i = 0; i < lanes; ++i) lane[i] = i;
  const lane_t fresh = lane >= static_cast<index_t>(j0 - start);
  #pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    #pragma GCC unroll 8
    for (int q = 0; q < Q; ++q) {
      acc_t* dst = rp.out[p * Q + q] + start;
      vec old;
      __builtin_memcpy(&old, dst, kBytes);
      const vec sum = fresh ? old + acc[p][q][0] : old;
      __builtin_memcpy(dst, &sum, kBytes);
    }
  }
}

template <typename acc_t, int kBytes, int P, int Q, bool Split = false,
          int S = 1>
inline __attribute__((always_inline)) void products_block(
    const RowProducts<acc_t>& call) {
  // A local copy: the sums are stored with memcpy, which may alias any
  // object the compiler cannot see the whole of, so reading the caller's
  // struct would reload its fields (flags, row bases, offset tables) from
  // memory after every store.
  const RowProducts<acc_t> rp = call;
  constexpr int lanes = kBytes / sizeof(acc_t);
  // Registers (32 with AVX-512, else 16, a few kept free) for the P*Q*V sums
  // and the Q*V rhs vectors of a term.
  constexpr int registers = kBytes == 64 ? 28 : 14;
  constexpr int V = std::clamp(registers / (Q * (P + 1)), 1, 4);
  int64_t j0 = 0;
  for (; j0 + V * lanes <= rp.n; j0 += V * lanes) {
    products_chunk<acc_t, kBytes, P, Q, V, Split, S>(rp, j0);
  }
  for (; j0 + lanes <= rp.n; j0 += lanes) {
    products_chunk<acc_t, kBytes, P, Q, 1, Split, S>(rp, j0);
  }
  if (j0 < rp.n && rp.n >= lanes && !rp.accumulate) {
    // Recompute the last full vector: the overlapping columns get the same
    // values from the same operations, so this is exact.
    products_chunk<acc_t, kBytes, P, Q, 1, Split, S>(rp, rp.n - lanes);
    return;
  }
  if constexpr (S == 1) {
    if (j0 < rp.n && rp.n >= lanes) {
      // Accumulating: the last full vector's sums, added only to the
      // columns from j0 on (the ones before hold this call's sums already).
      products_tail<acc_t, kBytes, P, Q, Split>(rp, j0);
      return;
    }
  }
  for (; j0 < rp.n; ++j0) products_column<acc_t, P, Q, Split, S>(rp, j0);
}

template <typename acc_t, int kBytes, int P, bool Split = false, int S = 1>
inline __attribute__((always_inline)) void products_lhs_rows(
    const RowProducts<acc_t>& rp) {
  static_assert(kMaxRhsRows == 5, "update the cases below");
  switch (rp.Q) {
    case 1: return products_block<acc_t, kBytes, P, 1, Split, S>(rp);
    case 2: return products_block<acc_t, kBytes, P, 2, Split, S>(rp);
    case 3: return products_block<acc_t, kBytes, P, 3, Split, S>(rp);
    case 4: return products_block<acc_t, kBytes, P, 4, Split, S>(rp);
    case 5: return products_block<acc_t, kBytes, P, 5, Split, S>(rp);
  }
  TORCH_CHECK(false, "dlu_mm._ext: unsupported product block Q=", rp.Q);
}

template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void products_any(
    const RowProducts<acc_t>& rp) {
  static_assert(kMaxLhsRows == 4, "update the cases below");
  if (rp.interleave == 4) {
    TORCH_CHECK(rp.P == 4, "dlu_mm._ext: unsupported interleaved block P=",
                rp.P);
    return products_lhs_rows<acc_t, kBytes, 4, false, 4>(rp);
  }
  if (rp.split) {  // two halves of P/2 lhs rows
    switch (rp.P) {
      case 2: return products_lhs_rows<acc_t, kBytes, 2, true>(rp);
      case 4: return products_lhs_rows<acc_t, kBytes, 4, true>(rp);
    }
    TORCH_CHECK(false, "dlu_mm._ext: unsupported split block P=", rp.P);
  }
  switch (rp.P) {
    case 1: return products_lhs_rows<acc_t, kBytes, 1>(rp);
    case 2: return products_lhs_rows<acc_t, kBytes, 2>(rp);
    case 3: return products_lhs_rows<acc_t, kBytes, 3>(rp);
    case 4: return products_lhs_rows<acc_t, kBytes, 4>(rp);
  }
  TORCH_CHECK(false, "dlu_mm._ext: unsupported product block P=", rp.P);
}

// dst[col*S + b] = x[col] for b < S: S a compile-time constant, so that
// the vectoriser turns it into lane permutations.
template <typename acc_t, int S>
inline __attribute__((always_inline)) void repeat_each(
    const acc_t* __restrict x, int64_t W, acc_t* __restrict dst) {
  for (int64_t col = 0; col < W; ++col) {
    #pragma GCC unroll 8
    for (int b = 0; b < S; ++b) dst[col * S + b] = x[col];
  }
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
  } else if (s == 2) {  // the common cases, vectorised as lane permutations
    repeat_each<acc_t, 2>(x, W, dst);
  } else if (s == 4) {
    repeat_each<acc_t, 4>(x, W, dst);
  } else if (s == 8) {
    repeat_each<acc_t, 8>(x, W, dst);
  } else {
    for (int64_t col = 0; col < W; ++col) {
      for (int64_t b = 0; b < s; ++b) dst[col * s + b] = x[col];
    }
  }
  std::fill(dst + s * W, dst + s * W + border, acc_t(0));
}

// dst[j] = src[j], j < n; with `stream` (AVX-512 builds), the part of dst
// from its first 64-byte boundary to its last is written with
// non-temporal stores (the forward's output rows that do not start on a
// cache line, copied from an aligned scratch row; see forward_kernel).
template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void copy_row_impl(
    const acc_t* __restrict src, int64_t n, acc_t* __restrict dst,
    bool stream) {
  int64_t j = 0;
  if constexpr (kBytes == 64) {
    if (stream) {
      using vec = typename Vec<acc_t, kBytes>::type;
      constexpr int lanes = kBytes / sizeof(acc_t);
      const uintptr_t misaligned = reinterpret_cast<uintptr_t>(dst) & 63;
      if (misaligned % sizeof(acc_t) == 0) {
        const int64_t head = std::min<int64_t>(
            n, misaligned ? (64 - misaligned) / sizeof(acc_t) : 0);
        for (; j < head; ++j) dst[j] = src[j];
        for (; j + lanes <= n; j += lanes) {
          vec v;
          __builtin_memcpy(&v, src + j, kBytes);
          stream_store(dst + j, v);
        }
      }
    }
  }
  for (; j < n; ++j) dst[j] = src[j];
}

// The phases of a row: dst[b*stride + x] = src[x*s + b] for b < s, x < W
// (the forward pass's kernel rows in phase space; vectorised at s = 4).
template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void deinterleave_row_impl(
    const acc_t* __restrict src, int64_t W, int64_t s,
    acc_t* __restrict dst, int64_t stride) {
  using shuffles = Shuffles<acc_t, kBytes>;
  using vec = typename shuffles::vec;
  constexpr int lanes = shuffles::lanes;
  int64_t x = 0;
  for (; s == 4 && x + lanes <= W; x += lanes) {
    vec in[4], out[4];
    #pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) {
      __builtin_memcpy(&in[b], src + x * 4 + b * lanes, kBytes);
    }
    shuffles::deinterleave4(in, out);
    #pragma GCC unroll 4
    for (int b = 0; b < 4; ++b) {
      __builtin_memcpy(dst + b * stride + x, &out[b], kBytes);
    }
  }
  for (; x < W; ++x) {
    for (int64_t b = 0; b < s; ++b) dst[b * stride + x] = src[x * s + b];
  }
}

// dst[x] = sum_{b < S} src[x*S + b], added left to right, S a compile-time
// constant (vectorised).
template <typename acc_t, int S>
inline __attribute__((always_inline)) void sum_each(
    const acc_t* __restrict src, int64_t W, acc_t* __restrict dst) {
  for (int64_t x = 0; x < W; ++x) {
    acc_t sum = src[x * S];
    #pragma GCC unroll 8
    for (int b = 1; b < S; ++b) sum += src[x * S + b];
    dst[x] = sum;
  }
}

// Sums of s neighbours: dst[x] = sum_{b < s} src[x*s + b], x < W.
template <typename acc_t>
inline __attribute__((always_inline)) void downsample_row_impl(
    const acc_t* __restrict src, int64_t W, int64_t s, acc_t* __restrict dst) {
  if (s == 1) {
    std::copy(src, src + W, dst);
  } else if (s == 2) {
    sum_each<acc_t, 2>(src, W, dst);
  } else if (s == 4) {
    sum_each<acc_t, 4>(src, W, dst);
  } else if (s == 8) {
    sum_each<acc_t, 8>(src, W, dst);
  } else {
    for (int64_t x = 0; x < W; ++x) {
      acc_t sum = src[x * s];
      for (int64_t b = 1; b < s; ++b) sum += src[x * s + b];
      dst[x] = sum;
    }
  }
}

// dst[u] = sum_{i < count} rows[i*stride + u + shift0 - i*step], u < n,
// added in the order of i: k rows of products summed at their column
// shifts (the features gradient). Every index read must lie in the rows:
// the caller pads them with zeros.
template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void shifted_sum_impl(
    const acc_t* __restrict rows, int64_t count, int64_t stride, int64_t n,
    int64_t shift0, int64_t step, acc_t* __restrict dst) {
  using vec = typename Vec<acc_t, kBytes>::type;
  constexpr int lanes = kBytes / sizeof(acc_t);
  const acc_t* first = rows + shift0;
  const int64_t next = stride - step;  // from row i to row i + 1
  int64_t u = 0;
  for (; u + lanes <= n; u += lanes) {
    vec sum = {};
    for (int64_t i = 0; i < count; ++i) {
      vec v;
      __builtin_memcpy(&v, first + i * next + u, kBytes);
      sum += v;
    }
    __builtin_memcpy(dst + u, &sum, kBytes);
  }
  for (; u < n; ++u) {
    acc_t sum = acc_t(0);
    for (int64_t i = 0; i < count; ++i) sum += first[i * next + u];
    dst[u] = sum;
  }
}

// The sampling points of one output row of n pixels: the flat indices
// y*W + x of the four corners (00 = (y0, x0), 01 = (y0, x1), 10 = (y1, x0),
// 11 = (y1, x1)), their bilinear weights, and the fractions wx = x - x0,
// wy = y - y0.
template <typename acc_t>
struct SamplePoints {
  const int32_t* index[4];
  const acc_t* weight[4];
  const acc_t* wx;
  const acc_t* wy;
};

// DLU's backward for one output row of n pixels, with the kernel taps
// innermost ("tap-minor", kkp >= k*k values per pixel or cell, zero-padded
// to a multiple of the vector width): dk[j*kkp + t] is the gradient of tap
// t of pixel j's kernel, space[cell*kkp + t] the kernel space. For each
// pixel, with its corners c (indices into cells, weights w_c, fractions wx,
// wy, see SamplePoints):
//   gx[j] = sum_t dk[t] * ((1 - wy) (S01[t] - S00[t]) + wy (S11[t] - S10[t]))
//   gy[j] = sum_t dk[t] * ((1 - wx) (S10[t] - S00[t]) + wx (S11[t] - S01[t]))
//   partial[(index_c - shift)*kkp + t] += w_c * dk[t]   for the 4 corners,
// one corner after the other (corners clamped to the same cell add up).
template <typename acc_t>
struct SamplingGradRow {
  const acc_t* dk;
  const acc_t* space;
  const SamplePoints<acc_t>* points;
  int64_t n, kkp, shift;
  acc_t* partial;
  acc_t* gx;
  acc_t* gy;
};

// The sum of a vector's lanes, by halves (log2(lanes) adds, not lanes - 1
// dependent scalar ones).
template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) acc_t horizontal_sum(
    typename Vec<acc_t, kBytes>::type v) {
  if constexpr (kBytes == 2 * sizeof(acc_t)) {
    return v[0] + v[1];
  } else {
    using half = typename Vec<acc_t, kBytes / 2>::type;
    half low, high;
    __builtin_memcpy(&low, &v, kBytes / 2);
    __builtin_memcpy(&high, reinterpret_cast<const char*>(&v) + kBytes / 2,
                     kBytes / 2);
    return horizontal_sum<acc_t, kBytes / 2>(low + high);
  }
}

template <typename acc_t, int kBytes>
inline __attribute__((always_inline)) void sampling_grads_impl(
    const SamplingGradRow<acc_t>& r) {
  using vec = typename Vec<acc_t, kBytes>::type;
  constexpr int lanes = kBytes / sizeof(acc_t);
  const SamplePoints<acc_t>& p = *r.points;
  for (int64_t j = 0; j < r.n; ++j) {
    const acc_t* dk = r.dk + j * r.kkp;
    const acc_t* corner[4];
    acc_t* target[4];
    for (int c = 0; c < 4; ++c) {
      corner[c] = r.space + static_cast<int64_t>(p.index[c][j]) * r.kkp;
      target[c] =
          r.partial + (static_cast<int64_t>(p.index[c][j]) - r.shift) * r.kkp;
    }
    const acc_t wx = p.wx[j], wy = p.wy[j];
    vec ax = {}, ay = {};
    for (int64_t t = 0; t < r.kkp; t += lanes) {
      vec d, v[4];
      __builtin_memcpy(&d, dk + t, kBytes);
      for (int c = 0; c < 4; ++c) {
        __builtin_memcpy(&v[c], corner[c] + t, kBytes);
      }
      ax += d * ((acc_t(1) - wy) * (v[1] - v[0]) + wy * (v[3] - v[2]));
      ay += d * ((acc_t(1) - wx) * (v[2] - v[0]) + wx * (v[3] - v[1]));
      for (int c = 0; c < 4; ++c) {
        vec q;
        __builtin_memcpy(&q, target[c] + t, kBytes);
        q += p.weight[c][j] * d;
        __builtin_memcpy(target[c] + t, &q, kBytes);
      }
    }
    r.gx[j] = horizontal_sum<acc_t, kBytes>(ax);
    r.gy[j] = horizontal_sum<acc_t, kBytes>(ay);
  }
}

// The primitives for one instruction set.
template <typename acc_t>
struct SimdKernels {
  void (*sum_products)(const RowProducts<acc_t>&);
  void (*upsample_row)(const acc_t* x, int64_t W, int64_t s, int64_t border,
                       acc_t* u);
  void (*downsample_row)(const acc_t* src, int64_t W, int64_t s, acc_t* dst);
  void (*deinterleave_row)(const acc_t* src, int64_t W, int64_t s,
                           acc_t* dst, int64_t stride);
  void (*shifted_sum)(const acc_t* rows, int64_t count, int64_t stride,
                      int64_t n, int64_t shift0, int64_t step, acc_t* dst);
  void (*sampling_grads)(const SamplingGradRow<acc_t>&);
  void (*copy_row)(const acc_t* src, int64_t n, acc_t* dst, bool stream);
  // The most lhs rows (P) per sum_products() call whose sums, with
  // kMaxRhsRows rhs rows, stay in this instruction set's registers.
  int64_t max_lhs_rows;
};

#define DLU_DEFINE_SIMD_KERNELS(name, attributes, bytes, lhs_rows)          \
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
  attributes void name##_deinterleave_row(const acc_t* src, int64_t W,      \
                                          int64_t s, acc_t* dst,            \
                                          int64_t stride) {                 \
    deinterleave_row_impl<acc_t, bytes>(src, W, s, dst, stride);            \
  }                                                                         \
  template <typename acc_t>                                                 \
  attributes void name##_shifted_sum(const acc_t* rows, int64_t count,      \
                                     int64_t stride, int64_t n,             \
                                     int64_t shift0, int64_t step,          \
                                     acc_t* dst) {                          \
    shifted_sum_impl<acc_t, bytes>(rows, count, stride, n, shift0, step,    \
                                   dst);                                    \
  }                                                                         \
  template <typename acc_t>                                                 \
  attributes void name##_sampling_grads(const SamplingGradRow<acc_t>& r) {  \
    sampling_grads_impl<acc_t, bytes>(r);                                   \
  }                                                                         \
  template <typename acc_t>                                                 \
  attributes void name##_copy_row(const acc_t* src, int64_t n, acc_t* dst,  \
                                  bool stream) {                            \
    copy_row_impl<acc_t, bytes>(src, n, dst, stream);                       \
  }                                                                         \
  template <typename acc_t>                                                 \
  constexpr SimdKernels<acc_t> name##_kernels() {                           \
    return {&name##_sum_products<acc_t>, &name##_upsample_row<acc_t>,       \
            &name##_downsample_row<acc_t>, &name##_deinterleave_row<acc_t>, \
            &name##_shifted_sum<acc_t>,                                     \
            &name##_sampling_grads<acc_t>,                                  \
            &name##_copy_row<acc_t>,                                        \
            lhs_rows};                                                      \
  }

#ifdef DLU_X86_DISPATCH
DLU_DEFINE_SIMD_KERNELS(avx512, DLU_TARGET_AVX512, 64, 4)
DLU_DEFINE_SIMD_KERNELS(avx2, DLU_TARGET_AVX2, 32, 2)
#endif
DLU_DEFINE_SIMD_KERNELS(baseline, , 16, 2)

// The widest instruction set this CPU runs, chosen once.
template <typename acc_t>
inline const SimdKernels<acc_t>& simd_kernels() {
  static const SimdKernels<acc_t> kernels = [] {
    switch (cpu_isa()) {
#ifdef DLU_X86_DISPATCH
      case Isa::kAvx512: return avx512_kernels<acc_t>();
      case Isa::kAvx2: return avx2_kernels<acc_t>();
#endif
      default: return baseline_kernels<acc_t>();
    }
  }();
  return kernels;
}


// ---------------------------------------------------------------------------
// DLU's bilinear kernel sampling.


// dst[j] = sum_corners weight[c][j] * plane[index[c][j]], in the order 00,
// 01, 10, 11 (grid_sample's nw, ne, sw, se).
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void sample_row_impl(
    const scalar_t* __restrict plane, const SamplePoints<acc_t>& p, int64_t n,
    acc_t* __restrict dst) {
  const int32_t* __restrict i0 = p.index[0];
  const int32_t* __restrict i1 = p.index[1];
  const int32_t* __restrict i2 = p.index[2];
  const int32_t* __restrict i3 = p.index[3];
  const acc_t* __restrict w0 = p.weight[0];
  const acc_t* __restrict w1 = p.weight[1];
  const acc_t* __restrict w2 = p.weight[2];
  const acc_t* __restrict w3 = p.weight[3];
  for (int64_t j = 0; j < n; ++j) {
    dst[j] = w0[j] * static_cast<acc_t>(plane[i0[j]]) +
             w1[j] * static_cast<acc_t>(plane[i1[j]]) +
             w2[j] * static_cast<acc_t>(plane[i2[j]]) +
             w3[j] * static_cast<acc_t>(plane[i3[j]]);
  }
}

// All taps of one output row at once, from the kernel space tap-minor
// (space_t[cell*kkp + t], zero past kk): dst[t][j] for every t < kk whose
// dst[t] is not null, the same sums as sample_row(). Null where this
// instruction set has no such kernel (then sample_row() per tap).
template <typename acc_t>
using SampleTaps = void (*)(const acc_t* space_t, int64_t kkp,
                            const SamplePoints<acc_t>& p, int64_t n,
                            int64_t kk, acc_t* const* dst);

// dk[j*kkp + t] = taps[t][j] for t < kk, j < n: one output row's kernel
// gradient, tap rows in, tap-minor out (the padding taps [kk, kkp) are
// left as they are here, written as zeros by the vector kernels).
template <typename acc_t>
using TransposeTaps = void (*)(const acc_t* const* taps, int64_t kk,
                               int64_t n, int64_t kkp, acc_t* dk);

template <typename acc_t>
void transpose_taps_scalar(const acc_t* const* taps, int64_t kk, int64_t n,
                           int64_t kkp, acc_t* dk) {
  for (int64_t t = 0; t < kk; ++t) {
    for (int64_t j = 0; j < n; ++j) dk[j * kkp + t] = taps[t][j];
  }
}

// Where one output row's pixels sample the kernel space (written by
// locate_row()): for pixel j, the four corner cells and their weights, the
// fractions wx, wy and the clamp gates (SamplePoints reads the first six).
template <typename acc_t>
struct PointRow {
  int32_t* index[4];
  acc_t* weight[4];
  acc_t* wx;
  acc_t* wy;
  acc_t* gate_x;
  acc_t* gate_y;
};

// The sampling points of pixels [0, m) of an output row, m = n rounded down
// to whole vectors (returned); the rest is left to the caller. Pixel j
// samples at (px, py) = (column[j] + ox[source[j]], y + oy[source[j]]),
// each clamped to [0, W-1] / [0, H-1] with gate 1 strictly inside and 0 on
// or beyond the border; x0 = trunc(px), x1 = min(x0 + 1, W - 1), wx = px -
// x0 (y alike); weights (1-wy)(1-wx), (1-wy)wx, wy(1-wx), wy*wx of the
// corners y0*W + x0, y0*W + x1, y1*W + x0, y1*W + x1 -- the same
// operations as the scalar loop of SamplingRows, so the same values.
// rows[0] / rows[1] are lowered / raised to the least y0 / greatest y1.
// Null where this instruction set has no such kernel.
template <typename acc_t>
using LocateRow = int64_t (*)(const acc_t* ox, const acc_t* oy,
                              const int32_t* source, const acc_t* column,
                              acc_t y, int64_t H, int64_t W, int64_t n,
                              const PointRow<acc_t>& out, int64_t* rows);

template <typename scalar_t>
struct SamplingKernels {
  using acc_t = at::opmath_type<scalar_t>;
  void (*sample_row)(const scalar_t* plane, const SamplePoints<acc_t>& p,
                     int64_t n, acc_t* dst);
  SampleTaps<acc_t> sample_taps = nullptr;
  TransposeTaps<acc_t> transpose_taps = &transpose_taps_scalar<acc_t>;
  LocateRow<acc_t> locate_row = nullptr;
};

#define DLU_DEFINE_SAMPLING_KERNELS(name, attributes)                       \
  template <typename scalar_t>                                              \
  attributes void name##_sample_row(                                        \
      const scalar_t* plane,                                                \
      const SamplePoints<at::opmath_type<scalar_t>>& p, int64_t n,          \
      at::opmath_type<scalar_t>* dst) {                                     \
    sample_row_impl(plane, p, n, dst);                                      \
  }                                                                         \
  template <typename scalar_t>                                              \
  constexpr SamplingKernels<scalar_t> name##_sampling_kernels() {           \
    return {&name##_sample_row<scalar_t>};                                  \
  }

#ifdef DLU_X86_DISPATCH
DLU_DEFINE_SAMPLING_KERNELS(avx512, DLU_TARGET_AVX512)
DLU_DEFINE_SAMPLING_KERNELS(avx2, DLU_TARGET_AVX2)
#endif
DLU_DEFINE_SAMPLING_KERNELS(baseline, )

#ifdef DLU_X86_DISPATCH
// sample_row() for float and double with explicit gather instructions:
// GCC's vectoriser, tuned for generic x86, emulates gathers with scalar
// loads (several times slower here). The four corners are added in the
// order of sample_row_impl, one fused multiply-add each.
DLU_TARGET_AVX512 inline void avx512_gather_sample_row(
    const float* plane, const SamplePoints<float>& p, int64_t n,
    float* dst) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      const __m512i index = _mm512_loadu_si512(p.index[c] + j);
      sum = _mm512_fmadd_ps(_mm512_loadu_ps(p.weight[c] + j),
                            _mm512_i32gather_ps(index, plane, 4), sum);
    }
    _mm512_storeu_ps(dst + j, sum);
  }
  for (; j < n; ++j) {
    float sum = 0.f;
    for (int c = 0; c < 4; ++c) {
      sum = std::fma(p.weight[c][j], plane[p.index[c][j]], sum);
    }
    dst[j] = sum;
  }
}

DLU_TARGET_AVX512 inline void avx512_gather_sample_row(
    const double* plane, const SamplePoints<double>& p, int64_t n,
    double* dst) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m512d sum = _mm512_setzero_pd();
    for (int c = 0; c < 4; ++c) {
      const __m256i index = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(p.index[c] + j));
      sum = _mm512_fmadd_pd(_mm512_loadu_pd(p.weight[c] + j),
                            _mm512_i32gather_pd(index, plane, 8), sum);
    }
    _mm512_storeu_pd(dst + j, sum);
  }
  for (; j < n; ++j) {
    double sum = 0.;
    for (int c = 0; c < 4; ++c) {
      sum = std::fma(p.weight[c][j], plane[p.index[c][j]], sum);
    }
    dst[j] = sum;
  }
}

DLU_TARGET_AVX2 inline void avx2_gather_sample_row(
    const float* plane, const SamplePoints<float>& p, int64_t n,
    float* dst) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 sum = _mm256_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      const __m256i index = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(p.index[c] + j));
      sum = _mm256_fmadd_ps(_mm256_loadu_ps(p.weight[c] + j),
                            _mm256_i32gather_ps(plane, index, 4), sum);
    }
    _mm256_storeu_ps(dst + j, sum);
  }
  for (; j < n; ++j) {
    float sum = 0.f;
    for (int c = 0; c < 4; ++c) {
      sum = std::fma(p.weight[c][j], plane[p.index[c][j]], sum);
    }
    dst[j] = sum;
  }
}
#endif

#ifdef DLU_X86_DISPATCH
// Transposes 16 rows of 16 floats in registers: r[i][t] <- r[t][i].
DLU_TARGET_AVX512 inline void avx512_transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
  }
  for (int i = 0; i < 2; ++i) {
    for (int m = 0; m < 4; ++m) {
      t[8 * i + m] =
          _mm512_shuffle_f32x4(r[8 * i + m], r[8 * i + 4 + m], 0x88);
      t[8 * i + 4 + m] =
          _mm512_shuffle_f32x4(r[8 * i + m], r[8 * i + 4 + m], 0xdd);
    }
  }
  for (int m = 0; m < 8; ++m) {
    r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
    r[m + 8] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xdd);
  }
}

// sample_taps() for float: per pixel, 16 taps at a time are 4 contiguous
// corner loads and 4 multiply-adds (the order and rounding of
// avx512_gather_sample_row), then 16 pixels x 16 taps are transposed into
// the tap rows. Per tap and 16 pixels that is about 17 instructions
// against 4 gathers of 16 lanes (perf, s=4: the gathers cost 17% of the
// forward). kkp is a multiple of 16 (padded_taps).
DLU_TARGET_AVX512 inline void avx512_sample_taps(
    const float* space_t, int64_t kkp, const SamplePoints<float>& p,
    int64_t n, int64_t kk, float* const* dst) {
  const int64_t blocks = n / 16 * 16;  // pixels in whole 16-pixel blocks
  for (int64_t t0 = 0; t0 < kk; t0 += 16) {
    bool wanted = false;
    for (int64_t t = t0; t < std::min(kk, t0 + 16); ++t) {
      wanted |= dst[t] != nullptr;
    }
    if (!wanted) continue;
    for (int64_t j0 = 0; j0 < blocks; j0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t j = j0 + i;
        __m512 sum = _mm512_mul_ps(
            _mm512_set1_ps(p.weight[0][j]),
            _mm512_loadu_ps(space_t + int64_t(p.index[0][j]) * kkp + t0));
        for (int c = 1; c < 4; ++c) {
          sum = _mm512_fmadd_ps(
              _mm512_set1_ps(p.weight[c][j]),
              _mm512_loadu_ps(space_t + int64_t(p.index[c][j]) * kkp + t0),
              sum);
        }
        r[i] = sum;
      }
      avx512_transpose16(r);
      for (int64_t t = t0; t < std::min(kk, t0 + 16); ++t) {
        if (dst[t] != nullptr) _mm512_storeu_ps(dst[t] + j0, r[t - t0]);
      }
    }
  }
  for (int64_t t = 0; t < kk; ++t) {
    if (dst[t] == nullptr) continue;
    for (int64_t j = blocks; j < n; ++j) {
      float sum = 0.f;
      for (int c = 0; c < 4; ++c) {
        sum = std::fma(p.weight[c][j],
                       space_t[int64_t(p.index[c][j]) * kkp + t], sum);
      }
      dst[t][j] = sum;
    }
  }
}

// transpose_taps() for float in 16 x 16 register blocks (the scalar loop
// stores every value alone, kkp apart). kkp is a multiple of 16.
DLU_TARGET_AVX512 inline void avx512_transpose_taps(const float* const* taps,
                                                    int64_t kk, int64_t n,
                                                    int64_t kkp, float* dk) {
  int64_t j0 = 0;
  for (; j0 + 16 <= n; j0 += 16) {
    for (int64_t t0 = 0; t0 < kk; t0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        r[i] = t0 + i < kk ? _mm512_loadu_ps(taps[t0 + i] + j0)
                           : _mm512_setzero_ps();
      }
      avx512_transpose16(r);
      for (int i = 0; i < 16; ++i) {
        _mm512_storeu_ps(dk + (j0 + i) * kkp + t0, r[i]);
      }
    }
  }
  for (int64_t t = 0; t < kk; ++t) {
    for (int64_t j = j0; j < n; ++j) dk[j * kkp + t] = taps[t][j];
  }
}
#endif

#ifdef DLU_X86_DISPATCH
// The clamp of clamp_coordinate(): p strictly inside (0, hi) is kept (gate
// 1), else hi if p > 0, else 0 (NaN compares false: 0).
DLU_TARGET_AVX512 inline __attribute__((always_inline)) void avx512_clamp(
    __m512 p, __m512 hi, __m512& c, __m512& gate) {
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 above = _mm512_cmp_ps_mask(p, zero, _CMP_GT_OQ);
  const __mmask16 inside = above & _mm512_cmp_ps_mask(p, hi, _CMP_LT_OQ);
  c = _mm512_mask_blend_ps(inside, _mm512_mask_blend_ps(above, zero, hi), p);
  gate = _mm512_maskz_mov_ps(inside, _mm512_set1_ps(1.f));
}

// locate_row() for float, 16 pixels a vector (the offsets gathered).
DLU_TARGET_AVX512 inline int64_t avx512_locate_row(
    const float* ox, const float* oy, const int32_t* source,
    const float* column, float y, int64_t H, int64_t W, int64_t n,
    const PointRow<float>& out, int64_t* rows) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 hi_x = _mm512_set1_ps(static_cast<float>(W - 1));
  const __m512 hi_y = _mm512_set1_ps(static_cast<float>(H - 1));
  const __m512i last_x = _mm512_set1_epi32(static_cast<int32_t>(W - 1));
  const __m512i last_y = _mm512_set1_epi32(static_cast<int32_t>(H - 1));
  const __m512i width = _mm512_set1_epi32(static_cast<int32_t>(W));
  const __m512i step = _mm512_set1_epi32(1);
  const __m512 row = _mm512_set1_ps(y);
  __m512i least = _mm512_set1_epi32(std::numeric_limits<int32_t>::max());
  __m512i most = _mm512_set1_epi32(-1);
  const int64_t m = n / 16 * 16;
  for (int64_t j = 0; j < m; j += 16) {
    const __m512i at = _mm512_loadu_si512(source + j);
    __m512 cx, cy, gx, gy;
    avx512_clamp(_mm512_add_ps(_mm512_loadu_ps(column + j),
                               _mm512_i32gather_ps(at, ox, 4)),
                 hi_x, cx, gx);
    avx512_clamp(_mm512_add_ps(row, _mm512_i32gather_ps(at, oy, 4)), hi_y,
                 cy, gy);
    const __m512i x0 = _mm512_cvttps_epi32(cx);
    const __m512i y0 = _mm512_cvttps_epi32(cy);
    const __m512i x1 = _mm512_min_epi32(_mm512_add_epi32(x0, step), last_x);
    const __m512i y1 = _mm512_min_epi32(_mm512_add_epi32(y0, step), last_y);
    const __m512 wx = _mm512_sub_ps(cx, _mm512_cvtepi32_ps(x0));
    const __m512 wy = _mm512_sub_ps(cy, _mm512_cvtepi32_ps(y0));
    const __m512i top = _mm512_mullo_epi32(y0, width);
    const __m512i bottom = _mm512_mullo_epi32(y1, width);
    _mm512_storeu_si512(out.index[0] + j, _mm512_add_epi32(top, x0));
    _mm512_storeu_si512(out.index[1] + j, _mm512_add_epi32(top, x1));
    _mm512_storeu_si512(out.index[2] + j, _mm512_add_epi32(bottom, x0));
    _mm512_storeu_si512(out.index[3] + j, _mm512_add_epi32(bottom, x1));
    const __m512 rx = _mm512_sub_ps(one, wx), ry = _mm512_sub_ps(one, wy);
    _mm512_storeu_ps(out.weight[0] + j, _mm512_mul_ps(ry, rx));
    _mm512_storeu_ps(out.weight[1] + j, _mm512_mul_ps(ry, wx));
    _mm512_storeu_ps(out.weight[2] + j, _mm512_mul_ps(wy, rx));
    _mm512_storeu_ps(out.weight[3] + j, _mm512_mul_ps(wy, wx));
    _mm512_storeu_ps(out.wx + j, wx);
    _mm512_storeu_ps(out.wy + j, wy);
    _mm512_storeu_ps(out.gate_x + j, gx);
    _mm512_storeu_ps(out.gate_y + j, gy);
    least = _mm512_min_epi32(least, y0);
    most = _mm512_max_epi32(most, y1);
  }
  if (m > 0) {
    rows[0] = std::min<int64_t>(rows[0], _mm512_reduce_min_epi32(least));
    rows[1] = std::max<int64_t>(rows[1], _mm512_reduce_max_epi32(most));
  }
  return m;
}
#endif

template <typename scalar_t>
inline const SamplingKernels<scalar_t>& sampling_kernels() {
  static const SamplingKernels<scalar_t> kernels = [] {
    switch (cpu_isa()) {
#ifdef DLU_X86_DISPATCH
      case Isa::kAvx512:
        if constexpr (std::is_same_v<scalar_t, float>) {
          return SamplingKernels<scalar_t>{
              &avx512_gather_sample_row, &avx512_sample_taps,
              &avx512_transpose_taps, &avx512_locate_row};
        } else if constexpr (std::is_same_v<scalar_t, double>) {
          return SamplingKernels<scalar_t>{&avx512_gather_sample_row};
        }
        return avx512_sampling_kernels<scalar_t>();
      case Isa::kAvx2:
        if constexpr (std::is_same_v<scalar_t, float>) {
          return SamplingKernels<scalar_t>{&avx2_gather_sample_row};
        }
        return avx2_sampling_kernels<scalar_t>();
#endif
      default: return baseline_sampling_kernels<scalar_t>();
    }
  }();
  return kernels;
}

}  // namespace dlu_mm
