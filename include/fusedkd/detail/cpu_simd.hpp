// fusedkd/detail/cpu_simd.hpp — the CPU backend's vector vocabulary, on Highway.
//
// The CPU loops are written once against Highway's portable vectors (SSE4 / AVX2 / AVX-512 /
// NEON / SVE / scalar) and compiled for the target the including translation unit is built for
// (Highway's static dispatch: HWY_NAMESPACE follows the compiler's -march). docs/design.md says
// why the backend does not dispatch at run time. What this header adds:
// - Lanes<A>: one vector of A with the arithmetic the shared row formulas of core.hpp use, so a
//   loss's `elements` template runs on a whole vector (fk_exp, choose and is_zero overloads);
// - loads and stores of the last, partial vector of a run, without reading or writing past it;
// - max_of and sum_exp, the statistics pass's two loops.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

// Highway 1.0.3 stops with "best baseline should be included in dynamic targets" under
// -march=native on a CPU with AVX-512 VNNI/VBMI2 (its AVX3_DL target) unless that target is
// wanted: ask for it (it only widens the set of targets Highway knows).
#if !defined(HWY_WANT_AVX3_DL)
#define HWY_WANT_AVX3_DL
#endif
// Highway 1.0.3's NEON target needs the AES instructions (+crypto), which plain -march=armv8-a
// leaves out: there, its portable 4-lane target (EMU128) instead of a build error.
#if defined(__aarch64__) && !defined(__ARM_FEATURE_AES) && !defined(__ARM_FEATURE_CRYPTO) && \
    !defined(HWY_COMPILE_ONLY_SCALAR) && !defined(HWY_COMPILE_ONLY_STATIC) &&             \
    !defined(HWY_COMPILE_ONLY_EMU128)
#define HWY_COMPILE_ONLY_EMU128
#endif
#include <hwy/cache_control.h>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "fusedkd/detail/core.hpp"

namespace fusedkd {
namespace detail {
namespace hn = hwy::HWY_NAMESPACE;

#if defined(__GNUC__) || defined(__clang__)
#define FUSEDKD_LANES_FN __attribute__((always_inline)) friend
#define FUSEDKD_INLINE_LAMBDA __attribute__((always_inline))  // a vector loop's body as a lambda
#else
#define FUSEDKD_LANES_FN friend
#define FUSEDKD_INLINE_LAMBDA
#endif

/// The widest vector of A on this target, and its lane count at most.
template <typename A>
using Tag = hn::ScalableTag<A>;
constexpr size_t kMaxLaneBytes = HWY_MAX_BYTES;

/// exp of every lane of float, in about 20 vector operations instead of the 32 of Highway's Exp
/// (which covers the denormal results with two scalings): x = k ln2 + r with k = round(x /
/// ln2), exp(r) by Cephes' degree-7 polynomial on [-ln2/2, ln2/2], 2^k added to its exponent
/// bits. 1.2e-7 relative error (1 ulp) over [-87.33, 88.72]; below that 0 (the denormal results
/// are flushed: a loss's exponentials are relative to a row max, so they are at most 1 and
/// nothing in a sum notices 1e-38), above it +inf; NaN stays NaN.
template <class D>
FUSEDKD_INLINE hn::Vec<D> exp_f32_lanes(D d, hn::Vec<D> x) {
  const hn::RebindToSigned<D> di;
  const auto magic = hn::Set(d, 12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const auto top = hn::Set(d, 88.7228f);       // below ln(FLT_MAX): 2^k * exp(r) stays finite
  const auto xc = hn::Min(x, top);
  const auto t = hn::MulAdd(xc, hn::Set(d, 1.44269504088896341f), magic);  // k in the low bits
  const auto k = hn::Sub(t, magic);
  auto r = hn::NegMulAdd(k, hn::Set(d, 0.693359375f), xc);  // ln2 in two parts: r exact
  r = hn::NegMulAdd(k, hn::Set(d, -2.12194440e-4f), r);
  auto p = hn::Set(d, 1.9875691500e-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201e-1f));
  p = hn::MulAdd(p, hn::Mul(r, r), hn::Add(r, hn::Set(d, 1.0f)));
  // t's bits are those of 1.5 * 2^23 plus k: shifted by 23, exactly k << 23 (mod 2^32)
  const auto y = hn::BitCast(d, hn::Add(hn::BitCast(di, p), hn::ShiftLeft<23>(hn::BitCast(di, t))));
  auto e = hn::IfThenElseZero(hn::Ge(x, hn::Set(d, -87.33654f)), y);  // NaN: 0 here, kept below
  e = hn::IfThenElse(hn::Gt(x, top), hn::Set(d, std::numeric_limits<float>::infinity()), e);
  return hn::IfThenElse(hn::IsNaN(x), x, e);
}

/// exp of every lane: exp_f32_lanes for float; Highway's Exp (1 ulp) for double, with NaN kept
/// (Exp gives 0 for NaN). -inf and anything below the float range give 0.
template <class D>
FUSEDKD_INLINE hn::Vec<D> exp_lanes(D d, hn::Vec<D> x) {
  if constexpr (std::is_same<hn::TFromD<D>, float>::value) {
    return exp_f32_lanes(d, x);
  } else {
    return hn::IfThenElse(hn::IsNaN(x), x, hn::Exp(d, x));
  }
}

/// One vector of A, with the operators and functions of the shared row formulas: + - * / with
/// other vectors or scalars (a scalar is broadcast), fk_exp, choose (a lane select on a mask)
/// and is_zero (a mask).
template <typename A>
struct Lanes {
  using D = Tag<A>;
  using Mask = hn::Mask<D>;
  hn::Vec<D> v;

