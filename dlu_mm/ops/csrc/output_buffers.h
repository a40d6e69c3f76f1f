// Large output buffers of dlu_mm._ext, kept for reuse (output_buffers.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace dlu_mm {

// A new, not yet written tensor of `shape` for an op's output or gradient.
// Buffers of at least kMinCachedBytes come from a cache of buffers that
// earlier outputs released (same size, rounded up to 2 MiB), backed by
// transparent huge pages where Linux allows; smaller ones are at::empty.
at::Tensor empty_output(at::IntArrayRef shape, const at::TensorOptions& opts);

// The cache's state: bytes held by released buffers, and its capacity.
int64_t cached_output_bytes();
int64_t output_cache_capacity();
// Sets the capacity in bytes (0 turns caching off) and frees what exceeds
// it; returns the previous capacity.
int64_t set_output_cache_capacity(int64_t bytes);

}  // namespace dlu_mm
