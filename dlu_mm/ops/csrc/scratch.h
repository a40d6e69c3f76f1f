/*
 * Scratch memory for the CPU kernels, aligned to cache lines.
 *
 * The kernels read and write their scratch rows (kernel rows, widened
 * feature rows, partial sums, tap-minor copies) in 64-byte vectors from the
 * start of each row. std::vector and new[] only guarantee 16 bytes (glibc
 * hands out large blocks at a page + 16), so every 64-byte access could
 * straddle two cache lines: two L1 accesses instead of one, and stores that
 * cannot be forwarded to the loads after them as one piece. Toggled in one
 * process (every scratch block 16 bytes past a cache line, as glibc's
 * large blocks are, against aligned; direct calls, 1x256x120x120 float32,
 * 2 threads), the misaligned scratch made the s=2 forward 17% slower, the
 * features gradient 13-18%, the kernels gradients 3-5%; s=4 4-9%.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

namespace dlu_mm {

constexpr std::size_t kCacheLine = 64;

// std::allocator with 64-byte aligned blocks.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(
        ::operator new(n * sizeof(T), std::align_val_t(kCacheLine)));
  }
  void deallocate(T* p, std::size_t) noexcept {
    ::operator delete(p, std::align_val_t(kCacheLine));
  }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const noexcept {
    return false;
  }
};

// A scratch vector whose data() is 64-byte aligned.
template <typename T>
using ScratchVector = std::vector<T, CacheLineAllocator<T>>;

struct CacheLineDelete {
  template <typename T>
  void operator()(T* p) const noexcept {
    ::operator delete(p, std::align_val_t(kCacheLine));
  }
};

// `n` values of a trivial type, 64-byte aligned and left uninitialised.
template <typename T>
using ScratchArray = std::unique_ptr<T[], CacheLineDelete>;

template <typename T>
ScratchArray<T> uninitialised_scratch(int64_t n) {
  return ScratchArray<T>(static_cast<T*>(::operator new(
      static_cast<std::size_t>(n) * sizeof(T), std::align_val_t(kCacheLine))));
}

}  // namespace dlu_mm
