// tests/mpi/mpi_shard_test.cpp — the MPI adapter (fusedkd/dist/mpi.hpp) across real processes:
// every rank builds the same problem, passes its column slice (uneven widths, targets in every
// position of every shard, ignored rows, soft labels, every reduction) and checks the loss
// (summed over the ranks) and its own gradient slice against the unsharded call. Also: the same
// bits twice, ranks holding their columns in reverse order, USKD's global batch mean with the
// rows split over the ranks. ctest runs it with 2, 3 and 4 processes.
//
// Every rank runs every case (no ASSERT before a collective: a rank that returned early would
// leave the others waiting). The process exits non-zero if any rank saw a failure.
#include <mpi.h>

#include <cstring>

#include "fusedkd/dist/mpi.hpp"
#include "shard_cases.hpp"

namespace {

using namespace shardt;

int g_rank = 0, g_world = 1;

template <typename T, class O>
Status sharded(const Batch<T>& b, const O& o, const std::vector<int64_t>& bounds, int part,
               acc_t<T>* loss, std::vector<T>& g) {
  const int64_t first = bounds[part], w = bounds[part + 1] - first;
  g.assign(static_cast<size_t>(std::max<int64_t>(1, b.n * w)), sentinel<T>());
  return fusedkd::mpi::shard_loss(MPI_COMM_WORLD, slice(b.s(), first, w), slice(b.o(), first, w),
                                  b.labels(), Shard{first, b.c}, o, loss,
                                  fusedkd::matrix(g.data(), b.n, w));
}

template <typename T>
Status sharded_any(Loss l, const AnyOptions& o, const Batch<T>& b, const std::vector<int64_t>& bounds,
                   int part, acc_t<T>* loss, std::vector<T>& g) {
  switch (l) {
    case Loss::kNkd: return sharded(b, o.nkd_options(), bounds, part, loss, g);
    case Loss::kKd: return sharded(b, o.kd_options(), bounds, part, loss, g);
    case Loss::kDkd: return sharded(b, o.dkd_options(), bounds, part, loss, g);
    default: return Status::kNotSupported;
  }
}

template <typename T>
void sweep(Loss l) {
  const LabelKind kinds[] = {LabelKind::kHard32, LabelKind::kHard64, LabelKind::kSoft, LabelKind::kNone};
  for (const int64_t c : {7, 37, 1500})
    for (int pattern = 0; pattern < 3; ++pattern) {
      const std::vector<int64_t> bounds = split(c, g_world, pattern);
      for (const LabelKind kind : kinds) {
        if (kind == LabelKind::kNone && l != Loss::kKd) continue;
        if (c > 1000 && (kind == LabelKind::kHard32 || pattern == 1)) continue;  // CI time
        const Batch<T> b = problem<T>(c > 1000 ? 5 : 11, c, kind, bounds, 29u + static_cast<unsigned>(c));
        for (const Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
          for (const bool ce : {false, true}) {
            if (ce && kind == LabelKind::kNone) continue;
            const AnyOptions o = options(red, ce, pattern == 1 ? 1.0 : 2.0);
            SCOPED_TRACE(std::string(loss_name(l)) + " rank " + std::to_string(g_rank) + "/" +
                         std::to_string(g_world) + " C=" + std::to_string(c) + " pattern=" +
                         std::to_string(pattern) + " " + label_name(kind) + " " + o.describe(l));
            const Output<T> full = run(l, o, b);
            EXPECT_EQ(full.status, Status::kSuccess);
            std::vector<acc_t<T>> loss(static_cast<size_t>(full.nloss));
            std::vector<T> g;
            EXPECT_EQ(sharded_any(l, o, b, bounds, g_rank, loss.data(), g), Status::kSuccess);
            const int64_t first = bounds[g_rank], w = bounds[g_rank + 1] - first;
            EXPECT_TRUE(matches(full, loss.data(), g.data(), w, first, w));
          }
      }
    }
}

TEST(MpiShard, Nkd) {
  sweep<float>(Loss::kNkd);
  sweep<double>(Loss::kNkd);
}
TEST(MpiShard, Kd) {
  sweep<float>(Loss::kKd);
  sweep<double>(Loss::kKd);
}
TEST(MpiShard, Dkd) {
  sweep<float>(Loss::kDkd);
  sweep<double>(Loss::kDkd);
}

/// The same call twice gives the same bits; ranks may hold their slices in any order.
TEST(MpiShard, DeterministicAndAnyPlacement) {
  const std::vector<int64_t> bounds = split(3001, g_world, 0);
  const Batch<float> b = problem<float>(6, 3001, LabelKind::kHard64, bounds, 41u);
  const AnyOptions o = options(Reduction::kMean, true, 2.0);
  const Output<float> full = run(Loss::kNkd, o, b);
  float l1 = 0, l2 = 0;
  std::vector<float> g1, g2;
  EXPECT_EQ(sharded_any(Loss::kNkd, o, b, bounds, g_rank, &l1, g1), Status::kSuccess);
  EXPECT_EQ(sharded_any(Loss::kNkd, o, b, bounds, g_rank, &l2, g2), Status::kSuccess);
  EXPECT_EQ(std::memcmp(&l1, &l2, sizeof l1), 0);
  EXPECT_TRUE(g1 == g2);
  // reversed: rank k holds the slice of rank world-1-k
  const int part = g_world - 1 - g_rank;
  float l3 = 0;
  std::vector<float> g3;
  EXPECT_EQ(sharded_any(Loss::kNkd, o, b, bounds, part, &l3, g3), Status::kSuccess);
  const int64_t first = bounds[part], w = bounds[part + 1] - first;
  EXPECT_TRUE(matches(full, &l3, g3.data(), w, first, w));
}

/// A rank whose own arguments are refused returns its error; nobody hangs; the others get NaN.
TEST(MpiShard, OneRankRefused) {
  const std::vector<int64_t> bounds = split(37, g_world, 0);
  const Batch<float> b = problem<float>(4, 37, LabelKind::kHard64, bounds, 43u);
  const AnyOptions o = options(Reduction::kSum, false, 2.0);
  const int64_t first = bounds[g_rank], w = bounds[g_rank + 1] - first;
  float loss = 1.0f;
  std::vector<float> g(static_cast<size_t>(4 * std::max<int64_t>(w, 1)));
  // the last rank claims a first column past the end of the row
  const Shard sh{g_rank == g_world - 1 ? 40 : first, 37};
  const Status s = fusedkd::mpi::shard_loss(MPI_COMM_WORLD, slice(b.s(), first, w), slice(b.o(), first, w),
                                            b.labels(), sh, o.kd_options(), &loss,
                                            fusedkd::matrix(g.data(), 4, w));
  if (g_rank == g_world - 1) {
    EXPECT_EQ(s, Status::kShapeMismatch);
    EXPECT_EQ(loss, 1.0f);  // untouched
  } else {
    EXPECT_EQ(s, Status::kSuccess);
    EXPECT_TRUE(std::isnan(loss));
  }
}

/// USKD with the rows split over the ranks: the global batch mean reproduces the whole batch.
TEST(MpiDataParallel, UskdGlobalMean) {
  for (const LabelKind kind : {LabelKind::kHard64, LabelKind::kSoft})
    for (const int64_t c : {11, 1001}) {
      SCOPED_TRACE(std::string(label_name(kind)) + " C=" + std::to_string(c) + " rank " + std::to_string(g_rank));
      const int64_t n = 3 * g_world + 2;
      const Batch<double> b = problem<double>(n, c, kind, {0, c}, 47u);
      AnyOptions ao;
      ao.common.reduction = Reduction::kNone;
      const Output<double> full = run(Loss::kUskd, ao, b);
      const int64_t r0 = n * g_rank / g_world, r1 = n * (g_rank + 1) / g_world, rows = r1 - r0;
      const Labels lab = kind == LabelKind::kSoft ? Labels::soft(b.soft.data() + r0 * b.soft_stride, b.soft_stride)
                                                  : Labels::index(b.l64.data() + r0);
      std::vector<double> loss(static_cast<size_t>(rows) + 1), gz(static_cast<size_t>(rows * c) + 1), gw(gz.size());
      const Status s = fusedkd::mpi::uskd(MPI_COMM_WORLD,
                                          fusedkd::matrix(b.student.data() + r0 * b.stride, rows, c, b.stride),
                                          fusedkd::matrix(b.other.data() + r0 * b.stride, rows, c, b.stride), lab,
                                          ao.uskd_options(), loss.data(), fusedkd::matrix(gz.data(), rows, c),
                                          fusedkd::matrix(gw.data(), rows, c));
      EXPECT_EQ(s, Status::kSuccess);
      double diff = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        diff = std::max(diff, std::fabs(loss[r] - full.loss[r0 + r]));
        for (int64_t i = 0; i < c; ++i) {
          diff = std::max(diff, std::fabs(gz[r * c + i] - full.gs_at(r0 + r, i)));
          diff = std::max(diff, std::fabs(gw[r * c + i] - full.gw_at(r0 + r, i)));
        }
      }
      EXPECT_LE(diff, 1e-12);
    }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world);
  ::testing::InitGoogleTest(&argc, argv);
  if (g_rank != 0) {  // one rank's report is enough when all pass; failures print everywhere
    ::testing::TestEventListeners& l = ::testing::UnitTest::GetInstance()->listeners();
    delete l.Release(l.default_result_printer());
  }
  const int mine = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (mine != 0) std::fprintf(stderr, "mpi_shard_test: rank %d of %d FAILED\n", g_rank, g_world);
  MPI_Finalize();
  return worst;
}
