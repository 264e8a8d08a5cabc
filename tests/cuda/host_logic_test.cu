// tests/cuda/host_logic_test.cu — the host-checkable parts of the CUDA backend, run on any machine:
// the packed USKD rank keys sort exactly like the CPU backend's rank entries, the soft-label
// top-2 reduction (as the kernels' warp butterfly and block fold run it) finds the CPU's
// targets, the workspace layouts fit the sizes the queries return, and the dispatch boundaries.
// It is a second translation unit that includes fusedkd/cuda.cuh and links the runner: a header
// symbol that is not inline would fail the link.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "fusedkd/cuda.cuh"

namespace {

namespace cd = fusedkd::cuda_detail;

/// The CPU backend's order: rank_bits ascending, ties by index (its radix sort is stable).
std::vector<int32_t> cpu_order(const std::vector<float>& r) {
  std::vector<fusedkd::detail::RankEntry<float>> e;
  for (size_t i = 0; i < r.size(); ++i) e.push_back({fusedkd::detail::rank_bits(r[i]), static_cast<int32_t>(i)});
  std::stable_sort(e.begin(), e.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  std::vector<int32_t> out;
  for (const auto& x : e) out.push_back(x.index);
  return out;
}

/// The GPU's order: packed keys ascending (plus padding up to `padded` entries, which must end up
/// after every class).
std::vector<int32_t> gpu_order(const std::vector<float>& r, size_t padded) {
  const int64_t c = static_cast<int64_t>(r.size());
  const int b = cd::index_bits_of(c);
  std::vector<unsigned long long> keys;
  for (int64_t i = 0; i < c; ++i) keys.push_back(cd::pack_rank_key(r[static_cast<size_t>(i)], i, b));
  while (keys.size() < padded) keys.push_back(cd::pad_rank_key(b));
  std::sort(keys.begin(), keys.end());
  std::vector<int32_t> out;
  for (size_t p = 0; p < r.size(); ++p) {
    EXPECT_LT(keys[p], cd::pad_rank_key(b)) << "a padding entry sorted among the classes";
    out.push_back(static_cast<int32_t>(keys[p] & ((1ull << b) - 1ull)));
  }
  return out;
}

TEST(CudaHostLogic, PackedRankKeysSortLikeTheCpu) {
  std::mt19937 rng(5);
  for (int64_t c : {2, 3, 10, 256, 257, 1000, 1024, 1025, 4096, 5000}) {
    std::vector<float> r(static_cast<size_t>(c));
    std::normal_distribution<float> g(0.0f, 3.0f);
    for (auto& x : r) x = g(rng);
    // Ties, signed zeros, infinities and NaN.
    std::uniform_int_distribution<int64_t> pick(0, c - 1);
    for (int k = 0; k < 5; ++k) r[static_cast<size_t>(pick(rng))] = r[static_cast<size_t>(pick(rng))];
    r[static_cast<size_t>(pick(rng))] = 0.0f;
    r[static_cast<size_t>(pick(rng))] = -0.0f;
    if (c > 8) {
      r[static_cast<size_t>(pick(rng))] = INFINITY;
      r[static_cast<size_t>(pick(rng))] = -INFINITY;
      r[static_cast<size_t>(pick(rng))] = NAN;
      r[static_cast<size_t>(pick(rng))] = -NAN;
      r[static_cast<size_t>(pick(rng))] = -INFINITY;
    }
    const size_t padded = static_cast<size_t>(
        c <= cd::kUskdBlockSortMax ? cd::uskd_sort_threads(c) * cd::kUskdSortItems : c);
    EXPECT_EQ(gpu_order(r, padded), cpu_order(r)) << "C = " << c;
  }
}

/// The CPU backend's soft-label targets (find_targets): first maximum, then the next largest.
void cpu_top2(const std::vector<float>& y, int32_t& b1, int32_t& b2, float& sum) {
  b1 = 0, b2 = -1;
  sum = 0.0f;
  for (int32_t i = 1; i < static_cast<int32_t>(y.size()); ++i) {
    if (y[i] > y[b1]) {
      b2 = b1;
      b1 = i;
    } else if (b2 < 0 || y[i] > y[b2]) {
      b2 = i;
    }
  }
  for (float v : y) sum += v;
}

/// The kernels' reduction: per-thread strided partials over 4-wide vectors, a butterfly within
/// each warp broadcast from lane 0, then the warps folded in order.
cd::Top2 gpu_top2(const std::vector<float>& y, int threads) {
  const int64_t c = static_cast<int64_t>(y.size());
  std::vector<cd::Top2> lane(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    for (int64_t base = int64_t(t) * 4; base < c; base += int64_t(threads) * 4) {
      for (int j = 0; j < 4 && base + j < c; ++j) lane[t].add(y[base + j], static_cast<int32_t>(base + j));
    }
  }
  std::vector<cd::Top2> warp_result;
  for (int w = 0; w * 32 < threads; ++w) {
    std::vector<cd::Top2> x(lane.begin() + w * 32, lane.begin() + w * 32 + 32);
    for (int m = 16; m >= 1; m >>= 1) {
      std::vector<cd::Top2> next(32);
      for (int l = 0; l < 32; ++l) next[l] = cd::Top2MergeOp{}(x[l], x[l ^ m]);
      x = next;
    }
    warp_result.push_back(x[0]);
  }
  cd::Top2 r = warp_result[0];
  for (size_t w = 1; w < warp_result.size(); ++w) r = cd::Top2MergeOp{}(r, warp_result[w]);
  return r;
}

TEST(CudaHostLogic, SoftLabelTop2MatchesTheCpu) {
  std::mt19937 rng(7);
  for (int64_t c : {3, 4, 10, 100, 1001, 5000}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> y(static_cast<size_t>(c));
      std::uniform_int_distribution<int> small(0, 3);  // many exact ties
      for (auto& v : y) v = static_cast<float>(small(rng)) * 0.25f;
      int32_t b1, b2;
      float sum;
      cpu_top2(y, b1, b2, sum);
      for (int threads : {32, 128, 512}) {
        const cd::Top2 t = gpu_top2(y, threads);
        EXPECT_EQ(t.i1, b1) << "C " << c << " threads " << threads;
        EXPECT_EQ(t.i2, b2) << "C " << c << " threads " << threads;
        EXPECT_EQ(t.v1, y[static_cast<size_t>(b1)]);
        EXPECT_NEAR(t.sum, sum, 1e-4f * std::max(1.0f, sum));
      }
    }
  }
}

TEST(CudaHostLogic, WorkspaceLayoutsFitTheirQueries) {
  for (int64_t n : {0, 1, 3, 37, 8192}) {
    for (int64_t c : {2, 10, 1000, 4096, 4097, 32000, 128256}) {
      const size_t bytes = fusedkd::cuda::uskd_workspace_size(n, c);
      for (uintptr_t shift : {0, 4, 8, 100, 255}) {
        unsigned char* base = reinterpret_cast<unsigned char*>(uintptr_t(1) << 20) + shift;  // never dereferenced
        const cd::UskdLayout l = cd::uskd_layout(base, n, c);
        EXPECT_EQ(l.bytes, bytes);
        const auto inside = [&](const void* p, size_t len) {
          const unsigned char* q = static_cast<const unsigned char*>(p);
          EXPECT_GE(q, base);
          EXPECT_LE(q + len, base + bytes) << "n " << n << " c " << c << " shift " << shift;
          EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % 256, 0u);
        };
        inside(l.header, sizeof(cd::Header));
        inside(l.row_loss, sizeof(float) * static_cast<size_t>(n));
        EXPECT_EQ(l.batch.segments, (n + 1023) / 1024);
        inside(l.batch.seg_count, sizeof(unsigned int) * static_cast<size_t>(l.batch.segments));
        inside(l.batch.partial, 16 * static_cast<size_t>(l.batch.segments));
        // The memset before the pre-pass covers the header and the segment counters, and
        // nothing that a kernel of the call reads before writing it.
        const unsigned char* h = reinterpret_cast<const unsigned char*>(l.header);
        EXPECT_GE(h + l.batch.reset_bytes,
                  reinterpret_cast<const unsigned char*>(l.batch.seg_count + l.batch.segments));
        EXPECT_LE(h + l.batch.reset_bytes, reinterpret_cast<const unsigned char*>(l.batch.partial));
        EXPECT_LE(reinterpret_cast<const unsigned char*>(l.batch.partial + l.batch.segments),
                  reinterpret_cast<const unsigned char*>(l.row_loss));
        inside(l.states, sizeof(cd::UskdRowState) * static_cast<size_t>(n));
        inside(l.sq, sizeof(float2) * static_cast<size_t>(n));
        if (c > cd::kUskdBlockSortMax && n > 0) {
          ASSERT_GT(l.chunk, 0);
          EXPECT_LE(l.chunk, n);
          EXPECT_LE(l.chunk * c, int64_t(1) << 30);
          inside(l.offsets, sizeof(int) * static_cast<size_t>(l.chunk + 1));
          inside(l.keys0, 8 * static_cast<size_t>(l.chunk * c));
          inside(l.keys1, 8 * static_cast<size_t>(l.chunk * c));
          inside(l.cub, cd::kUskdCubBytes);
        } else {
          EXPECT_EQ(l.chunk, 0);
        }
      }
      EXPECT_EQ(fusedkd::cuda::nkd_workspace_size(n, c), fusedkd::cuda::kd_workspace_size(n, c));
      EXPECT_GE(fusedkd::cuda::nkd_workspace_size(n, c), 256 + sizeof(cd::Header) + 4 * static_cast<size_t>(n));
    }
  }
}

