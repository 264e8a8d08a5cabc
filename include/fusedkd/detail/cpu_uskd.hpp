// fusedkd/detail/cpu_uskd.hpp — USKD on the CPU.
//
// Phase 1, rows in parallel: the student's statistics, kept per row (O(N)), and u_k = S_tk^2.
// Between the phases: the batch statistics of u per target column (uskd_columns), in row order.
// Phase 2, rows in parallel: the weak row's statistics, its exponentials kept in a per-thread
// O(C) buffer, the rank keys of all C classes from them (W_i without another exponential), one
// sort, then one pass that writes both gradient rows and the row loss.
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "fusedkd/detail/cpu_backend.hpp"
#include "fusedkd/uskd.hpp"


namespace fusedkd {
namespace detail {

/// The sort key of a rank value: unsigned bits whose ascending order is the value's descending
/// order. -0 and +0 get the same bits; NaN sorts last.
template <typename A>
using RankBits = typename std::conditional<sizeof(A) == 4, uint32_t, uint64_t>::type;

template <typename A>
FUSEDKD_INLINE RankBits<A> rank_bits(A k) {
  using Bits = RankBits<A>;
  k += A(0);  // -0 becomes +0
  Bits b;
  std::memcpy(&b, &k, sizeof b);
  const Bits sign = Bits(1) << (8 * sizeof(Bits) - 1);
  const Bits ascending = b ^ (static_cast<Bits>(Bits(0) - (b >> (8 * sizeof(Bits) - 1))) | sign);
  const Bits inf = sizeof(A) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  const Bits nan = Bits(0) - static_cast<Bits>((b & ~sign) > inf);  // all ones for NaN
  return static_cast<Bits>(~ascending | nan);
}

/// A rank-sort entry: a class index and its rank_bits.
template <typename A>
struct RankEntry {
  RankBits<A> key;
  int32_t index;
};

/// Stable LSD radix sort of `a` by key. The keys are sorted as offsets from the smallest, so
/// only the bits where they differ take passes: w significant bits take ceil(w / 11) passes of
/// equal digits (a row of keys within a few binades, the usual case for float keys: three passes
/// of 9 bits, whose 512 counters cost less to sum than 2048). One read of the keys counts every
/// pass's digits; a pass where all keys share the digit is skipped. Entries come in by class
/// index, so ties keep the lower index first. Returns the buffer, `a` or `tmp`, that holds the
/// result.
template <typename A>
RankEntry<A>* radix_sort(RankEntry<A>* a, RankEntry<A>* tmp, int32_t n) {
  using Bits = RankBits<A>;
  constexpr unsigned kKeyBits = 8 * sizeof(Bits), kMaxDigit = 11;
  constexpr unsigned kMaxPasses = (kKeyBits + kMaxDigit - 1) / kMaxDigit;
  Bits lo = a[0].key, hi = a[0].key;
  for (int32_t i = 1; i < n; ++i) {
    lo = a[i].key < lo ? a[i].key : lo;
    hi = a[i].key > hi ? a[i].key : hi;
  }
  unsigned width = 0;  // significant bits of hi - lo
  while (width < kKeyBits && ((hi - lo) >> width) != 0) ++width;
  if (width == 0) return a;  // all keys equal: class order
  const unsigned passes = (width + kMaxDigit - 1) / kMaxDigit;
  const unsigned digit = (width + passes - 1) / passes, buckets = 1u << digit;
  const Bits mask = static_cast<Bits>(buckets - 1);

  int32_t count[kMaxPasses][1u << kMaxDigit];
  for (unsigned p = 0; p < passes; ++p) std::fill(count[p], count[p] + buckets, 0);
  for (int32_t i = 0; i < n; ++i) {
    const Bits k = a[i].key - lo;
    for (unsigned p = 0; p < passes; ++p) ++count[p][(k >> (p * digit)) & mask];
  }
  for (unsigned p = 0; p < passes; ++p) {
    const unsigned shift = p * digit;
    int32_t* slot = count[p];
    if (slot[((a[0].key - lo) >> shift) & mask] == n) continue;
    int32_t sum = 0;
    for (unsigned b = 0; b < buckets; ++b) {
      const int32_t k = slot[b];
      slot[b] = sum;  // now the bucket's first slot
      sum += k;
    }
    for (int32_t i = 0; i < n; ++i) tmp[slot[((a[i].key - lo) >> shift) & mask]++] = a[i];
    std::swap(a, tmp);
  }
  return a;
}

/// Per-thread scratch of the rank pass, for one row of c classes.
template <typename A>
struct RankScratch {
  A* key;                 ///< R_i, the rank key of class i
  uint32_t* packed;       ///< 2c words: the quantized sort's two buffers
  RankEntry<A>* entries;  ///< 2c rank entries: the exact radix sort's two buffers
  A* rank;                ///< rank of class i (1-based), as A
  A* w_prob;              ///< W_i, from the rank keys
  A* s_prob;              ///< S_i, from the rank keys (paper mode only)
};

/// What rank_keys learns of a row's keys on the way: the smallest and largest, and their sum
/// (not finite when a key is NaN or infinite, or the keys are huge).
template <typename A>
struct KeyRange {
  A lo, hi, sum;
};

/// The rank keys R_i of all c classes into sc.key, a vector of lanes at a time, with their
/// range. On entry sc.w_prob holds the weak row's exponentials relative to its statistics' max
/// ws.m, 0 at the targets (row_stats_kept); `w_rel` (W.rel(ws.m)) turns them into W_i in place.
/// A target's W_i is taken the way a non-target class with its logit gets it (so that equal
/// logits keep equal keys, and ties their class order), or from the statistics where its
/// exponential relative to ws.m could overflow. S_i is kept in sc.s_prob in paper mode.
/// `ahead`: c values read next (the next row), fetched meanwhile.
template <bool Paper, typename A>
KeyRange<A> rank_keys(const A* z, int32_t c, const UskdRankKey<A>& key, A w_rel,
                      const SplitStats<A>& ws, const RowTargets<A>& tg, const RankScratch<A>& sc,
                      const A* ahead) {
  using L = Lanes<A>;
  const Tag<A> d;
  const size_t lanes = hn::Lanes(d);
  const auto ids = lane_ids(d);
  const L vrel(w_rel);
  const auto w_target = [&](A x) {
    return x <= ws.m ? hn::GetLane(exp_lanes(d, hn::Set(d, x - ws.m))) * w_rel : fk_exp(key.W(x));
  };
  const L w1(tg.t1 >= 0 ? w_target(ws.x1) : A(0)), w2(tg.t2 >= 0 ? w_target(ws.x2) : A(0));
  auto lo = hn::Set(d, max_finite<A>()), hi = hn::Set(d, lowest<A>()), sum = hn::Zero(d);
  for (int32_t i = 0; i < c; i += static_cast<int32_t>(lanes)) {
    const size_t n = std::min(lanes, static_cast<size_t>(c - i));
    hwy::Prefetch(ahead + i);
    L wp = L(load_n(d, sc.w_prob + i, n)) * vrel;
    wp = choose(lanes_at(d, ids, i, tg.t1), w1, choose(lanes_at(d, ids, i, tg.t2), w2, wp));
    L sp(A(0));
    const L k = key.template from_w_prob<Paper>(L(load_n(d, z + i, n)), wp, sp);
    store_n(d, wp.v, sc.w_prob + i, n);
    if (Paper) store_n(d, sp.v, sc.s_prob + i, n);
    store_n(d, k.v, sc.key + i, n);
    // the missing lanes of a partial vector repeat a key of the row: the range stays the row's
    lo = hn::Min(lo, k.v);
    hi = hn::Max(hi, k.v);
    sum = hn::Add(sum, k.v);  // NaN and infinities reach it (Min and Max may drop a NaN)
  }
  return {hn::GetLane(hn::MinOfLanes(d, lo)), hn::GetLane(hn::MaxOfLanes(d, hi)), sum_lanes(d, sum)};
}

/// The quantized rank sort, the usual case: each key becomes a 16-bit level q = (hi - R) *
/// 65535 / (hi - lo), monotone (a larger key never gets a larger level, equal keys get the
/// same), packed with its class index as q << 16 | i and sorted by q in two 8-bit LSD radix
/// passes (256 counters each, summed in one loop). The keys of one level are then adjacent and
/// still in class order; the few levels that hold more than one key are put in the exact order
/// (R descending, ties by the lower index) by an insertion pass. Writes rank[i] and returns
/// true; returns false where the exact radix sort must do the row (and rewrite every rank):
/// double keys, more than 4096 classes (with fewer than 16 levels per key, shared levels get
/// common: C = 32000 takes 1.3x the radix sort's time), a non-finite or empty range, or a level
/// holding more than 64 keys (keys that are all but a few equal, which the insertion pass
/// would take quadratic time over).
template <typename A>
bool quantized_ranks(const A* key, int32_t c, const KeyRange<A>& range, uint32_t* a,
                     uint32_t* tmp, A* rank) {
  if constexpr (!std::is_same<A, float>::value) {
    return false;
  } else {
    constexpr int32_t kMaxRun = 64;
    const float width = range.hi - range.lo, scale = 65535.0f / width;
    if (c > 4096 || !(range.sum - range.sum == 0.0f) || !(width > 0.0f) ||
        !(width <= max_finite<float>()) || !(scale <= max_finite<float>())) {
      return false;
    }
    const Tag<float> d;
    const hn::RebindToSigned<decltype(d)> di;
    const int32_t lanes = static_cast<int32_t>(hn::Lanes(d));
    const auto vhi = hn::Set(d, range.hi), vscale = hn::Set(d, scale);
    const auto top = hn::Set(di, 65535), ids = lane_ids(d);
    int32_t i = 0;
    for (; i + lanes <= c; i += lanes) {
      const auto q = hn::Min(hn::ConvertTo(di, hn::Mul(hn::Sub(vhi, hn::LoadU(d, key + i)), vscale)), top);
      const auto word = hn::Or(hn::ShiftLeft<16>(q), hn::Add(ids, hn::Set(di, i)));
      hn::StoreU(word, di, reinterpret_cast<int32_t*>(a + i));
    }
    for (; i < c; ++i) {
      const int32_t q = static_cast<int32_t>((range.hi - key[i]) * scale);
      a[i] = static_cast<uint32_t>(q < 65535 ? q : 65535) << 16 | static_cast<uint32_t>(i);
    }
    int32_t low[256] = {}, high[256] = {};
    for (i = 0; i < c; ++i) {
      ++low[(a[i] >> 16) & 255u];
      ++high[a[i] >> 24];
    }
    for (int32_t b = 0, sl = 0, sh = 0; b < 256; ++b) {
      const int32_t kl = low[b], kh = high[b];
      low[b] = sl;
      high[b] = sh;
      sl += kl;
      sh += kh;
    }
    for (i = 0; i < c; ++i) tmp[low[(a[i] >> 16) & 255u]++] = a[i];
    for (i = 0; i < c; ++i) {  // the last pass also gives each class its rank by level
      const uint32_t e = tmp[i];
      const int32_t p = high[e >> 24]++;
      a[p] = e;
      rank[e & 0xffffu] = static_cast<float>(p + 1);
    }
    // Levels that hold more than one key: insertion by R (descending; the class order that the
    // stable passes kept breaks ties), and the moved classes' ranks rewritten. A vector of
    // entries at a time: the lanes whose level is their predecessor's, as bits (none, the usual
    // case: on to the next vector), and only those lanes inserted, in order.
    const hn::RebindToUnsigned<decltype(d)> du;
    static_assert(kMaxLaneBytes / 4 <= 64, "a vector's lane bits fit one uint64_t");
    int32_t run = 1;  // keys so far of a[p - 1]'s level
    for (int32_t p = 1; p < c; p += lanes) {
      const size_t n = static_cast<size_t>(std::min(lanes, c - p));
      const auto same = hn::And(hn::Eq(hn::ShiftRight<16>(load_n(du, a + p, n)),
                                       hn::ShiftRight<16>(load_n(du, a + p - 1, n))),
                                hn::FirstN(du, n));
      uint8_t mask_bytes[8] = {};
      hn::StoreMaskBits(du, same, mask_bytes);
      uint64_t bits;
      std::memcpy(&bits, mask_bytes, sizeof bits);  // lane k is bit k (little-endian bytes)
      int32_t last = -1;  // the last lane inserted
      for (; bits != 0; bits &= bits - 1) {
        const int32_t lane = static_cast<int32_t>(hwy::Num0BitsBelowLS1Bit_Nonzero64(bits));
        run = (lane == last + 1 ? run : 1) + 1;  // a lane after one not inserted: a level's 2nd
        if (run > kMaxRun) return false;
        last = lane;
        const int32_t q = p + lane;
        const uint32_t e = a[q];
        const float r = key[e & 0xffffu];
        int32_t j = q;
        for (; j > q - run + 1 && key[a[j - 1] & 0xffffu] < r; --j) {
          a[j] = a[j - 1];
          rank[a[j] & 0xffffu] = static_cast<float>(j + 1);
        }
        a[j] = e;
        rank[e & 0xffffu] = static_cast<float>(j + 1);
      }
      if (last != static_cast<int32_t>(n) - 1) run = 1;
    }
    return true;
  }
}

/// rank[i] = 1-based position of class i when all c classes are sorted by their key,
/// descending, ties by the lower index: the quantized sort where it applies, else the exact
/// radix sort of the keys' rank_bits.
template <typename A>
void ranks_of_keys(const A* key, int32_t c, const KeyRange<A>& range, const RankScratch<A>& sc) {
  if (quantized_ranks(key, c, range, sc.packed, sc.packed + c, sc.rank)) return;
  for (int32_t i = 0; i < c; ++i) sc.entries[i] = {rank_bits(key[i]), i};
  const RankEntry<A>* sorted = radix_sort(sc.entries, sc.entries + c, c);
  for (int32_t p = 0; p < c; ++p) sc.rank[sorted[p].index] = A(p + 1);
}

/// The Zipf ranks of a row (see ranks_of_keys), from the rank keys of z and the weak row's kept
/// exponentials (see rank_keys); also fills w_prob (and s_prob in paper mode). `ahead`: c
/// values read next, fetched meanwhile.
template <typename A>
void zipf_ranks(const A* z, int32_t c, const UskdRankKey<A>& key, A w_rel,
                const SplitStats<A>& ws, const RowTargets<A>& tg, const RankScratch<A>& sc,
                const A* ahead) {
  const KeyRange<A> range = key.paper ? rank_keys<true>(z, c, key, w_rel, ws, tg, sc, ahead)
                                      : rank_keys<false>(z, c, key, w_rel, ws, tg, sc, ahead);
  ranks_of_keys(sc.key, c, range, sc);
}

/// The gradient pass of one USKD row: writes dz, dw (when Write) and adds the row's sums of
/// Zhat*log Shat and q*log W to sums[0], sums[1] (per chunk in A, across chunks in double).
/// `ahead`: c values read next (the next row), fetched into the cache meanwhile.
template <bool Soft, bool Write, bool Paper, typename A>
void uskd_pass(const A* z, const A* w, const float* y, A* gz, A* gw, int32_t c,
               const UskdRow<A>& row, const RankScratch<A>& sc, A factor, double* sums,
               const A* ahead) {
  using L = Lanes<A>;
  const Tag<A> d;
  const size_t lanes = hn::Lanes(d);
  const auto ids = lane_ids(d);
  const auto vfactor = hn::Set(d, factor);
  for (int32_t b = 0; b < c; b += kChunk) {
    const int32_t e = c - b > kChunk ? b + kChunk : c;
    L acc_non(A(0)), acc_weak(A(0));
    // n lanes at i; is1 / target: the lanes of the first target / of either, as masks, or
    // NoTarget for a vector that holds no target (all but at most two per row: no target
    // masks or selects there; the labels of hard rows are 0 off the target)
    const auto step = [&](int32_t i, size_t n, auto is1, auto target) FUSEDKD_INLINE_LAMBDA {
      const L zi(load_n(d, z + i, n));
      const L yi = Soft ? L(load_labels(d, y + i, n)) : choose(is1, L(A(1)), L(A(0)));
      const L s = Paper ? L(load_n(d, sc.s_prob + i, n)) : fk_exp(row.S(zi));
      L dz(A(0)), dw(A(0)), part_non(A(0)), part_weak(A(0));
      row.elements(is1, target, zi, L(load_n(d, w + i, n)), yi, L(load_n(d, sc.rank + i, n)), s,
                   L(load_n(d, sc.w_prob + i, n)), dz, dw, part_non, part_weak);
      if (n == lanes) {
        acc_non += part_non;
        acc_weak += part_weak;
      } else {
        const auto valid = hn::FirstN(d, n);
        acc_non += L(hn::IfThenElseZero(valid, part_non.v));
        acc_weak += L(hn::IfThenElseZero(valid, part_weak.v));
      }
      if (Write) {  // after the reads of z_i and w_i: in place is safe
        store_n(d, hn::Mul(dz.v, vfactor), gz + i, n);
        store_n(d, hn::Mul(dw.v, vfactor), gw + i, n);
      }
    };
    for (int32_t i = b; i < e; i += static_cast<int32_t>(lanes)) {
      const size_t n = std::min(lanes, static_cast<size_t>(e - i));
      hwy::Prefetch(ahead + i);
      if (vector_holds(i, row.tg.t1, lanes) || vector_holds(i, row.tg.t2, lanes)) {
        const auto is1 = lanes_at(d, ids, i, row.tg.t1);
        step(i, n, is1, hn::Or(is1, lanes_at(d, ids, i, row.tg.t2)));
      } else {
        step(i, n, NoTarget(), NoTarget());
      }
    }
    sums[0] += static_cast<double>(sum_lanes(d, acc_non.v));
    sums[1] += static_cast<double>(sum_lanes(d, acc_weak.v));
  }
}

/// USKD's variant options are values of their enums (both backends check them).
inline bool valid_variants(const UskdOptions& o) {
  const int rank = static_cast<int>(o.rank), soft = static_cast<int>(o.soft_target);
  return rank >= 0 && rank <= static_cast<int>(UskdRank::kCombination) && soft >= 0 &&
         soft <= static_cast<int>(UskdSoftTarget::kMeanNorm);
}

/// The row terms of USKD's options.
inline UskdTerms uskd_terms(const UskdOptions& o) {
  UskdTerms t;
  t.target = o.target;
  t.non_target = o.non_target;
  t.t2 = o.t2;
  return t;
}

/// The batch statistics of u per target column (`u`: 2 per row, 0 for ignored rows and absent
/// second targets), over the `active` non-ignored rows, in row order.
template <typename A>
void uskd_columns(const RowTargets<A>* targets, const A* u, int64_t n, int64_t active,
                  UskdColumn<A> col[2]) {
  double sum[2] = {0.0, 0.0}, sum_exp[2] = {0.0, 0.0}, sum_v[2] = {0.0, 0.0};
  A lo[2] = {A(0), A(0)}, hi[2] = {A(0), A(0)};
  bool first = true;
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r].ignored) continue;
    const A v[2] = {targets[r].v1, targets[r].t2 >= 0 ? targets[r].v2 : A(0)};
    for (int k = 0; k < 2; ++k) {
      const A x = u[2 * r + k];
      sum[k] += static_cast<double>(x);
      sum_exp[k] += std::exp(static_cast<double>(x));
      sum_v[k] += static_cast<double>(v[k]);
      lo[k] = first || x < lo[k] ? x : lo[k];
      hi[k] = first || x > hi[k] ? x : hi[k];
    }
    first = false;
  }
  for (int k = 0; k < 2; ++k) {
    col[k].mean = active > 0 ? A(sum[k] / static_cast<double>(active)) : A(0);
    col[k].min = lo[k];
    col[k].max = hi[k];
    col[k].sum_exp = A(sum_exp[k]);
    col[k].sum_v = A(sum_v[k]);
  }
}

