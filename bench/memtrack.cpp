// bench/memtrack.cpp — the malloc family, counted (see memtrack.hpp). glibc only.
#include "memtrack.hpp"

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>

extern "C" {
void* __libc_malloc(size_t size);
void __libc_free(void* ptr);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* ptr, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
}

namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

inline void on_alloc(void* p) {
  if (p == nullptr) return;
  const int64_t size = static_cast<int64_t>(malloc_usable_size(p));
  const int64_t now = g_current.fetch_add(size, std::memory_order_relaxed) + size;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

inline void on_free(void* p) {
  if (p == nullptr) return;
  g_current.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
}

}  // namespace

namespace memtrack {
int64_t current() { return g_current.load(std::memory_order_relaxed); }
int64_t peak() { return g_peak.load(std::memory_order_relaxed); }
void reset_peak() { g_peak.store(g_current.load(std::memory_order_relaxed), std::memory_order_relaxed); }
}  // namespace memtrack

extern "C" {

void* malloc(size_t size) {
  void* p = __libc_malloc(size);
  on_alloc(p);
  return p;
}

void free(void* ptr) {
  on_free(ptr);
  __libc_free(ptr);
}

void* calloc(size_t count, size_t size) {
  void* p = __libc_calloc(count, size);
  on_alloc(p);
  return p;
}

void* realloc(void* ptr, size_t size) {
  if (ptr == nullptr) return malloc(size);
  if (size == 0) {  // glibc: frees the block and returns null
    free(ptr);
    return nullptr;
  }
  const int64_t old_size = static_cast<int64_t>(malloc_usable_size(ptr));
  void* p = __libc_realloc(ptr, size);
  if (p == nullptr) return nullptr;  // the old block is still there, still counted
  g_current.fetch_sub(old_size, std::memory_order_relaxed);
  on_alloc(p);
  return p;
}

void* memalign(size_t alignment, size_t size) {
  void* p = __libc_memalign(alignment, size);
  on_alloc(p);
  return p;
}

void* aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }

int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = memalign(alignment, size);
  if (p == nullptr && size != 0) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t size) { return memalign(4096, size); }

}  // extern "C"
