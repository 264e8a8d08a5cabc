// tests/cuda/timing.cpp — a short timing table of the fused CUDA losses.
//
// For each loss, dtype and shape: milliseconds per call (CUDA events, mean of the timed calls
// after warm-up), the bytes an ideal kernel moves (teacher losses: read z, v and write dz = 3 N C
// elements; USKD: read z, w and write dz, dw = 4 N C), the GB/s that makes, and that as a
// fraction of the device's measured device-to-device copy bandwidth.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "runner/runner.hpp"

using fkcuda::DType;
using fkcuda::LabelKind;
using fkcuda::Loss;
using fkcuda::Problem;

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--help") == 0) {
    std::printf("fusedkd_cuda_timing: a short timing table of the fused CUDA losses (needs a GPU)\n");
    return 0;
  }
  std::string why;
  if (!fkcuda::device_available(&why)) {
    std::printf("%s\n", why.c_str());
    return 2;
  }
  const double copy = fkcuda::copy_gbps(size_t(1) << 30);
  std::printf("device: %s, device-to-device copy %.0f GB/s (read + write)\n", fkcuda::device_name().c_str(), copy);
  std::printf("%-5s %-9s %6s %7s %10s %10s %8s %6s\n", "loss", "dtype", "N", "C", "ms", "MB ideal", "GB/s", "%copy");
  struct Shape {
    int64_t n, c;
  };
  const Shape shapes[] = {{256, 1000}, {4096, 1000}, {1024, 32000}, {256, 128256}};
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 2.0f);
  for (const Shape& s : shapes) {
    Problem base;
    base.n = s.n;
    base.c = s.c;
    base.student.resize(static_cast<size_t>(s.n * s.c));
    base.other.resize(base.student.size());
    for (float& x : base.student) x = g(rng);
    for (float& x : base.other) x = g(rng);
    base.label_kind = LabelKind::kHard64;
    for (int64_t r = 0; r < s.n; ++r) base.labels64.push_back(static_cast<int64_t>(rng() % static_cast<uint32_t>(s.c)));
    for (Loss loss : {Loss::kNkd, Loss::kKd, Loss::kDkd, Loss::kUskd}) {
      for (DType d : {DType::kFloat32, DType::kBFloat16}) {
        Problem p = base;
        p.loss = loss;
        p.dtype = d;
        fkcuda::round_inputs(p);
        const int iters = s.n * s.c > 10000000 ? 5 : 20;
        const double ms = fkcuda::time_ms(p, iters);
        const double elem = d == DType::kFloat32 ? 4.0 : 2.0;
        const double bytes = (loss == Loss::kUskd ? 4.0 : 3.0) * static_cast<double>(s.n * s.c) * elem;
        const double gbps = ms > 0 ? bytes / (ms * 1e-3) / 1e9 : 0.0;
        std::printf("%-5s %-9s %6lld %7lld %10.4f %10.1f %8.0f %5.0f%%\n", fkcuda::loss_name(loss),
                    fkcuda::dtype_name(d), static_cast<long long>(s.n), static_cast<long long>(s.c), ms, bytes / 1e6,
                    gbps, copy > 0 ? 100.0 * gbps / copy : 0.0);
      }
    }
  }
  return 0;
}