  FUSEDKD_INLINE Lanes(hn::Vec<D> x) : v(x) {}
  FUSEDKD_INLINE Lanes(A x) : v(hn::Set(D(), x)) {}

  FUSEDKD_LANES_FN Lanes operator+(Lanes a, Lanes b) { return Lanes(hn::Add(a.v, b.v)); }
  FUSEDKD_LANES_FN Lanes operator-(Lanes a, Lanes b) { return Lanes(hn::Sub(a.v, b.v)); }
  FUSEDKD_LANES_FN Lanes operator*(Lanes a, Lanes b) { return Lanes(hn::Mul(a.v, b.v)); }
  FUSEDKD_LANES_FN Lanes operator/(Lanes a, Lanes b) { return Lanes(hn::Div(a.v, b.v)); }
  FUSEDKD_INLINE Lanes& operator+=(Lanes b) {
    v = hn::Add(v, b.v);
    return *this;
  }
  FUSEDKD_LANES_FN Lanes fk_exp(Lanes x) { return Lanes(exp_lanes(D(), x.v)); }
  FUSEDKD_LANES_FN Lanes choose(Mask m, Lanes a, Lanes b) {
    return Lanes(hn::IfThenElse(m, a.v, b.v));
  }
  FUSEDKD_LANES_FN Mask is_zero(Lanes x) { return hn::Eq(x.v, hn::Zero(D())); }
};

// AVX2 and AVX-512 load and store a partial vector with a mask, touching no memory past it; on
// the other targets a partial vector goes through a small stack copy (the vector load after the
// scalar stores then waits for them: a store-forwarding stall per row end and pass).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define FUSEDKD_MASKED_PARTIAL 1
#else
#define FUSEDKD_MASKED_PARTIAL 0
#endif

/// The n (1 <= n <= lanes) elements at p as a vector; the missing lanes repeat p[0], so that
/// every lane holds a value of the row (no overflow or NaN from padding). Reads only p[0..n).
template <class D, typename T>
FUSEDKD_INLINE hn::Vec<D> load_n(D d, const T* p, size_t n) {
  if (n == hn::Lanes(d)) return hn::LoadU(d, p);
#if FUSEDKD_MASKED_PARTIAL
  if constexpr (sizeof(T) >= 4) {
    const auto valid = hn::FirstN(d, n);
    return hn::IfThenElse(valid, hn::MaskedLoad(valid, d, p), hn::Set(d, p[0]));
  }
#endif
  alignas(64) T buf[kMaxLaneBytes / sizeof(T)];
  for (size_t k = 0; k < hn::Lanes(d); ++k) buf[k] = p[k < n ? k : 0];
  return hn::LoadU(d, buf);
}

/// Stores the first n lanes of v at p (writes only p[0..n)).
template <class D>
FUSEDKD_INLINE void store_n(D d, hn::Vec<D> v, hn::TFromD<D>* p, size_t n) {
  if (n == hn::Lanes(d)) {
    hn::StoreU(v, d, p);
    return;
  }
#if FUSEDKD_MASKED_PARTIAL
  if constexpr (sizeof(hn::TFromD<D>) >= 4) {
    hn::BlendedStore(v, hn::FirstN(d, n), d, p);
    return;
  }
#endif
  alignas(64) hn::TFromD<D> buf[kMaxLaneBytes / sizeof(hn::TFromD<D>)];
  hn::StoreU(v, d, buf);
  std::memcpy(p, buf, n * sizeof(buf[0]));
}

/// Float labels as a vector of A (widened for double).
template <class D>
FUSEDKD_INLINE hn::Vec<D> load_labels(D d, const float* y, size_t n) {
  if constexpr (std::is_same<hn::TFromD<D>, float>::value) {
    return load_n(d, y, n);
  } else {
    const hn::Rebind<float, D> df;
    return hn::PromoteTo(d, load_n(df, y, n));
  }
}

/// 0, 1, ..., lanes - 1 as signed integers of A's width: made once per loop for lanes_at
/// (Highway 1.0.3 builds Iota through memory on AVX-512, too slow for once per vector).
template <class D>
FUSEDKD_INLINE hn::Vec<hn::RebindToSigned<D>> lane_ids(D) {
  const hn::RebindToSigned<D> di;
  return hn::Iota(di, 0);
}

/// The lanes of classes i .. i + lanes - 1 that equal class t (t < 0: none), as a mask of D;
/// `ids`: lane_ids(d).
template <class D, class VI>
FUSEDKD_INLINE hn::Mask<D> lanes_at(D d, VI ids, int64_t i, int32_t t) {
  const hn::RebindToSigned<D> di;
  using I = hn::TFromD<decltype(di)>;
  return hn::RebindMask(d, hn::Eq(ids, hn::Set(di, static_cast<I>(t - i))));
}

/// Fetches the cache line at p for writing (a hint: it never faults; nothing where the compiler
/// has no prefetch builtin).
template <typename T>
FUSEDKD_INLINE void prefetch_for_write(T* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 1, 3);
#else
  (void)p;
#endif
}

/// Sum of all lanes (in a fixed order for a given target).
template <class D>
FUSEDKD_INLINE hn::TFromD<D> sum_lanes(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::SumOfLanes(d, v));
}