TEST(CudaHostLogic, DispatchBoundaries) {
  EXPECT_EQ(cd::pair_path<float>(2), cd::PairPath::kWarp);
  EXPECT_EQ(cd::pair_path<float>(256), cd::PairPath::kWarp);
  EXPECT_EQ(cd::pair_path<float>(257), cd::PairPath::kBlock);
  EXPECT_EQ(cd::pair_path<float>(16384), cd::PairPath::kBlock);
  EXPECT_EQ(cd::pair_path<float>(16385), cd::PairPath::kStream);
  EXPECT_EQ(cd::pair_path<__half>(512), cd::PairPath::kWarp);
  EXPECT_EQ(cd::pair_path<__nv_bfloat16>(513), cd::PairPath::kBlock);
  EXPECT_EQ(cd::pair_path<__half>(32768), cd::PairPath::kBlock);
  EXPECT_EQ(cd::pair_path<__half>(32769), cd::PairPath::kStream);
  EXPECT_EQ(cd::index_bits_of(2), 1);
  EXPECT_EQ(cd::index_bits_of(3), 2);
  EXPECT_EQ(cd::index_bits_of(1024), 10);
  EXPECT_EQ(cd::index_bits_of(1025), 11);
  EXPECT_EQ(cd::index_bits_of(128256), 17);
  EXPECT_EQ(cd::uskd_chunk_rows(8192, 4096), 0);
  EXPECT_EQ(cd::uskd_chunk_rows(8192, 128256), (int64_t(64) << 20) / (128256 * 8));
  EXPECT_EQ(cd::uskd_chunk_rows(3, 128256), 3);
  // The USKD block sort follows C: 256, 1024 or 4096 keys.
  EXPECT_EQ(cd::uskd_sort_threads(3), 32);
  EXPECT_EQ(cd::uskd_sort_threads(256), 32);
  EXPECT_EQ(cd::uskd_sort_threads(257), 128);
  EXPECT_EQ(cd::uskd_sort_threads(1024), 128);
  EXPECT_EQ(cd::uskd_sort_threads(1025), 512);
  EXPECT_EQ(cd::uskd_sort_threads(4096), 512);
  // The pre-pass: one block at least, about 4096 labels per block, at most 1024 blocks.
  EXPECT_EQ(cd::prepass_blocks(0), 1u);
  EXPECT_EQ(cd::prepass_blocks(4096), 1u);
  EXPECT_EQ(cd::prepass_blocks(4097), 2u);
  EXPECT_EQ(cd::prepass_blocks(1000000), 245u);
  EXPECT_EQ(cd::prepass_blocks(int64_t(1) << 31), 1024u);
  // Segments of the batch sum; every kernel's rows per block divide the segment.
  EXPECT_EQ(cd::segments_of(0), 0);
  EXPECT_EQ(cd::segments_of(1), 1);
  EXPECT_EQ(cd::segments_of(1024), 1);
  EXPECT_EQ(cd::segments_of(1025), 2);
  EXPECT_EQ(cd::segments_of(1000000), 977);
  EXPECT_EQ(cd::kSegmentRows % cd::kPairWarpRowsPerBlock, 0);
}

