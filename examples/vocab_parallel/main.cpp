// examples/vocab_parallel — NKD, KD and DKD on a 4 x 128256 problem whose classes are split over
// the MPI ranks (vocabulary parallelism), next to the single-process loss.
//
//   mpirun -n 4 build/examples/fusedkd-vocab-parallel
//   (as root, or with more ranks than cores: scripts/vocab-parallel.sh 4, which adds the flags)
//
// Every rank makes the same random logits (fixed seed), keeps its columns, and calls
// fusedkd::mpi::shard_loss: 8 floats per row cross the network instead of the logits. Rank 0
// also computes the unsharded loss on the whole rows and prints both.
//
//   --bench [N] [REPS]   time the sharded call against all-gathering the full student and
//                        teacher logits and calling the unsharded loss on every rank (N rows,
//                        default 4; REPS repetitions, median reported, default 20).
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fusedkd/dist/mpi.hpp"
#include "fusedkd/fusedkd.hpp"

namespace {

constexpr int64_t kClasses = 128256;  // a Llama-3-size vocabulary

struct Problem {
  int64_t n, c;
  std::vector<float> z, v;
  std::vector<int64_t> labels;
};

Problem make_problem(int64_t n, int64_t c) {
  Problem p{n, c, std::vector<float>(static_cast<size_t>(n * c)), std::vector<float>(static_cast<size_t>(n * c)),
            std::vector<int64_t>(static_cast<size_t>(n))};
  std::mt19937 rng(2024);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (size_t i = 0; i < p.z.size(); ++i) {
    p.z[i] = nd(rng);
    p.v[i] = 0.8f * p.z[i] + 0.6f * nd(rng);
  }
  for (int64_t r = 0; r < n; ++r) {
    p.labels[static_cast<size_t>(r)] = (r * 40009 + 17) % c;  // targets spread over the shards
    p.v[static_cast<size_t>(r * c + p.labels[static_cast<size_t>(r)])] += 6.0f;
  }
  return p;
}

template <class O>
fusedkd::Status full_loss(const Problem& p, const O& o, float* loss, std::vector<float>& g);
template <>
fusedkd::Status full_loss(const Problem& p, const fusedkd::NkdOptions& o, float* loss, std::vector<float>& g) {
  return fusedkd::cpu::nkd(fusedkd::matrix(p.z.data(), p.n, p.c), fusedkd::matrix(p.v.data(), p.n, p.c),
                           fusedkd::Labels::index(p.labels.data()), o, loss, fusedkd::matrix(g.data(), p.n, p.c));
}
template <>
fusedkd::Status full_loss(const Problem& p, const fusedkd::KdOptions& o, float* loss, std::vector<float>& g) {
  return fusedkd::cpu::kd(fusedkd::matrix(p.z.data(), p.n, p.c), fusedkd::matrix(p.v.data(), p.n, p.c),
                          fusedkd::Labels::index(p.labels.data()), o, loss, fusedkd::matrix(g.data(), p.n, p.c));
}
template <>
fusedkd::Status full_loss(const Problem& p, const fusedkd::DkdOptions& o, float* loss, std::vector<float>& g) {
  return fusedkd::cpu::dkd(fusedkd::matrix(p.z.data(), p.n, p.c), fusedkd::matrix(p.v.data(), p.n, p.c),
                           fusedkd::Labels::index(p.labels.data()), o, loss, fusedkd::matrix(g.data(), p.n, p.c));
}

struct Ctx {
  int rank, world;
  int64_t first, width;
};

Ctx context(int64_t c) {
  Ctx x;
  MPI_Comm_rank(MPI_COMM_WORLD, &x.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &x.world);
  x.first = c * x.rank / x.world;
  x.width = c * (x.rank + 1) / x.world - x.first;
  return x;
}

/// The sharded call on this rank's columns of p.
template <class O>
fusedkd::Status sharded(const Problem& p, const Ctx& x, const O& o, float* loss, std::vector<float>& g) {
  return fusedkd::mpi::shard_loss(MPI_COMM_WORLD, fusedkd::matrix(p.z.data() + x.first, p.n, x.width, p.c),
                                  fusedkd::matrix(p.v.data() + x.first, p.n, x.width, p.c),
                                  fusedkd::Labels::index(p.labels.data()), fusedkd::Shard{x.first, p.c}, o,
                                  loss, fusedkd::matrix(g.data(), p.n, x.width));
}

/// The approach the shard API replaces: all-gather both logits matrices (each rank sends its
/// [N, width] slices), lay the rows out whole, call the unsharded loss, keep this rank's
/// gradient columns.
template <class O>
fusedkd::Status gathered(const Problem& p, const Ctx& x, const O& o, std::vector<float>& zs,
                         std::vector<float>& recv, Problem& whole, float* loss, std::vector<float>& g,
                         std::vector<float>& gfull) {
  const int64_t n = p.n, c = p.c;
  std::vector<int> counts(static_cast<size_t>(x.world)), displs(static_cast<size_t>(x.world));
  for (int k = 0; k < x.world; ++k) {
    const int64_t f = c * k / x.world, w = c * (k + 1) / x.world - f;
    counts[static_cast<size_t>(k)] = static_cast<int>(2 * n * w);
    displs[static_cast<size_t>(k)] = static_cast<int>(2 * n * f);
  }
  for (int64_t r = 0; r < n; ++r) {  // this rank's slices, packed: student rows then teacher rows
    std::memcpy(zs.data() + r * x.width, p.z.data() + r * c + x.first, sizeof(float) * x.width);
    std::memcpy(zs.data() + (n + r) * x.width, p.v.data() + r * c + x.first, sizeof(float) * x.width);
  }
  MPI_Allgatherv(zs.data(), static_cast<int>(2 * n * x.width), MPI_FLOAT, recv.data(), counts.data(),
                 displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
  for (int k = 0; k < x.world; ++k) {  // unpack into whole rows
    const int64_t f = c * k / x.world, w = c * (k + 1) / x.world - f;
    const float* part = recv.data() + 2 * n * f;
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(whole.z.data() + r * c + f, part + r * w, sizeof(float) * w);
      std::memcpy(whole.v.data() + r * c + f, part + (n + r) * w, sizeof(float) * w);
    }
  }
  const fusedkd::Status s = full_loss(whole, o, loss, gfull);
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(g.data() + r * x.width, gfull.data() + r * c + x.first, sizeof(float) * x.width);
  }
  return s;
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <class O>
int compare(const char* name, const O& o, const Problem& p, const Ctx& x) {
  float loss_sharded = 0.0f, loss_full = 0.0f;
  std::vector<float> g(static_cast<size_t>(std::max<int64_t>(1, p.n * x.width)));
  const fusedkd::Status s = sharded(p, x, o, &loss_sharded, g);
  int bad = s != fusedkd::Status::kSuccess;
  if (x.rank == 0) {
    std::vector<float> gf(p.z.size());
    bad |= full_loss(p, o, &loss_full, gf) != fusedkd::Status::kSuccess;
    double gerr = 0.0;  // rank 0's gradient columns against the unsharded gradient
    for (int64_t r = 0; r < p.n; ++r)
      for (int64_t i = 0; i < x.width; ++i)
        gerr = std::max(gerr, std::fabs(static_cast<double>(g[r * x.width + i]) - gf[r * p.c + x.first + i]));
    std::printf("%-4s  sharded over %d ranks: %.7f   single process: %.7f   |diff| %.2e   rank 0 grad max |diff| %.2e\n",
                name, x.world, loss_sharded, loss_full, std::fabs(loss_sharded - loss_full), gerr);
    bad |= !(std::fabs(loss_sharded - loss_full) <= 1e-4 * std::max(1.0f, std::fabs(loss_full)));
  }
  if (s != fusedkd::Status::kSuccess) std::fprintf(stderr, "rank %d: %s\n", x.rank, fusedkd::status_string(s));
  return bad;
}

template <class O>
void bench(const char* name, const O& o, const Problem& p, const Ctx& x, int reps) {
  const int64_t n = p.n, c = p.c;
  std::vector<float> g(static_cast<size_t>(std::max<int64_t>(1, n * x.width)));
  std::vector<float> zs(static_cast<size_t>(2 * n * x.width + 1)), recv(static_cast<size_t>(2 * n * c));
  std::vector<float> gfull(static_cast<size_t>(n * c));
  Problem whole{n, c, std::vector<float>(static_cast<size_t>(n * c)), std::vector<float>(static_cast<size_t>(n * c)),
                p.labels};
  std::vector<double> ts, tg;
  float l1 = 0, l2 = 0;
  for (int i = 0; i < reps + 2; ++i) {  // two warm-up rounds
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    sharded(p, x, o, &l1, g);
    double t1 = MPI_Wtime(), worst = 0.0, mine = t1 - t0;
    MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);  // the slowest rank
    if (i >= 2) ts.push_back(worst);
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    gathered(p, x, o, zs, recv, whole, &l2, g, gfull);
    t1 = MPI_Wtime();
    mine = t1 - t0;
    MPI_Allreduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (i >= 2) tg.push_back(worst);
  }
  if (x.rank == 0) {
    const double a = median(ts), b = median(tg);
    // Bytes each rank receives: the records and shares of every rank, or every rank's slices.
    const long long rec_bytes = static_cast<long long>(x.world) * (n * fusedkd::kShardStatsPerRow + 1) * 4;
    const long long gather_bytes = 2LL * n * c * 4;
    std::printf("%-4s N=%lld C=%lld ranks=%d  sharded %.3f ms (receives %lld B)  all-gather + unsharded %.3f ms "
                "(receives %lld B)  ratio %.2fx  (loss %.6f vs %.6f)\n",
                name, static_cast<long long>(n), static_cast<long long>(c), x.world, 1e3 * a, rec_bytes, 1e3 * b,
                gather_bytes, b / a, l1, l2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const bool do_bench = argc > 1 && std::string(argv[1]) == "--bench";
  const int64_t n = do_bench && argc > 2 ? std::atoll(argv[2]) : 4;
  const int reps = do_bench && argc > 3 ? std::atoi(argv[3]) : 20;
  const Problem p = make_problem(n, kClasses);
  const Ctx x = context(kClasses);
  fusedkd::NkdOptions nkd;
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;
  int bad = 0;
  if (do_bench) {
    bench("nkd", nkd, p, x, reps);
    bench("kd", kd, p, x, reps);
    bench("dkd", dkd, p, x, reps);
  } else {
    if (x.rank == 0) std::printf("N=%lld C=%lld, rank 0 holds columns [%lld, %lld)\n", static_cast<long long>(n),
                                 static_cast<long long>(kClasses), static_cast<long long>(x.first),
                                 static_cast<long long>(x.first + x.width));
    bad |= compare("nkd", nkd, p, x);
    bad |= compare("kd", kd, p, x);
    bad |= compare("dkd", dkd, p, x);
  }
  int any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
