// bench/cpu_bench.cpp — fusedkd_bench_cpu: the fused CPU losses against the LibTorch eager port of
// the released code (forward + autograd backward), on one thread and on all cores.
//
// Benchmark names: <loss>/<method>/N:<n>/C:<c>/T:<threads>, method = fused | eager | memcpy |
// expbound.
// Every figure is per call of forward + backward (loss and every gradient):
//   time            median over --fusedkd_reps repetitions (the *_median aggregate)
//   ideal_bytes     each input read once, each gradient written once, the labels read once:
//                   NKD / KD / DKD 3 * N * C * 4 bytes, USKD 4 * N * C * 4, + N * 8 (labels;
//                   not for KD, which runs without labels as the released KDLoss does)
//   bytes_per_second  ideal_bytes / time (effective bandwidth)
//   peak_extra_bytes  the peak heap bytes in use during one call beyond those in use before it,
//                   measured with the counting malloc of memtrack.cpp, minus the gradients the
//                   call returns (eager: autograd allocates them; fused: the caller owns them)
//   copy3|copy4/memcpy/...  std::memcpy of ideal_bytes / 2 (so it moves the ideal bytes of a
//                   3- or 4-transfer loss: read + write), split over the same threads: the copy
//                   bandwidth at the same working set; dram/memcpy: 2 x 256 MiB, out of cache.
//   <loss>/expbound/...  the exponential-throughput bound, one thread: a loop that computes only
//                   the exponentials the fused call computes (exps_per_element(loss) * N * C,
//                   with the same Highway exp, on data in L1), nothing else.
// scripts/plot_bench.py turns the JSON into the tables (ratios, fractions of the copy bandwidth).
//
// Flags (before the Google Benchmark flags): --fusedkd_large (the full large-vocabulary
// shapes N = 4096, 8192 x C = 32000, 128256; skipped when they would not fit in memory),
// --fusedkd_shapes=NxC,NxC (replace the shape list), --fusedkd_losses=nkd,uskd,...,
// --fusedkd_threads=1,2, --fusedkd_reps=K (default 5), --fusedkd_min_time=S (default 0.2),
// --fusedkd_no_eager.
#include <benchmark/benchmark.h>

#include "flags.hpp"
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "eager_f32.hpp"
#include "fusedkd/fusedkd.hpp"
#include "memtrack.hpp"