/// fusedkd::cuda::check maps the status word: the words the kernels write, and anything else
/// (a workspace no call has written, e.g. 0xabababab) to an error, never to a stray Status.
TEST(CudaHostLogic, StatusWordMapping) {
  using fusedkd::Status;
  EXPECT_EQ(cd::status_from_word(0u), Status::kSuccess);
  EXPECT_EQ(cd::status_from_word(static_cast<unsigned>(Status::kLabelOutOfRange)), Status::kLabelOutOfRange);
  EXPECT_EQ(cd::status_from_word(static_cast<unsigned>(Status::kEmptySoftLabelRow)), Status::kEmptySoftLabelRow);
  for (unsigned w : {1u, 2u, 3u, 4u, 7u, 8u, 9u, 10u, 11u, 12u, 1000u, 0xababababu, 0xffffffffu}) {
    if (w == static_cast<unsigned>(Status::kLabelOutOfRange) || w == static_cast<unsigned>(Status::kEmptySoftLabelRow)) {
      continue;
    }
    EXPECT_EQ(cd::status_from_word(w), Status::kCudaError) << w;
  }
}

/// Pointers not aligned to their element type are refused on the host, before anything runs
/// (fusedkd::cuda::impl::pointers_aligned; the GPU test CudaErrors.MisalignedLabelsAreRefused
/// checks a call). This file calls no loss, so it compiles none of the kernels.
TEST(CudaHostLogic, MisalignedPointersAreRefused) {
  namespace impl = fusedkd::cuda::impl;
  const uintptr_t base = uintptr_t(1) << 24;
  const auto f = [](uintptr_t p) { return reinterpret_cast<const float*>(p); };
  const auto labels = [](fusedkd::Labels l) { return impl::label_args(l, 10, -100); };
  const cd::LabelArgs none = labels(fusedkd::Labels::none());
  const cd::LabelArgs i64 = labels(fusedkd::Labels::index(reinterpret_cast<const int64_t*>(base + 8)));
  const cd::LabelArgs i64_off = labels(fusedkd::Labels::index(reinterpret_cast<const int64_t*>(base + 4)));
  const cd::LabelArgs i32 = labels(fusedkd::Labels::index(reinterpret_cast<const int32_t*>(base + 4)));
  const cd::LabelArgs i32_off = labels(fusedkd::Labels::index(reinterpret_cast<const int32_t*>(base + 2)));
  const cd::LabelArgs soft = labels(fusedkd::Labels::soft(f(base + 4)));
  const cd::LabelArgs soft_off = labels(fusedkd::Labels::soft(f(base + 1)));
  float* loss = const_cast<float*>(f(base));
  EXPECT_TRUE(impl::pointers_aligned(f(base), f(base + 4), f(base + 8), nullptr, loss, none));
  EXPECT_TRUE(impl::pointers_aligned(f(base), f(base + 4), nullptr, nullptr, loss, i64));
  EXPECT_TRUE(impl::pointers_aligned(f(base), f(base + 4), nullptr, nullptr, loss, i32));
  EXPECT_TRUE(impl::pointers_aligned(f(base), f(base + 4), nullptr, nullptr, loss, soft));
  EXPECT_FALSE(impl::pointers_aligned(f(base), f(base + 4), nullptr, nullptr, loss, i64_off));
  EXPECT_FALSE(impl::pointers_aligned(f(base), f(base + 4), nullptr, nullptr, loss, i32_off));
  EXPECT_FALSE(impl::pointers_aligned(f(base), f(base + 4), nullptr, nullptr, loss, soft_off));
  EXPECT_FALSE(impl::pointers_aligned(f(base + 2), f(base + 4), nullptr, nullptr, loss, none));
  EXPECT_FALSE(impl::pointers_aligned(f(base), f(base + 4), f(base + 8), f(base + 13), loss, none));
  EXPECT_FALSE(impl::pointers_aligned(f(base), f(base), nullptr, nullptr, const_cast<float*>(f(base + 2)), none));
  const auto h = [](uintptr_t p) { return reinterpret_cast<const __half*>(p); };
  EXPECT_TRUE(impl::pointers_aligned(h(base + 2), h(base + 6), nullptr, nullptr, loss, i64));
  EXPECT_FALSE(impl::pointers_aligned(h(base + 1), h(base + 6), nullptr, nullptr, loss, i64));
}

}  // namespace