/// max(m, x[0..n)). A NaN may be skipped here; it still reaches the sum of exponentials and
/// propagates there.
template <typename A>
FUSEDKD_INLINE A max_of(const A* x, int32_t n, A m) {
  const Tag<A> d;
  const int32_t lanes = static_cast<int32_t>(hn::Lanes(d));
  // Four independent maxima: one chain would wait for each max's latency.
  auto m0 = hn::Set(d, m), m1 = m0, m2 = m0, m3 = m0;
  int32_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    m0 = hn::Max(m0, hn::LoadU(d, x + i));
    m1 = hn::Max(m1, hn::LoadU(d, x + i + lanes));
    m2 = hn::Max(m2, hn::LoadU(d, x + i + 2 * lanes));
    m3 = hn::Max(m3, hn::LoadU(d, x + i + 3 * lanes));
  }
  for (; i < n; i += lanes) {
    m0 = hn::Max(m0, load_n(d, x + i, static_cast<size_t>(std::min(lanes, n - i))));
  }
  return hn::GetLane(hn::MaxOfLanes(d, hn::Max(hn::Max(m0, m1), hn::Max(m2, m3))));
}

/// sum of exp((x[i] - m) * inv) over [0, n); meanwhile fetches ahead[0, n) into the cache (a
/// row the caller reads next; null: none).
template <typename A>
FUSEDKD_INLINE A sum_exp(const A* x, int32_t n, A m, A inv, const A* ahead = nullptr) {
  if (ahead == nullptr) ahead = x;
  const Tag<A> d;
  const size_t lanes = hn::Lanes(d);
  const auto vm = hn::Set(d, m), vinv = hn::Set(d, inv);
  auto acc = hn::Zero(d);
  int32_t i = 0;
  for (; i + static_cast<int32_t>(lanes) <= n; i += static_cast<int32_t>(lanes)) {
    hwy::Prefetch(ahead + i);
    acc = hn::Add(acc, exp_lanes(d, hn::Mul(hn::Sub(hn::LoadU(d, x + i), vm), vinv)));
  }
  if (i < n) {
    const size_t k = static_cast<size_t>(n - i);
    const auto e = exp_lanes(d, hn::Mul(hn::Sub(load_n(d, x + i, k), vm), vinv));
    acc = hn::Add(acc, hn::IfThenElseZero(hn::FirstN(d, k), e));
  }
  return sum_lanes(d, acc);
}

}  // namespace detail
}  // namespace fusedkd