namespace {

using bench_eager::Loss;

struct Shape {
  int64_t n, c;
};

/// A benchmarked loss: which loss, its options, and its name.
struct LossCase {
  std::string name;
  Loss loss;
  bench_eager::Options options;
  bool image_only = false;  ///< only at the image-classification shapes
};

std::vector<LossCase> all_losses() {
  std::vector<LossCase> v;
  bench_eager::Options defaults;
  v.push_back({"nkd", Loss::kNkd, defaults});  // lambda = 1, gamma = 1.5 (ImageNet)
  bench_eager::Options cifar;
  cifar.nkd = fusedkd::NkdOptions::cifar100();  // lambda = 3, gamma = 3.5: the two-scale path
  v.push_back({"nkd_l3", Loss::kNkd, cifar, true});
  v.push_back({"kd", Loss::kKd, defaults});    // T = 4
  v.push_back({"dkd", Loss::kDkd, defaults});  // T = 4, alpha = 1, beta = 8
  v.push_back({"uskd", Loss::kUskd, defaults});  // alpha = 1, beta = 0.1, mu = 0.005, rank = reference
  return v;
}

int tensors_moved(Loss l) { return l == Loss::kUskd ? 4 : 3; }

/// Exponentials per element of one fused forward + backward call with these options (the count
/// of docs/design.md, "Exponentials and passes"): the teacher losses take theirs in the
/// statistics pass only (one per input and scale), USKD also in its rank keys and its gradient
/// pass. Per-row constants (a few exponentials per row) are left out.
int exps_per_element(const LossCase& lc) {
  switch (lc.loss) {
    case Loss::kNkd: return lc.options.nkd.temperature == 1.0 ? 2 : 4;  // z, v at 1 (and 1/lambda)
    case Loss::kKd: return 2;    // T != 1, no cross-entropy: z, v at 1/T
    case Loss::kDkd: return 2;   // the same
    case Loss::kUskd: return 2 + 1;  // z, w (kept); S_i in the rank keys (paper) or the gradient pass
  }
  return 0;
}

/// KD runs without labels (the released KDLoss takes none): no label bytes.
int64_t ideal_bytes(Loss l, Shape s) {
  return static_cast<int64_t>(tensors_moved(l)) * s.n * s.c * 4 + (l == Loss::kKd ? 0 : s.n * 8);
}

// ---- inputs ---------------------------------------------------------------------------------
/// Random logits and labels of one shape. The teacher (or the weak head) is correlated with the
/// student, the label is mostly the teacher's argmax: a realistic mix for the sort.
struct Data {
  Shape shape{0, 0};
  std::vector<float> z, v;  // student; teacher (or weak logits)
  std::vector<int64_t> labels;
};

Data& data_for(Shape s) {
  static Data d;
  if (d.shape.n == s.n && d.shape.c == s.c) return d;
  d = Data();
  d.shape = s;
  const size_t count = static_cast<size_t>(s.n * s.c);
  d.z.resize(count);
  d.v.resize(count);
  d.labels.resize(static_cast<size_t>(s.n));
  std::mt19937_64 rng(12345 + s.n * 7 + s.c);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> cls(0, s.c - 1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t r = 0; r < s.n; ++r) {
    float* z = d.z.data() + r * s.c;
    float* v = d.v.data() + r * s.c;
    int64_t best = 0;
    for (int64_t i = 0; i < s.c; ++i) {
      z[i] = 2.0f * normal(rng);
      v[i] = 0.7f * z[i] + 1.5f * normal(rng);
      if (v[i] > v[best]) best = i;
    }
    d.labels[static_cast<size_t>(r)] = u(rng) < 0.7f ? best : cls(rng);
  }
  return d;
}

// ---- the methods ----------------------------------------------------------------------------
void set_threads(int t) {
#if defined(_OPENMP)
  omp_set_num_threads(t);
#endif
  if (bench_eager::available()) bench_eager::set_threads(t);
}

/// One fused call: loss and every gradient.
fusedkd::Status fused_call(const LossCase& lc, const Data& d, float* loss, float* gz, float* gw) {
  using fusedkd::matrix;
  const int64_t n = d.shape.n, c = d.shape.c;
  const auto z = matrix<const float>(d.z.data(), n, c);
  const auto v = matrix<const float>(d.v.data(), n, c);
  const auto labels = fusedkd::Labels::index(d.labels.data());
  switch (lc.loss) {
    case Loss::kNkd: return fusedkd::cpu::nkd(z, v, labels, lc.options.nkd, loss, matrix(gz, n, c));
    case Loss::kKd:
      // The released KDLoss takes no labels; the contract's KD without CE needs none either.
      return fusedkd::cpu::kd(z, v, fusedkd::Labels::none(), lc.options.kd, loss, matrix(gz, n, c));
    case Loss::kDkd: return fusedkd::cpu::dkd(z, v, labels, lc.options.dkd, loss, matrix(gz, n, c));
    case Loss::kUskd:
      return fusedkd::cpu::uskd(z, v, labels, lc.options.uskd, loss, matrix(gz, n, c),
                                matrix(gw, n, c));
  }
  return fusedkd::Status::kNotSupported;
}

void set_common_counters(benchmark::State& state, const LossCase& lc, Shape s, int threads,
                         int64_t peak_extra) {
  const int64_t bytes = ideal_bytes(lc.loss, s);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.counters["ideal_bytes"] = benchmark::Counter(static_cast<double>(bytes));
  state.counters["peak_extra_bytes"] = benchmark::Counter(static_cast<double>(peak_extra));
  state.counters["threads"] = benchmark::Counter(threads);
}

void bm_fused(benchmark::State& state, LossCase lc, Shape s, int threads) {
  set_threads(threads);
  const Data& d = data_for(s);
  const size_t count = static_cast<size_t>(s.n * s.c);
  std::vector<float> gz(count), gw(lc.loss == Loss::kUskd ? count : 0);
  float loss = 0.0f;
  const fusedkd::Status st = fused_call(lc, d, &loss, gz.data(), gw.data());  // warm-up
  if (st != fusedkd::Status::kSuccess) {
    state.SkipWithError(fusedkd::status_string(st));
    return;
  }
  const int64_t peak = memtrack::peak_extra([&] { fused_call(lc, d, &loss, gz.data(), gw.data()); });
  for (auto _ : state) {
    fused_call(lc, d, &loss, gz.data(), gw.data());
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  set_common_counters(state, lc, s, threads, peak);
}

void bm_eager(benchmark::State& state, LossCase lc, Shape s, int threads) {
  set_threads(threads);
  const Data& d = data_for(s);
  auto p = bench_eager::make_problem(lc.loss, lc.options, d.z.data(), d.v.data(), d.labels.data(),
                                     s.n, s.c);
  p->run();  // warm-up
  p->release();
  const int64_t grad_bytes = (lc.loss == Loss::kUskd ? 2 : 1) * s.n * s.c * 4;
  const int64_t peak = memtrack::peak_extra([&] { p->run(); }) - grad_bytes;
  p->release();
  for (auto _ : state) {
    float loss = p->run();
    benchmark::DoNotOptimize(loss);
  }
  p->release();
  set_common_counters(state, lc, s, threads, peak);
}

void bm_memcpy(benchmark::State& state, int64_t bytes_moved, int threads) {
  set_threads(threads);
  const size_t size = static_cast<size_t>(bytes_moved / 2);
  std::vector<char> src(size, 1), dst(size, 0);
  for (auto _ : state) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int t = 0; t < threads; ++t) {
      const size_t begin = size * t / threads, end = size * (t + 1) / threads;
      std::memcpy(dst.data() + begin, src.data() + begin, end - begin);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes_moved);
  state.counters["ideal_bytes"] = benchmark::Counter(static_cast<double>(bytes_moved));
  state.counters["threads"] = benchmark::Counter(threads);
}

/// The exponential-throughput bound of one fused call: `count` exponentials with the library's
/// vector exp (fusedkd::detail::exp_lanes), over 4 KiB of arguments that stay in L1.
void bm_expbound(benchmark::State& state, int64_t count) {
  namespace hn = fusedkd::detail::hn;
  const fusedkd::detail::Tag<float> d;
  const size_t lanes = hn::Lanes(d);
  std::vector<float> x(1024);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -20.0f * static_cast<float>(i) / x.size();
  const int64_t blocks = count / static_cast<int64_t>(x.size());
  for (auto _ : state) {
    auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
    for (int64_t b = 0; b < blocks; ++b) {
      for (size_t i = 0; i < x.size(); i += 2 * lanes) {
        acc0 = hn::Add(acc0, fusedkd::detail::exp_lanes(d, hn::LoadU(d, x.data() + i)));
        acc1 = hn::Add(acc1, fusedkd::detail::exp_lanes(d, hn::LoadU(d, x.data() + i + lanes)));
      }
    }
    float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(acc0, acc1)));
    benchmark::DoNotOptimize(sum);
  }
  state.counters["exps"] = benchmark::Counter(static_cast<double>(blocks * static_cast<int64_t>(x.size())));
  state.counters["threads"] = benchmark::Counter(1);
}

