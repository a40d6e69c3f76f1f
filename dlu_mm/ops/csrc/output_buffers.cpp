/*
 * Large output buffers, kept for reuse once their tensors are freed.
 *
 * PyTorch's CPU allocator returns a buffer of more than a few MiB to the
 * OS when its tensor dies (glibc's mmap threshold tops out at 32 MiB), so
 * the next call's output of the same size comes fresh from mmap, and
 * writing it the first time costs a page fault per page plus the kernel's
 * zeroing of it: for a 1x256x240x240 float32 output (56 MiB) that is about
 * a third of the fused DLU forward on a 2-core machine (perf: clear_page).
 * A training or inference loop asks for the same sizes every step, so the
 * ops keep the buffers their outputs release, up to a capacity (default
 * 1 GiB, DLU_MM_OUTPUT_CACHE_MIB, or set_output_cache_capacity), and hand
 * one of the exact (2 MiB-rounded) size to the next output that needs it,
 * as CUDA's caching allocator does. The cache holds only memory that was
 * in use a moment earlier, so it does not raise the peak of a loop; it
 * frees the oldest buffers first when a release would exceed the capacity.
 *
 * Buffers are 2 MiB-aligned and advised to be transparent huge pages
 * (MADV_HUGEPAGE, Linux, THP in "madvise" or "always" mode): one fault per
 * 2 MiB the first time. Advice only: the values never depend on it.
 * Outputs are written whole by the kernels before they are returned, as
 * with at::empty: a reused buffer's old contents are never visible.
 */
#include "output_buffers.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>

namespace dlu_mm {
namespace {

constexpr int64_t kHugePage = int64_t(2) << 20;
// Smaller buffers stay with PyTorch's allocator (glibc reuses them).
constexpr int64_t kMinCachedBytes = 4 * kHugePage;

int64_t capacity_from_environment() {
  const char* text = std::getenv("DLU_MM_OUTPUT_CACHE_MIB");
  if (text == nullptr || *text == '\0') return int64_t(1024) << 20;
  char* end = nullptr;
  const long long mib = std::strtoll(text, &end, 10);
  TORCH_CHECK(end != text && *end == '\0' && mib >= 0,
              "dlu_mm._ext: DLU_MM_OUTPUT_CACHE_MIB must be a whole number "
              "of MiB >= 0 (0 turns the output cache off), got '", text, "'");
  return static_cast<int64_t>(mib) << 20;
}

struct Block {
  void* data;
  int64_t bytes;
};

void* allocate_block(int64_t bytes) {
  void* data = nullptr;
  if (posix_memalign(&data, kHugePage, static_cast<size_t>(bytes)) != 0) {
    TORCH_CHECK(false, "dlu_mm._ext: out of memory allocating ", bytes,
                " bytes for an output");
  }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(data, static_cast<size_t>(bytes), MADV_HUGEPAGE);
#endif
  return data;
}

// The released buffers, oldest first. Never destroyed: tensors may be
// freed during interpreter shutdown, after static destructors ran.
class OutputCache final : public c10::Allocator {
 public:
  OutputCache() : capacity_(capacity_from_environment()) {}

  // n bytes, rounded up to whole 2 MiB pages (one page at least: a storage
  // of ours resized to nothing still gets a buffer to hand back).
  c10::DataPtr allocate(size_t n) override {
    const int64_t bytes =
        std::max<int64_t>(1, (static_cast<int64_t>(n) + kHugePage - 1) /
                                 kHugePage) *
        kHugePage;
    Block* block = take(bytes);
    if (block == nullptr) block = new Block{allocate_block(bytes), bytes};
    return {block->data, block, &OutputCache::release,
            c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

  int64_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  int64_t capacity() {
    std::lock_guard<std::mutex> lock(mutex_);
    return capacity_;
  }
  int64_t set_capacity(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t previous = capacity_;
    capacity_ = bytes;
    evict_to(capacity_);
    return previous;
  }

  static OutputCache& instance() {
    static OutputCache* cache = new OutputCache();
    return *cache;
  }

 private:
  Block* take(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if ((*it)->bytes == bytes) {
        Block* block = *it;
        free_.erase(std::next(it).base());
        cached_ -= bytes;
        return block;
      }
    }
    return nullptr;
  }

  static void release(void* context) {
    Block* block = static_cast<Block*>(context);
    OutputCache& cache = instance();
    std::lock_guard<std::mutex> lock(cache.mutex_);
    if (block->bytes > cache.capacity_) {
      std::free(block->data);
      delete block;
      return;
    }
    cache.evict_to(cache.capacity_ - block->bytes);
    cache.free_.push_back(block);
    cache.cached_ += block->bytes;
  }

  // Frees the oldest buffers until at most `bytes` are cached (mutex held).
  void evict_to(int64_t bytes) {
    while (cached_ > bytes && !free_.empty()) {
      Block* block = free_.front();
      free_.pop_front();
      cached_ -= block->bytes;
      std::free(block->data);
      delete block;
    }
  }

  std::mutex mutex_;
  std::deque<Block*> free_;
  int64_t cached_ = 0;
  int64_t capacity_;
};

}  // namespace

at::Tensor empty_output(at::IntArrayRef shape, const at::TensorOptions& opts) {
  OutputCache& cache = OutputCache::instance();
  const int64_t bytes =
      c10::multiply_integers(shape) *
      static_cast<int64_t>(c10::elementSize(opts.dtype().toScalarType()));
  if (bytes < kMinCachedBytes || cache.capacity() == 0) {
    return at::empty(shape, opts);
  }
  return at::detail::empty_generic(shape, &cache,
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   opts.dtype().toScalarType(),
                                   c10::nullopt);
}

int64_t cached_output_bytes() { return OutputCache::instance().cached(); }
int64_t output_cache_capacity() { return OutputCache::instance().capacity(); }
int64_t set_output_cache_capacity(int64_t bytes) {
  TORCH_CHECK(bytes >= 0, "dlu_mm._ext: the output cache's capacity must be "
              ">= 0 bytes (0 turns it off), got ", bytes);
  return OutputCache::instance().set_capacity(bytes);
}

}  // namespace dlu_mm
