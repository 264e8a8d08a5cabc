// tests/cuda/shard_test.cu — the column-sharded losses on CUDA (cuda_shard.cuh) and over NCCL
// (dist/nccl.cuh), against the CPU's shard calls (themselves checked against the unsharded
// losses by tests/unit_shard_test.cpp and tests/mpi/). k shards simulated on one device: phase 1
// per shard, the all-gather as device copies, phase 2 per shard, sum_shares. NCCL: a one-rank
// communicator (one GPU), which runs the adapter's whole sequence, also under graph capture.
// Every test skips without a CUDA device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "fusedkd/cuda_shard.cuh"
#if defined(FUSEDKD_TEST_NCCL)
#include "fusedkd/dist/nccl.cuh"
#endif

namespace {

using fusedkd::Labels;
using fusedkd::Reduction;
using fusedkd::Shard;
using fusedkd::Status;

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    int count_ = 0;                                                            \
    if (cudaGetDeviceCount(&count_) != cudaSuccess || count_ == 0) {           \
      cudaGetLastError();                                                      \
      GTEST_SKIP() << "no CUDA device";                                        \
    }                                                                          \
  } while (0)

#define CK(x) ASSERT_EQ((x), cudaSuccess)

template <typename U>
struct Dev {
  U* p = nullptr;
  explicit Dev(size_t n) { cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(U)); }
  ~Dev() { cudaFree(p); }
};

template <typename T> T to_t(float x) { return T(x); }
template <> __half to_t<__half>(float x) { return __float2half(x); }
template <> __nv_bfloat16 to_t<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <typename T> float to_f(T x) { return float(x); }
template <> float to_f<__half>(__half x) { return __half2float(x); }
template <> float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

struct Host {
  int64_t n, c;
  std::vector<float> z, v;  // values representable in T (rounded through it)
  std::vector<int64_t> labels;
};

template <typename T>
Host make(int64_t n, int64_t c, unsigned seed) {
  Host h{n, c, std::vector<float>(n * c), std::vector<float>(n * c), std::vector<int64_t>(n)};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int64_t i = 0; i < n * c; ++i) {
    h.z[i] = to_f(to_t<T>(nd(rng)));
    h.v[i] = to_f(to_t<T>(0.7f * h.z[i] + 0.8f * nd(rng)));
  }
  for (int64_t r = 0; r < n; ++r) h.labels[r] = r == 1 ? -100 : (r * 7919 + 3) % c;
  return h;
}