// ---- validation: the fused loss and the eager port agree ------------------------------------
std::string validate(const LossCase& lc) {
  const Shape s{64, 100};
  const Data& d = data_for(s);
  const size_t count = static_cast<size_t>(s.n * s.c);
  std::vector<float> gz(count), gw(count), ez(count), ew(count);
  float loss = 0.0f;
  const fusedkd::Status st = fused_call(lc, d, &loss, gz.data(), gw.data());
  if (st != fusedkd::Status::kSuccess) return std::string("fused failed: ") + fusedkd::status_name(st);
  auto p = bench_eager::make_problem(lc.loss, lc.options, d.z.data(), d.v.data(), d.labels.data(),
                                     s.n, s.c);
  const float eloss = p->run();
  p->gradients(ez.data(), ew.data());
  double dg = 0.0, gmax = 0.0;
  for (size_t i = 0; i < count; ++i) {
    dg = std::max(dg, static_cast<double>(std::fabs(gz[i] - ez[i])));
    gmax = std::max(gmax, static_cast<double>(std::fabs(ez[i])));
    if (lc.loss == Loss::kUskd) {
      dg = std::max(dg, static_cast<double>(std::fabs(gw[i] - ew[i])));
      gmax = std::max(gmax, static_cast<double>(std::fabs(ew[i])));
    }
  }
  std::ostringstream o;
  o << "fused vs eager at N=64 C=100: loss " << loss << " vs " << eloss << ", max |dgrad| = " << dg
    << " (max |grad| = " << gmax << ")";
  // The released KDLoss returns the cross-entropy form -T^2 sum T_i log S_i, which is the
  // contract's KL plus T^2 * H(teacher), a constant: only the gradients are comparable.
  const bool same_loss = lc.loss == Loss::kKd || std::fabs(loss - eloss) <= 1e-4 * (1.0 + std::fabs(eloss));
  if (lc.loss == Loss::kKd) o << " (KD: the released code's loss is the cross-entropy form, KL + T^2 H(teacher))";
  const bool ok = same_loss && dg <= 1e-3 * gmax + 1e-7;
  o << (ok ? " ok" : " MISMATCH");
  const std::string r = bench_eager::check_against_reference(lc.loss, lc.options);
  if (!r.empty()) o << "; " << r;
  return o.str();
}