/// USKD's checks of its options and arguments (both backends make them first), the options in
/// the range of the computation type acc_t<T>.
template <typename T>
Status check_uskd(const Matrix<const T>& z, const Matrix<const T>& w, const Labels& labels,
                  const UskdOptions& o, const void* loss, const Matrix<T>& gz,
                  const Matrix<T>& gw) {
  using A = acc_t<T>;
  if (!option_in_range<A>(o.alpha) || !option_in_range<A>(o.beta) || !option_in_range<A>(o.mu) ||
      !(o.smoothing >= 0.0 && o.smoothing <= 1.0) ||
      !valid_variants(o)) {
    return Status::kInvalidOption;
  }
  Status s = check_pair(z, w, labels, o, loss, gz, false);
  if (s == Status::kSuccess) s = check_output(gw, z.rows, z.cols);
  if (s != Status::kSuccess) return s;
  if ((gz.data == nullptr) != (gw.data == nullptr) && z.rows > 0) return Status::kNullPointer;
  if (labels.is_soft() && z.cols < 3) return Status::kTooFewClasses;
  return Status::kSuccess;
}

/// `batch_sums`: null for the mean of u_k (S_tk^2, or S_tk without `square`) over this call's
/// rows; else {sum u_1, sum u_2, rows} of a larger batch (data_parallel.hpp), whose mean is used
/// instead (the other batch statistics of Table 8's soft targets stay this call's).
template <typename T>
Status uskd_cpu(Matrix<const T> z, Matrix<const T> w, Labels labels, const UskdOptions& o,
                acc_t<T>* loss, Matrix<T> gz, Matrix<T> gw, const double* batch_sums = nullptr) {
  using A = acc_t<T>;
  static_assert(std::is_same<A, T>::value, "the CPU backend computes in its input type");
  const int64_t n = z.rows, c = z.cols;
  Status s = check_uskd(z, w, labels, o, loss, gz, gw);
  if (s != Status::kSuccess) return s;
  const bool soft = labels.is_soft();
  if (n == 0) {  // an empty batch: no scratch, no O(C) work
    write_loss(o, nullptr, 0, 0, loss);
    return Status::kSuccess;
  }

  // One allocation at a time: the first that fails ends the call.
  auto targets = scratch<RowTargets<A>>(n);
  if (!targets) return Status::kOutOfMemory;
  auto zstats = scratch<SplitStats<A>>(n);
  if (!zstats) return Status::kOutOfMemory;
  auto sq = scratch<A>(2 * n);  // u_1, u_2 per row: S_tk^2 (or S_tk without `square`)
  if (!sq) return Status::kOutOfMemory;
  auto row_loss = scratch<double>(n);
  if (!row_loss) return Status::kOutOfMemory;
  int64_t active = 0;
  s = find_targets(labels, n, c, o.ignore_index, soft, targets.get(), &active);
  if (s != Status::kSuccess) return s;

  const int threads = max_threads();
  // Per thread: the rank entries (2C), the quantized sort's words (2C), then the keys, ranks,
  // W and S of the row (O(C) each).
  auto entries = scratch<RankEntry<A>>(2 * static_cast<int64_t>(threads) * c);
  if (!entries) return Status::kOutOfMemory;
  auto packed = scratch<uint32_t>(2 * static_cast<int64_t>(threads) * c);
  if (!packed) return Status::kOutOfMemory;
  auto row_scratch = scratch<A>(4 * static_cast<int64_t>(threads) * c);
  if (!row_scratch) return Status::kOutOfMemory;

  const int32_t c32 = static_cast<int32_t>(c);

  // Phase 1: statistics and the student's target probabilities.
FUSEDKD_PARALLEL_ROWS(n * c)
  for (int64_t r = 0; r < n; ++r) {
    const RowTargets<A>& tg = targets[r];
    sq[2 * r] = sq[2 * r + 1] = A(0);
    if (tg.ignored) continue;
    const SplitStats<A> zs = row_stats(z.row(r), c32, tg, A(1), false, true, next_row(z, r));
    zstats[r] = zs;
    uskd_target_squares(zs, tg, sq[2 * r], sq[2 * r + 1], o.square);
  }

  // The batch statistics of u = S_tk^2 (or S_tk) over the non-ignored rows, in row order.
  UskdColumn<A> col[2];
  uskd_columns(targets.get(), sq.get(), n, active, col);
  if (batch_sums != nullptr) {  // the mean over a larger batch (data_parallel.hpp)
    col[0].mean = A(batch_sums[2] > 0.0 ? batch_sums[0] / batch_sums[2] : 0.0);
    col[1].mean = A(batch_sums[2] > 0.0 ? batch_sums[1] / batch_sums[2] : 0.0);
  }

  const A h = harmonic<A>(c);
  const A factor = A(gradient_factor(o, active));
  const int rank_mode = static_cast<int>(o.rank), soft_mode = static_cast<int>(o.soft_target);
  const bool paper = rank_mode != 0;  // X = S in the rank key (every mode but the reference one)
  const UskdTerms terms = uskd_terms(o);
  const int64_t ld_y = labels.stride > 0 ? labels.stride : c;

  // Phase 2: rank, sort, gradients and row loss.
FUSEDKD_PARALLEL_ROWS(n * c)
  for (int64_t r = 0; r < n; ++r) {
    const int thread = thread_number();
    const RowTargets<A>& tg = targets[r];
    const T* zr = z.row(r);
    const T* wr = w.row(r);
    T* gzr = gz.data != nullptr ? gz.row(r) : nullptr;
    T* gwr = gw.data != nullptr ? gw.row(r) : nullptr;
    if (tg.ignored) {
      row_loss[r] = 0.0;
      zero_row(gzr, c);
      zero_row(gwr, c);
      continue;
    }
    const SplitStats<A>& zs = zstats[r];
    A* own = row_scratch.get() + 4 * static_cast<int64_t>(thread) * c;
    const RankScratch<A> sc{own, packed.get() + 2 * static_cast<int64_t>(thread) * c,
                            entries.get() + 2 * static_cast<int64_t>(thread) * c, own + c,
                            own + 2 * c, own + 3 * c};
    // The weak row's statistics, its exponentials kept in sc.w_prob for the rank keys.
    const SplitStats<A> ws =
        row_stats_kept(wr, c32, tg, non_target_max(wr, c32, tg), A(1), false, true, sc.w_prob,
                       sc.w_prob, zr);

    // Zipf ranks: sort all classes by R, descending, ties by class index.
    const UskdRankKey<A> key(zs.full(A(1), tg), ws.full(A(1), tg), zs, ws, tg, rank_mode);
    zipf_ranks(zr, c32, key, key.W.rel(ws.m), ws, tg, sc, next_row(w, r));
    const A p1 = uskd_soft_target(soft_mode, sq[2 * r], tg.v1, col[0]);
    const A p2 = tg.t2 >= 0 ? uskd_soft_target(soft_mode, sq[2 * r + 1], tg.v2, col[1]) : A(0);
    const UskdRow<A> row(zs, ws, tg, p1, p2, static_cast<int32_t>(sc.rank[tg.t1]),
                         tg.t2 >= 0 ? static_cast<int32_t>(sc.rank[tg.t2]) : 0, h, c, A(o.alpha),
                         A(o.beta), A(o.mu), A(o.smoothing), A(o.ce_weight), terms);

    // One pass over the row: both gradients and the row loss, in one of eight variants (soft
    // or hard labels, gradients or not, rank mode) so that each inner loop is branch-free.
    const float* y = soft ? static_cast<const float*>(labels.data) + r * ld_y : nullptr;
    double sums[2] = {0.0, 0.0};
    const bool write = gzr != nullptr;
    const auto pass = [&](auto soft_v, auto write_v, auto paper_v) {
      uskd_pass<decltype(soft_v)::value, decltype(write_v)::value, decltype(paper_v)::value>(
          zr, wr, y, gzr, gwr, c32, row, sc, factor, sums, next_row(z, r));
    };
    using yes = std::true_type;
    using no = std::false_type;
    if (paper) {
      soft ? (write ? pass(yes{}, yes{}, yes{}) : pass(yes{}, no{}, yes{}))
           : (write ? pass(no{}, yes{}, yes{}) : pass(no{}, no{}, yes{}));
    } else {
      soft ? (write ? pass(yes{}, yes{}, no{}) : pass(yes{}, no{}, no{}))
           : (write ? pass(no{}, yes{}, no{}) : pass(no{}, no{}, no{}));
    }
    const A acc_non = A(sums[0]), acc_weak = A(sums[1]);
    row_loss[r] = static_cast<double>(row.loss(acc_non, acc_weak));
  }
  write_loss(o, row_loss.get(), n, active, loss);
  return Status::kSuccess;
}

}  // namespace detail

namespace cpu {
inline Status uskd(Matrix<const float> student, Matrix<const float> weak, Labels labels,
                   const UskdOptions& options, float* loss, Matrix<float> grad_student,
                   Matrix<float> grad_weak) {
  return detail::uskd_cpu(student, weak, labels, options, loss, grad_student, grad_weak);
}
inline Status uskd(Matrix<const double> student, Matrix<const double> weak, Labels labels,
                   const UskdOptions& options, double* loss, Matrix<double> grad_student,
                   Matrix<double> grad_weak) {
  return detail::uskd_cpu(student, weak, labels, options, loss, grad_student, grad_weak);
}
}  // namespace cpu
}  // namespace fusedkd
