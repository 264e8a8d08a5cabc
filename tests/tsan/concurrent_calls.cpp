// tests/tsan/concurrent_calls.cpp — every CPU loss called from several threads at once on shared
// inputs (each thread with its own outputs), built with -fsanitize=thread by .ci/run. Checks that
// ThreadSanitizer finds no race, that the program starts at all under TSan (the CPU clones'
// load-time selector once crashed it before main), and that every concurrent result is bitwise
// the single-threaded one. Built without OpenMP: libgomp is not TSan-instrumented.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "fusedkd/fusedkd.hpp"

namespace {

constexpr int kThreads = 4, kRepeats = 3;

template <typename T>
struct Problem {
  int64_t n, c;
  std::vector<T> z, v;
  std::vector<int64_t> labels;
  std::vector<float> soft;
};

template <typename T>
Problem<T> make(int64_t n, int64_t c, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> normal(0.0, 3.0);
  Problem<T> p{n, c, {}, {}, {}, {}};
  for (int64_t i = 0; i < n * c; ++i) {
    p.z.push_back(static_cast<T>(normal(g)));
    p.v.push_back(static_cast<T>(normal(g)));
    p.soft.push_back(static_cast<float>(g() % 4) / 4.0f);
  }
  for (int64_t r = 0; r < n; ++r) {
    p.labels.push_back(static_cast<int64_t>(g() % static_cast<uint64_t>(c)));
    p.soft[static_cast<size_t>(r * c)] = 1.0f;  // a positive entry in every row
  }
  return p;
}

/// Runs loss `which` (0 NKD, 1 KD, 2 DKD, 3 USKD) with hard or soft labels; returns the loss
/// and the gradients as bytes.
template <typename T>
std::vector<unsigned char> run(const Problem<T>& p, int which, bool soft) {
  using A = fusedkd::acc_t<T>;
  const auto z = fusedkd::matrix(p.z.data(), p.n, p.c), v = fusedkd::matrix(p.v.data(), p.n, p.c);
  const fusedkd::Labels labels =
      soft ? fusedkd::Labels::soft(p.soft.data()) : fusedkd::Labels::index(p.labels.data());
  std::vector<A> loss(static_cast<size_t>(p.n));
  std::vector<T> gz(p.z.size()), gw(p.z.size());
  const auto mgz = fusedkd::matrix(gz.data(), p.n, p.c), mgw = fusedkd::matrix(gw.data(), p.n, p.c);
  fusedkd::Status s = fusedkd::Status::kNotSupported;
  switch (which) {
    case 0: {
      fusedkd::NkdOptions o;
      o.reduction = fusedkd::Reduction::kNone;
      s = fusedkd::cpu::nkd(z, v, labels, o, loss.data(), mgz);
      break;
    }
    case 1: s = fusedkd::cpu::kd(z, v, labels, fusedkd::KdOptions(), loss.data(), mgz); break;
    case 2: s = fusedkd::cpu::dkd(z, v, labels, fusedkd::DkdOptions(), loss.data(), mgz); break;
    case 3: s = fusedkd::cpu::uskd(z, v, labels, fusedkd::UskdOptions(), loss.data(), mgz, mgw); break;
  }
  if (s != fusedkd::Status::kSuccess) {
    std::fprintf(stderr, "loss %d failed: %s\n", which, fusedkd::status_name(s));
    std::exit(1);
  }
  std::vector<unsigned char> out(loss.size() * sizeof(A) + 2 * gz.size() * sizeof(T));
  std::memcpy(out.data(), loss.data(), loss.size() * sizeof(A));
  std::memcpy(out.data() + loss.size() * sizeof(A), gz.data(), gz.size() * sizeof(T));
  std::memcpy(out.data() + loss.size() * sizeof(A) + gz.size() * sizeof(T), gw.data(), gw.size() * sizeof(T));
  return out;
}

template <typename T>
int check(const char* type) {
  const Problem<T> p = make<T>(8, 300, 11);
  int bad = 0;
  for (int which = 0; which < 4; ++which) {
    for (bool soft : {false, true}) {
      const std::vector<unsigned char> want = run(p, which, soft);
      std::vector<int> same(kThreads, 1);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          for (int k = 0; k < kRepeats; ++k) same[static_cast<size_t>(t)] &= run(p, which, soft) == want;
        });
      }
      for (std::thread& t : threads) t.join();
      for (int t = 0; t < kThreads; ++t) {
        if (!same[static_cast<size_t>(t)]) {
          std::fprintf(stderr, "%s loss %d soft %d: thread %d's result differs\n", type, which, soft, t);
          ++bad;
        }
      }
    }
  }
  return bad;
}

}  // namespace

int main() {
  const int bad = check<float>("float") + check<double>("double");
  std::printf("concurrent calls: %s\n", bad == 0 ? "all results identical" : "MISMATCH");
  return bad == 0 ? 0 : 1;
}