// ---- flags ----------------------------------------------------------------------------------
struct Flags {
  bool large = false;
  bool eager = true;
  int reps = 5;
  double min_time = 0.2;
  std::vector<Shape> shapes;
  std::vector<std::string> losses;
  std::vector<int> threads;
};

using bench_flags::split;
using bench_flags::take;

/// Removes the --fusedkd_* flags from argv, leaving Google Benchmark's.
Flags parse_flags(int* argc, char** argv) {
  Flags f;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    std::string v;
    if (a == "--fusedkd_large") {
      f.large = true;
    } else if (a == "--fusedkd_no_eager") {
      f.eager = false;
    } else if (take(a, "--fusedkd_reps", &v)) {
      f.reps = std::max(1, std::atoi(v.c_str()));
    } else if (take(a, "--fusedkd_min_time", &v)) {
      f.min_time = std::atof(v.c_str());
    } else if (take(a, "--fusedkd_shapes", &v)) {
      for (const auto& p : split(v, ',')) {
        const auto nc = split(p, 'x');
        if (nc.size() == 2) f.shapes.push_back({std::atoll(nc[0].c_str()), std::atoll(nc[1].c_str())});
      }
    } else if (take(a, "--fusedkd_losses", &v)) {
      f.losses = split(v, ',');
    } else if (take(a, "--fusedkd_threads", &v)) {
      for (const auto& t : split(v, ',')) f.threads.push_back(std::max(1, std::atoi(t.c_str())));
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return f;
}

int64_t physical_memory() {
  return static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = parse_flags(&argc, argv);
  if (f.shapes.empty()) {
    // Image classification (CIFAR-100 / ImageNet heads), then a reduced large-vocabulary set:
    // the N = 4096 / 8192 rows x C = 32000 / 128256 take minutes per call in the eager
    // baseline on a small CPU, so by default fewer rows of the same vocabularies (the per-row
    // work is what changes with C). --fusedkd_large adds the full shapes.
    f.shapes = {{128, 100}, {256, 100}, {128, 1000}, {256, 1000}, {64, 32000}, {16, 128256}};
    if (f.large) {
      for (int64_t n : {4096, 8192}) {
        for (int64_t c : {32000, 128256}) f.shapes.push_back({n, c});
      }
    }
  }
  if (f.threads.empty()) {
    int all = static_cast<int>(std::thread::hardware_concurrency());
#if defined(_OPENMP)
    all = omp_get_num_procs();
#endif
    f.threads.push_back(1);
    if (all > 1) f.threads.push_back(all);
  }
  const bool eager = f.eager && bench_eager::available();

  std::vector<LossCase> losses;
  for (const auto& lc : all_losses()) {
    if (bench_flags::listed(f.losses, lc.name)) {
      losses.push_back(lc);
    }
  }

  // Context recorded in the JSON.
  benchmark::AddCustomContext("fusedkd_cpu_model", cpu_model());
  benchmark::AddCustomContext("fusedkd_physical_memory_bytes", std::to_string(physical_memory()));
  benchmark::AddCustomContext("fusedkd_compiler", __VERSION__);
#if defined(_OPENMP)
  benchmark::AddCustomContext("fusedkd_openmp", std::to_string(_OPENMP));
#else
  benchmark::AddCustomContext("fusedkd_openmp", "off");
#endif
  benchmark::AddCustomContext("fusedkd_eager_baseline", eager ? "libtorch" : "absent");
  benchmark::AddCustomContext("fusedkd_repetitions", std::to_string(f.reps));
  benchmark::AddCustomContext("fusedkd_simd_target", hwy::TargetName(HWY_TARGET));
  if (eager) {
    set_threads(1);
    for (const auto& lc : losses) {
      const std::string v = validate(lc);
      std::printf("validation %s: %s\n", lc.name.c_str(), v.c_str());
      benchmark::AddCustomContext("fusedkd_validation_" + lc.name, v);
    }
    std::fflush(stdout);
  }

  const int64_t memory = physical_memory();
  auto configure = [&](benchmark::internal::Benchmark* b) {
    b->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->Repetitions(f.reps)
        ->ReportAggregatesOnly(true)
        ->MinTime(f.min_time);
  };
  for (int t : f.threads) {
    // The copy bandwidth out of cache: 2 x 256 MiB.
    configure(benchmark::RegisterBenchmark(("dram/memcpy/T:" + std::to_string(t)).c_str(), bm_memcpy,
                                           int64_t(512) << 20, t));
  }
  for (const Shape& s : f.shapes) {
    const bool image = s.c <= 1000;
    const std::string shape = "/N:" + std::to_string(s.n) + "/C:" + std::to_string(s.c);
    // memcpy moving the same bytes as the ideal kernel: copy3 for NKD / KD / DKD, copy4 for USKD
    for (int k : {3, 4}) {
      const bool used = std::any_of(losses.begin(), losses.end(), [&](const LossCase& lc) {
        return tensors_moved(lc.loss) == k && (image || !lc.image_only);
      });
      if (!used) continue;
      const int64_t bytes = static_cast<int64_t>(k) * s.n * s.c * 4 + s.n * 8;
      if (2 * bytes > memory * 8 / 10) continue;
      for (int t : f.threads) {
        configure(benchmark::RegisterBenchmark(
            ("copy" + std::to_string(k) + "/memcpy" + shape + "/T:" + std::to_string(t)).c_str(),
            bm_memcpy, bytes, t));
      }
    }
    for (const auto& lc : losses) {
      if (lc.image_only && !image) continue;
      // inputs + gradients of fused, and a rough 24 [N, C] float temporaries for the eager port
      const int64_t nc4 = s.n * s.c * 4;
      const int64_t need = 2 * tensors_moved(lc.loss) * nc4 + (eager ? 24 * nc4 : 0);
      const bool fits = need < memory * 8 / 10;
      configure(benchmark::RegisterBenchmark((lc.name + "/expbound" + shape + "/T:1").c_str(),
                                             bm_expbound, exps_per_element(lc) * s.n * s.c));
      for (int t : f.threads) {
        const std::string tail = shape + "/T:" + std::to_string(t);
        if (!fits) {
          std::printf("skipping %s%s: needs about %.1f GB of %.1f GB\n", lc.name.c_str(), tail.c_str(),
                      need / 1e9, memory / 1e9);
          continue;
        }
        if (eager) {
          configure(benchmark::RegisterBenchmark((lc.name + "/eager" + tail).c_str(), bm_eager, lc, s, t));
        }
        configure(benchmark::RegisterBenchmark((lc.name + "/fused" + tail).c_str(), bm_fused, lc, s, t));
      }
    }
  }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
