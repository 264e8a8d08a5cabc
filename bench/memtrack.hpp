// bench/memtrack.hpp — counts the heap bytes in use, for the "peak extra memory" figures.
//
// memtrack.cpp replaces malloc / free / calloc / realloc / posix_memalign / aligned_alloc /
// memalign for the whole benchmark process (ELF symbol interposition: LibTorch's CPU allocator,
// which calls posix_memalign, and fusedkd's new[] both land there) and forwards to glibc's
// __libc_* functions. Every block is counted by malloc_usable_size, always (not only while
// measuring), so the count is exact; the cost is two relaxed atomics per allocation.
#pragma once

#include <cstdint>

namespace memtrack {

/// Heap bytes in use now.
int64_t current();

/// Runs `fn` once and returns the largest number of heap bytes in use during it, minus the
/// bytes in use before it (the peak extra memory of the call). One measurement at a time.
template <typename F>
int64_t peak_extra(F&& fn);

// -- implementation ---------------------------------------------------------------------------
void reset_peak();
int64_t peak();

template <typename F>
int64_t peak_extra(F&& fn) {
  const int64_t before = current();
  reset_peak();
  fn();
  return peak() - before;
}

}  // namespace memtrack