template <class O, typename T>
void compare(const O& o, int64_t n, int64_t c, int world, double tol) {
  const Host h = make<T>(n, c, 7u + static_cast<unsigned>(c));
  std::vector<int64_t> b(world + 1);
  for (int k = 0; k <= world; ++k) b[k] = c * k * (k + 1) / (world * (world + 1));  // uneven
  // The CPU's shard calls on the same (rounded) values, in float.
  const int64_t rec = n * fusedkd::kShardStatsPerRow;
  const int64_t nloss = o.reduction == Reduction::kNone ? n : 1;
  std::vector<float> cpu_rec(world * rec), cpu_share(world * nloss), cpu_loss(nloss), cpu_g(n * c);
  for (int k = 0; k < world; ++k) {
    ASSERT_EQ(fusedkd::cpu::shard_stats(fusedkd::matrix(h.z.data() + b[k], n, b[k + 1] - b[k], c),
                                        fusedkd::matrix(h.v.data() + b[k], n, b[k + 1] - b[k], c),
                                        Labels::index(h.labels.data()), Shard{b[k], c}, o, cpu_rec.data() + k * rec),
              Status::kSuccess);
  }
  for (int k = 0; k < world; ++k) {
    ASSERT_EQ(fusedkd::cpu::shard_finish(fusedkd::matrix(h.z.data() + b[k], n, b[k + 1] - b[k], c),
                                         fusedkd::matrix(h.v.data() + b[k], n, b[k + 1] - b[k], c),
                                         Labels::index(h.labels.data()), Shard{b[k], c}, o, cpu_rec.data(), world,
                                         cpu_share.data() + k * nloss,
                                         fusedkd::matrix(cpu_g.data() + b[k], n, b[k + 1] - b[k], c)),
              Status::kSuccess);
  }
  fusedkd::cpu::sum_shares(cpu_share.data(), world, nloss, cpu_loss.data());

  // The same on the device.
  std::vector<T> zt(n * c), vt(n * c);
  for (int64_t i = 0; i < n * c; ++i) {
    zt[i] = to_t<T>(h.z[i]);
    vt[i] = to_t<T>(h.v[i]);
  }
  Dev<T> z(n * c), v(n * c), g(n * c);
  Dev<int64_t> lab(n);
  Dev<float> recs(world * rec), shares(world * nloss), loss(nloss);
  const size_t wsb = fusedkd::cuda::shard_workspace_size(n);
  Dev<unsigned char> ws(wsb);
  CK(cudaMemcpy(z.p, zt.data(), n * c * sizeof(T), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(v.p, vt.data(), n * c * sizeof(T), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(lab.p, h.labels.data(), n * sizeof(int64_t), cudaMemcpyHostToDevice));
  for (int k = 0; k < world; ++k) {
    const int64_t w = b[k + 1] - b[k];
    ASSERT_EQ(fusedkd::cuda::shard_stats(fusedkd::matrix<const T>(z.p + b[k], n, w, c),
                                         fusedkd::matrix<const T>(v.p + b[k], n, w, c), Labels::index(lab.p),
                                         Shard{b[k], c}, o, recs.p + k * rec, ws.p, wsb),
              Status::kSuccess);
  }
  for (int k = 0; k < world; ++k) {
    const int64_t w = b[k + 1] - b[k];
    ASSERT_EQ(fusedkd::cuda::shard_finish(fusedkd::matrix<const T>(z.p + b[k], n, w, c),
                                          fusedkd::matrix<const T>(v.p + b[k], n, w, c), Labels::index(lab.p),
                                          Shard{b[k], c}, o, recs.p, world, shares.p + k * nloss,
                                          fusedkd::matrix(g.p + b[k], n, w, c), ws.p, wsb),
              Status::kSuccess);
  }
  ASSERT_EQ(fusedkd::cuda::sum_shares(shares.p, world, nloss, loss.p), Status::kSuccess);
  ASSERT_EQ(fusedkd::cuda::check(ws.p), Status::kSuccess);
  std::vector<float> dl(nloss);
  std::vector<T> dg(n * c);
  CK(cudaMemcpy(dl.data(), loss.p, nloss * sizeof(float), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(dg.data(), g.p, n * c * sizeof(T), cudaMemcpyDeviceToHost));
  for (int64_t k = 0; k < nloss; ++k) EXPECT_NEAR(dl[k], cpu_loss[k], tol * std::max(1.0f, std::fabs(cpu_loss[k])));
  float gm = 1e-30f;
  for (float x : cpu_g) gm = std::max(gm, std::fabs(x));
  double worst = 0;
  for (int64_t i = 0; i < n * c; ++i) worst = std::max(worst, double(std::fabs(to_f(dg[i]) - cpu_g[i])));
  EXPECT_LE(worst, tol * gm);
}

template <typename T>
void all_losses(double tol) {
  for (const Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
    for (const int64_t c : {37, 5000, 128256})
      for (const int world : {1, 2, 3, 4}) {
        SCOPED_TRACE("C=" + std::to_string(c) + " world=" + std::to_string(world) + " red=" +
                     std::to_string(static_cast<int>(red)));
        fusedkd::NkdOptions nkd;
        nkd.reduction = red;
        nkd.ce_weight = 0.3;
        fusedkd::KdOptions kd;
        kd.reduction = red;
        fusedkd::DkdOptions dkd;
        dkd.reduction = red;
        dkd.ce_weight = 0.2;
        compare<fusedkd::NkdOptions, T>(nkd, 6, c, world, tol);
        compare<fusedkd::KdOptions, T>(kd, 6, c, world, tol);
        compare<fusedkd::DkdOptions, T>(dkd, 6, c, world, tol);
      }
}

TEST(CudaShard, MatchesCpuFloat) {
  SKIP_WITHOUT_GPU();
  all_losses<float>(1e-4);
}
TEST(CudaShard, MatchesCpuBFloat16) {  // same inputs; the gradient is rounded to bf16
  SKIP_WITHOUT_GPU();
  all_losses<__nv_bfloat16>(1e-2);
}
TEST(CudaShard, MatchesCpuHalf) {
  SKIP_WITHOUT_GPU();
  all_losses<__half>(2e-3);
}

TEST(CudaShard, HostChecks) {  // no device needed: refused before any launch
  fusedkd::NkdOptions o;
  float dummy = 0;
  const float* p = &dummy;
  EXPECT_EQ(fusedkd::cuda::shard_stats(fusedkd::matrix(p, 2, 4, 4), fusedkd::matrix(p, 2, 4, 4),
                                       Labels::index(reinterpret_cast<const int64_t*>(p)), Shard{7, 10}, o, &dummy,
                                       &dummy, 1 << 20),
            Status::kShapeMismatch);
  EXPECT_EQ(fusedkd::cuda::shard_stats(fusedkd::matrix(p, 2, 4, 4), fusedkd::matrix(p, 2, 4, 4),
                                       Labels::index(reinterpret_cast<const int64_t*>(p)), Shard{0, 10}, o, &dummy,
                                       &dummy, 16),
            Status::kWorkspaceTooSmall);
}

#if defined(FUSEDKD_TEST_NCCL)
/// One rank over NCCL (one GPU): the adapter's sequence, direct and captured in a graph.
TEST(NcclShard, OneRankMatchesCuda) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 4, c = 5000;
  const Host h = make<float>(n, c, 3u);
  fusedkd::DkdOptions o;
  o.ce_weight = 0.5;
  float cpu_loss = 0;
  std::vector<float> cpu_g(n * c);
  ASSERT_EQ(fusedkd::cpu::dkd(fusedkd::matrix(h.z.data(), n, c), fusedkd::matrix(h.v.data(), n, c),
                              Labels::index(h.labels.data()), o, &cpu_loss, fusedkd::matrix(cpu_g.data(), n, c)),
            Status::kSuccess);
  ncclComm_t comm;
  int dev = 0;
  ASSERT_EQ(ncclCommInitAll(&comm, 1, &dev), ncclSuccess);
  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));
  Dev<float> z(n * c), v(n * c), g(n * c), loss(1);
  Dev<int64_t> lab(n);
  const size_t wsb = fusedkd::nccl::shard_loss_workspace_size(n, 1, o.reduction);
  Dev<unsigned char> ws(wsb);
  CK(cudaMemcpy(z.p, h.z.data(), n * c * sizeof(float), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(v.p, h.v.data(), n * c * sizeof(float), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(lab.p, h.labels.data(), n * sizeof(int64_t), cudaMemcpyHostToDevice));
  auto call = [&] {
    return fusedkd::nccl::shard_loss(comm, stream, fusedkd::matrix<const float>(z.p, n, c),
                                     fusedkd::matrix<const float>(v.p, n, c), Labels::index(lab.p), Shard{0, c}, o,
                                     loss.p, fusedkd::matrix(g.p, n, c), ws.p, wsb);
  };
  for (int pass = 0; pass < 2; ++pass) {
    CK(cudaMemset(loss.p, 0, sizeof(float)));
    if (pass == 0) {
      ASSERT_EQ(call(), Status::kSuccess);
    } else {  // graph capture
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      ASSERT_EQ(call(), Status::kSuccess);
      CK(cudaStreamEndCapture(stream, &graph));
      CK(cudaGraphInstantiate(&exec, graph, 0));
      CK(cudaGraphLaunch(exec, stream));
      CK(cudaGraphExecDestroy(exec));
      CK(cudaGraphDestroy(graph));
    }
    CK(cudaStreamSynchronize(stream));
    float l = 0;
    std::vector<float> dg(n * c);
    CK(cudaMemcpy(&l, loss.p, sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(dg.data(), g.p, n * c * sizeof(float), cudaMemcpyDeviceToHost));
    EXPECT_NEAR(l, cpu_loss, 1e-4 * std::max(1.0f, std::fabs(cpu_loss))) << "pass " << pass;
    double worst = 0, gm = 1e-30;
    for (int64_t i = 0; i < n * c; ++i) {
      worst = std::max(worst, double(std::fabs(dg[i] - cpu_g[i])));
      gm = std::max(gm, double(std::fabs(cpu_g[i])));
    }
    EXPECT_LE(worst, 1e-4 * gm) << "pass " << pass;
  }
  cudaStreamDestroy(stream);
  ncclCommDestroy(comm);
}
#endif

}  // namespace
