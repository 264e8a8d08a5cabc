// tests/cuda/sanitize_sweep.cpp — a small sweep that reaches every fusedkd CUDA kernel, for
// compute-sanitizer (memcheck, racecheck, initcheck, synccheck). Small N, every loss, float and
// half (the two vector widths), every kernel path by C (USKD: every block-sort shape and the
// segmented sort), hard (with an ignored row) and soft labels, a bad label (async and
// Validation::kSync, which also runs the soft-label check kernel), the scalar fallback
// (misaligned), in place, a CUDA graph, and N = 2100 (three segments of the two-level batch sum).
// It ends with cudaDeviceReset, so that memcheck's leak check sees every allocation.
//
//   fusedkd_cuda_sweep [--quick]     exit 0 when every call behaved, 1 otherwise, 2 without a GPU
//   fusedkd_cuda_sweep --device      says whether this build sees a usable CUDA device (0 / 2)
//   (--quick: float only for the variants; every kernel is still reached)
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runner/runner.hpp"

using fkcuda::DType;
using fkcuda::LabelKind;
using fkcuda::Loss;
using fkcuda::Problem;
using fusedkd::Status;

namespace {

Problem make(Loss loss, DType d, int64_t n, int64_t c, LabelKind k, uint32_t seed) {
  Problem p;
  p.loss = loss;
  p.dtype = d;
  p.n = n;
  p.c = c;
  p.label_kind = k;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 2.0f);
  for (int64_t i = 0; i < n * c; ++i) {
    p.student.push_back(g(rng));
    p.other.push_back(g(rng));
  }
  fkcuda::round_inputs(p);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t label = r == 1 ? -100 : static_cast<int64_t>(rng() % static_cast<uint32_t>(c));
    p.labels64.push_back(label);
    p.labels32.push_back(static_cast<int32_t>(label));
  }
  if (k == LabelKind::kSoft) {
    for (int64_t i = 0; i < n * c; ++i) p.soft.push_back(static_cast<float>(rng() % 5));
    for (int64_t r = 0; r < n; ++r) p.soft[r * c] += 1.0f;
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--help") == 0) {
    std::printf("fusedkd_cuda_sweep [--quick]: every fusedkd CUDA kernel once, for compute-sanitizer\n");
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "--device") == 0) {  // gpu-check: can this build run here?
    std::string why;
    if (!fkcuda::device_available(&why)) {
      std::printf("%s\n", why.c_str());
      return 2;
    }
    std::printf("CUDA device: %s\n", fkcuda::device_name().c_str());
    return 0;
  }
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::string why;
  if (!fkcuda::device_available(&why)) {
    std::printf("%s\n", why.c_str());
    return 2;
  }
  int runs = 0, bad = 0;
  uint32_t seed = 1;
  auto go = [&](const Problem& p, Status want_check, Status want_status = Status::kSuccess) {
    const fkcuda::Result r = fkcuda::run(p);
    ++runs;
    const bool ok = r.error.empty() && r.status == want_status && r.check == want_check;
    if (!ok) {
      ++bad;
      std::printf("FAIL %s %s N=%lld C=%lld labels=%s: status %s, check %s %s\n", fkcuda::loss_name(p.loss),
                  fkcuda::dtype_name(p.dtype), static_cast<long long>(p.n), static_cast<long long>(p.c),
                  fkcuda::label_name(p.label_kind), fusedkd::status_name(r.status), fusedkd::status_name(r.check),
                  r.error.c_str());
    }
  };
  for (Loss loss : {Loss::kNkd, Loss::kKd, Loss::kDkd, Loss::kUskd}) {
    for (DType d : {DType::kFloat32, DType::kFloat16}) {
      std::vector<int64_t> cs = loss == Loss::kUskd ? std::vector<int64_t>{10, 300, 1500, 4500}
                                                    : std::vector<int64_t>{10, 1000, 40000};
      for (int64_t c : cs) {
        go(make(loss, d, 3, c, LabelKind::kHard64, seed++), Status::kSuccess);
        if (quick && d != DType::kFloat32) continue;
        go(make(loss, d, 3, c, LabelKind::kSoft, seed++), Status::kSuccess);
        Problem sync = make(loss, d, 3, c, LabelKind::kSoft, seed++);
        sync.sync_validation = true;
        go(sync, Status::kSuccess);
        Problem g = make(loss, d, 3, c, LabelKind::kHard64, seed++);
        g.graph = true;
        go(g, Status::kSuccess);
        Problem m = make(loss, d, 2, c, LabelKind::kHard32, seed++);
        m.misalign = true;
        m.in_place = true;
        m.common().reduction = fusedkd::Reduction::kNone;
        go(m, Status::kSuccess);
        Problem b = make(loss, d, 3, c, LabelKind::kHard64, seed++);
        b.labels64[2] = c + 5;
        go(b, Status::kLabelOutOfRange);
        b.sync_validation = true;
        go(b, Status::kLabelOutOfRange, Status::kLabelOutOfRange);
        Problem e = make(loss, d, 3, c, LabelKind::kSoft, seed++);
        for (int64_t i = 0; i < c; ++i) e.soft[static_cast<size_t>(2 * c + i)] = 0.0f;
        e.sync_validation = true;
        go(e, Status::kEmptySoftLabelRow, Status::kEmptySoftLabelRow);
      }
      // Several segments of the batch sum (and several pre-pass blocks' worth of labels).
      go(make(loss, d, 2100, 10, LabelKind::kHard32, seed++), Status::kSuccess);
    }
  }
  std::printf("%d runs, %d failed\n", runs, bad);
  if (!fkcuda::device_reset()) {
    std::printf("cudaDeviceReset failed\n");
    ++bad;
  }
  return bad == 0 ? 0 : 1;
}
