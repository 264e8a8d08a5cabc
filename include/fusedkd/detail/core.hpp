// fusedkd/detail/core.hpp — the per-row math shared by the CPU backend and the CUDA kernels.
//
// Everything here works on one row of logits and is marked FUSEDKD_HD (host+device under nvcc,
// always-inline under a C++ compiler). A backend streams a row's elements through
// `SplitStats::add` (any order, any split: partial stats `merge`), turns the stats into log-prob
// functions (`LogProb`), and then calls a loss's `Row::element` once per element to get the
// gradient and the element's share of the row loss. The backends differ only in how they loop.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// FUSEDKD_INLINE: always inlined by GCC and Clang. The CPU backend instantiates the row
// formulas below with its vector types (Highway, see cpu_simd.hpp); each must inline into the
// vector loop, or the loop turns into a call per vector.
#if defined(__GNUC__) || defined(__clang__)
#define FUSEDKD_INLINE inline __attribute__((always_inline))
#else
#define FUSEDKD_INLINE inline
#endif

#if defined(__CUDACC__)
#define FUSEDKD_HD __host__ __device__ __forceinline__
// Before a host+device template that the CPU backend instantiates with its (host-only) vector
// type: nvcc would otherwise warn about a host call from a host+device function.
#define FUSEDKD_HD_TEMPLATE _Pragma("nv_exec_check_disable")
#else
#define FUSEDKD_HD FUSEDKD_INLINE
#define FUSEDKD_HD_TEMPLATE
#endif

namespace fusedkd {
namespace detail {

// Scalar math. The per-element formulas of the losses below are templates over the value type
// V: the CUDA kernels and the scalar host paths use V = float or double with these overloads,
// the CPU backend's vector loops use a vector of lanes whose own overloads (found by argument-
// dependent lookup) call the SIMD library. A formula is written once for both.
FUSEDKD_HD float fk_exp(float x) { return ::expf(x); }
FUSEDKD_HD double fk_exp(double x) { return ::exp(x); }
FUSEDKD_HD float fk_log(float x) { return ::logf(x); }
FUSEDKD_HD double fk_log(double x) { return ::log(x); }
FUSEDKD_HD float fk_sqrt(float x) { return ::sqrtf(x); }
FUSEDKD_HD double fk_sqrt(double x) { return ::sqrt(x); }

/// The most negative finite value: the identity of a running max that also survives -inf inputs.
template <typename A> FUSEDKD_HD A lowest();
template <> FUSEDKD_HD float lowest<float>() { return -3.402823466e+38f; }
template <> FUSEDKD_HD double lowest<double>() { return -1.7976931348623157e+308; }
/// The largest finite value.
template <typename A> FUSEDKD_HD A max_finite() { return -lowest<A>(); }


/// `c ? a : b` (a vector select for the CPU backend's lane vectors, where c is a lane mask).
template <typename A>
FUSEDKD_HD A choose(bool c, A a, A b) {
  return c ? a : b;
}

/// A lane mask that selects no lane, known at compile time: the CPU backend's gradient passes
/// run a row's formulas with it where no target is, and the selects of the target's formulas
/// drop out of their code. The teacher losses run every vector so and redo the target alone
/// (their kept exponentials are 0 there, so its lane adds nothing meanwhile: no per-vector
/// test); USKD, whose target lanes do add, runs the at most two vectors with a target masked.
struct NoTarget {};
template <typename V>
FUSEDKD_HD V choose(NoTarget, V, V b) {
  return b;
}

/// x == 0 (either sign).
template <typename A>
FUSEDKD_HD bool is_zero(A x) {
  return x == A(0);
}

/// w * l with the convention 0 * anything = 0: a class whose weight (a teacher or target
/// probability, a coefficient) is 0 contributes 0 even where its log is -inf (a -inf logit).
FUSEDKD_HD_TEMPLATE
template <typename V>
FUSEDKD_HD V weighted(V w, V l) {
  return choose(is_zero(w), V(0), w * l);
}

/// x * log(x / y) written as x * (log x - log y) with the convention 0 * anything = 0 (a
/// probability that underflowed, or the softmax of a -inf logit).
FUSEDKD_HD_TEMPLATE
template <typename V>
FUSEDKD_HD V xlogy_diff(V x, V log_x, V log_y) {
  return weighted(x, log_x - log_y);
}

/// The targets of one row: up to two class indices, with their label values.
/// t1 < 0 means the row has no target (KD without labels); t2 < 0 means a single target.
/// `ignored` rows contribute nothing.
template <typename A>
struct RowTargets {
  int32_t t1 = -1;
  int32_t t2 = -1;
  A v1 = A(1);
  A v2 = A(0);
  A ysum = A(1);  ///< sum of the label row (1 for hard labels)
  bool ignored = false;
};

/// log-probabilities of a softmax at scale `inv` (1/temperature) over some set of classes:
/// log p_i = (x_i - m) * inv - ls. Kept relative to the max so large logits lose no precision.
template <typename A>
struct LogProb {
  A m;
  A inv;
  A ls;
  FUSEDKD_HD_TEMPLATE
  template <typename V>
  FUSEDKD_HD V operator()(V x) const { return (x - m) * inv - ls; }

  /// The factor k with exp(this(x)) = exp((x - m0) * inv) * k: it turns exponentials taken
  /// relative to another max m0 (the statistics' non-target max) at this scale into this
  /// softmax's probabilities. k <= 1 when m0 <= m.
  FUSEDKD_HD A rel(A m0) const { return fk_exp((m0 - m) * inv - ls); }
};

/// The exponentials the statistics pass computed for some lanes, kept for the gradient pass
/// (CPU backend): z and v at scale 1 and at the row's scale inv, relative to their statistics'
/// max m (`SplitStats::m`), 0 at the target classes. A Row turns them into probabilities with
/// per-row factors (LogProb::rel) instead of taking exponentials again.
template <typename V>
struct StatExps {
  V z1, zt, v1, vt;
};

/// Online softmax statistics of one row at two scales (1 and `inv` = 1/temperature), over the
/// non-target classes; the target logits are kept aside so that full-row and non-target
/// softmaxes both come out exactly, without subtracting a dominant target from a sum.
template <typename A>
struct SplitStats {
  A m = lowest<A>();  ///< running max of the non-target logits
  A s1 = A(0);        ///< sum over non-targets of exp(x - m)
  A st = A(0);        ///< sum over non-targets of exp((x - m) * inv)
  A x1 = A(0);        ///< logit of target 1 (when there is one)
  A x2 = A(0);        ///< logit of target 2 (when there is one)

  /// Adds one non-target logit. With `two_scales` false only s1 is kept (st = s1 at the end).
  FUSEDKD_HD void add(A x, A inv, bool two_scales) {
    if (x > m) {
      const A d = m - x;
      s1 = s1 * fk_exp(d) + A(1);
      if (two_scales) st = st * fk_exp(d * inv) + A(1);
      m = x;
    } else {
      const A d = x - m;
      s1 += fk_exp(d);
      if (two_scales) st += fk_exp(d * inv);
    }
  }

  /// Folds in another partial over a disjoint set of non-target classes.
  FUSEDKD_HD void merge(const SplitStats& o, A inv, bool two_scales) {
    const A mm = o.m > m ? o.m : m;
    const A a = m - mm, b = o.m - mm;
    s1 = s1 * fk_exp(a) + o.s1 * fk_exp(b);
    if (two_scales) st = st * fk_exp(a * inv) + o.st * fk_exp(b * inv);
    m = mm;
  }

  /// The sum of exp((x - m) * inv) over the non-target classes, inv = 1 or the `inv` of add
  /// (the stats were then gathered with two_scales).
  FUSEDKD_HD A sum_at(A inv) const { return inv != A(1) ? st : s1; }

  /// Softmax of x * inv over the non-target classes.
  FUSEDKD_HD LogProb<A> non_target(A inv) const { return {m, inv, fk_log(sum_at(inv))}; }

  /// Softmax of x * inv over all classes, targets `tg` included.
  FUSEDKD_HD LogProb<A> full(A inv, const RowTargets<A>& tg) const {
    A mm = m;
    if (tg.t1 >= 0 && x1 > mm) mm = x1;
    if (tg.t2 >= 0 && x2 > mm) mm = x2;
    const A s = sum_at(inv);
    A total = s * fk_exp((m - mm) * inv);
    if (tg.t1 >= 0) total += fk_exp((x1 - mm) * inv);
    if (tg.t2 >= 0) total += fk_exp((x2 - mm) * inv);
    return {mm, inv, fk_log(total)};
  }
};

/// Accumulates one logit into `st`: the target logits are stored, the others enter the sums.
template <typename A>
FUSEDKD_HD void accumulate(SplitStats<A>& st, const RowTargets<A>& tg, int64_t i, A x, A inv,
                           bool two_scales) {
  if (i == tg.t1) {
    st.x1 = x;
  } else if (i == tg.t2) {
    st.x2 = x;
  } else {
    st.add(x, inv, two_scales);
  }
}

/// At one scale, the non-target softmax is the full one times a constant of the row,
/// Shat_i = S_i * k with k = 1 / (1 - S_t): one exponential per element gives both. Only while
/// k is moderate: when the targets hold all but 1e-20 of the mass, S_i underflows where Shat_i
/// does not, and Shat_i needs its own exponential.
template <typename A>
FUSEDKD_HD bool sh_from_s(A k) {
  return k <= A(1e20);
}

/// log of the non-target mass: log(1 - p_t) = lse(non-target) - lse(full), both at scale inv.
template <typename A>
FUSEDKD_HD A log_non_target_mass(const LogProb<A>& non, const LogProb<A>& full) {
  return (non.m - full.m) * non.inv + non.ls - full.ls;
}

// ---------------------------------------------------------------------------------------------
// NKD: row loss = -(T_t + ce) log S_t - gamma * lambda^2 * sum_{i != t} That_i log Shat_i, and
// the paper's variants (NkdTerms). Every variant has the same gradient shape per element:
//   target:     coef * S_t - k_t
//   non-target: k_n * S_i + g_a * Shat_i - g_b * That_i      (Shat, That at 1/lambda)
// so the default pays one multiply more than NKD alone, and no branch.
// ---------------------------------------------------------------------------------------------

/// Which NKD terms a row has (NkdOptions' target, non_target, t2).
struct NkdTerms {
  bool target = true;      ///< -T_t log S_t
  int non_target = 0;      ///< 0: normalized (NKD), 1: plain (KD's form), 2: none
  bool t2 = false;         ///< -(1 - T_t) log(1 - S_t)
};

template <typename A>
struct NkdRow {
  LogProb<A> S, Shat, That;  // student full (scale 1), student / teacher non-target (1/lambda)
  A coef;                    // weight of -log S_t: T_t (target term) + ce_weight
  A k_t;                     // target gradient: coef * S_t - k_t
  A k_n, g_a, g_b;           // non-target gradient: k_n * S_i + g_a * Shat_i - g_b * That_i
  A l_non;                   // loss weight of sum That * log Shat
  A l_const;                 // the rest of the row loss: -coef * log S_t and the row constants
  A sh_per_s;                // Shat_i / S_i when lambda = 1 (one constant per row)
  A s_t;                     // S_t
  A k_s, k_sh, k_th;         // StatExps factors of S, Shat, That
  int32_t t;
  bool unit;                 // Shat_i = S_i * sh_per_s (see sh_from_s): one exponential saved

  /// `zs`, `vs`: stats of the student and teacher rows with inv = 1/lambda.
  FUSEDKD_HD NkdRow(const SplitStats<A>& zs, const SplitStats<A>& vs, const RowTargets<A>& tg,
                    A inv_lambda, A gamma, A ce, NkdTerms terms = NkdTerms()) {
    S = zs.full(A(1), tg);
    Shat = zs.non_target(inv_lambda);
    That = vs.non_target(inv_lambda);
    const LogProb<A> T = vs.full(A(1), tg);
    const A tt = fk_exp(T(vs.x1));
    coef = (terms.target ? tt : A(0)) + ce;
    const A log_st = S(zs.x1);
    const A lambda = A(1) / inv_lambda;
    const A g_non = terms.non_target == 2 ? A(0) : gamma * lambda;
    k_t = coef;
    k_n = coef;
    g_a = g_b = g_non;
    l_non = g_non * lambda;
    l_const = -weighted(coef, log_st);
    if (terms.non_target == 1) {
      // KD's form at 1/lambda: S_i = Shat_i (1 - S_t), T_i = That_i (1 - T_t) for i != t, so
      // -sum T_i log S_i = (1 - T_t) (-sum That_i log Shat_i - log(1 - S_t)); its gradient is
      // g_non * (1 - T_t) ((1 - S_t) Shat_i - That_i) off the target, g_non (1 - T_t) S_t on it.
      const LogProb<A> Sl = zs.full(inv_lambda, tg), Tl = vs.full(inv_lambda, tg);
      const A log_sn = log_non_target_mass(Shat, Sl);
      const A tn = fk_exp(log_non_target_mass(That, Tl));
      g_b = g_non * tn;
      g_a = g_b * fk_exp(log_sn);
      k_t -= g_b * fk_exp(Sl(zs.x1));
      l_non *= tn;
      l_const -= weighted(l_non, log_sn);
    }
    if (terms.t2) {
      // -(1 - T_t) log(1 - S_t) at scale 1: gradient (1 - T_t) S_t on the target and
      // -(1 - T_t) S_t S_i / (1 - S_t) off it (S_i / (1 - S_t) is Shat_i when lambda = 1).
      const LogProb<A> S1hat = zs.non_target(A(1));
      const A log_sn = log_non_target_mass(S1hat, S);
      const A c2 = A(1) - tt;
      const A st = fk_exp(log_st);
      k_t -= c2 * st;
      if (inv_lambda == A(1)) {
        g_a -= c2 * st;
      } else {
        const A r = fk_exp(log_st - log_sn);  // S_t / (1 - S_t); inf only when S_i are all 0
        k_n -= c2 * (r < max_finite<A>() ? r : max_finite<A>());
      }
      l_const -= weighted(c2, log_sn);
    }
    sh_per_s = fk_exp((S.m - Shat.m) + (S.ls - Shat.ls));
    unit = inv_lambda == A(1) && sh_from_s(sh_per_s);
    s_t = fk_exp(log_st);
    k_s = S.rel(zs.m);
    k_sh = Shat.rel(zs.m);
    k_th = That.rel(vs.m);
    t = tg.t1;
  }

  /// Gradient of the row loss w.r.t. z_i for the lanes of z (student) and v (teacher);
  /// `target`: the lanes where i is the target. Adds the lanes' shares of sum That*log Shat to
  /// acc. V is A (one element) or a vector of lanes of the CPU backend (M its lane mask).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V elements(M target, V z, V v, V& acc) const {
    const V s = fk_exp(S(z));
    const V sh = unit ? s * sh_per_s : fk_exp(Shat(z));
    return gradient(target, z, s, sh, fk_exp(That(v)), acc);
  }

  /// The same from the statistics pass's exponentials (no exponential here).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V elements(M target, V z, V v, const StatExps<V>& e, V& acc) const {
    (void)v;  // NKD's loss terms read only the student
    const V s = choose(target, V(s_t), e.z1 * k_s);
    const V sh = unit ? s * sh_per_s : e.zt * k_sh;
    return gradient(target, z, s, sh, e.vt * k_th, acc);
  }

  /// The gradient from S_i (S_t at the target), Shat_i and That_i (any value at the target).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V gradient(M target, V z, V s, V sh, V th, V& acc) const {
    acc += choose(target, V(0), weighted(th, Shat(z)));  // That_i = 0: no share (-inf logits)
    return choose(target, coef * s - k_t, k_n * s + g_a * sh - g_b * th);
  }

  FUSEDKD_HD A element(int32_t i, A z, A v, A& acc) const { return elements(i == t, z, v, acc); }

  FUSEDKD_HD A loss(A acc) const { return l_const - l_non * acc; }
};

// ---------------------------------------------------------------------------------------------
// KD: row loss = weight * T^2 * KL(softmax(v/T) || softmax(z/T)) + ce * (-log S_t).
// ---------------------------------------------------------------------------------------------
template <typename A>
struct KdRow {
  LogProb<A> P, Q, S;  // student and teacher at 1/T, student at scale 1 (cross-entropy)
  A g_kl;              // weight * T
  A l_kl;              // weight * T^2
  A ce;
  A log_st;
  A p_t, q_t, s_t;     // the target's p, q, S
  A k_p, k_q, k_s;     // StatExps factors of P, Q, S
  int32_t t;
  bool has_ce;

  FUSEDKD_HD KdRow(const SplitStats<A>& zs, const SplitStats<A>& vs, const RowTargets<A>& tg,
                   A inv_t, A weight, A ce_weight) {
    P = zs.full(inv_t, tg);
    Q = vs.full(inv_t, tg);
    const A temp = A(1) / inv_t;
    g_kl = weight * temp;
    l_kl = weight * temp * temp;
    t = tg.t1;
    ce = t >= 0 ? ce_weight : A(0);
    has_ce = ce != A(0);
    // S (scale 1) only for the cross-entropy: without it, a backend may skip the scale-1 sums.
    S = ce != A(0) ? zs.full(A(1), tg) : LogProb<A>{A(0), A(1), A(0)};
    log_st = ce != A(0) ? S(zs.x1) : A(0);
    p_t = t >= 0 ? fk_exp(P(zs.x1)) : A(0);
    q_t = t >= 0 ? fk_exp(Q(vs.x1)) : A(0);
    s_t = has_ce ? fk_exp(log_st) : A(0);
    k_p = P.rel(zs.m);
    k_q = Q.rel(vs.m);
    k_s = has_ce ? S.rel(zs.m) : A(0);
  }

  /// Gradient w.r.t. z_i for the lanes of z and v (see NkdRow::elements); adds the lanes'
  /// shares of KL(q || p) to acc. S is a dummy without the cross-entropy, and not evaluated.
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V elements(M target, V z, V v, V& acc) const {
    return gradient(target, z, v, fk_exp(P(z)), fk_exp(Q(v)), has_ce ? fk_exp(S(z)) : V(0), acc);
  }

  /// The same from the statistics pass's exponentials (no exponential here).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V elements(M target, V z, V v, const StatExps<V>& e, V& acc) const {
    const V p = choose(target, V(p_t), e.zt * k_p), q = choose(target, V(q_t), e.vt * k_q);
    return gradient(target, z, v, p, q, has_ce ? choose(target, V(s_t), e.z1 * k_s) : V(0), acc);
  }

  /// The gradient from p_i, q_i and (with the cross-entropy) S_i.
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V gradient(M target, V z, V v, V p, V q, V s, V& acc) const {
    acc += xlogy_diff(q, Q(v), P(z));
    const V g = g_kl * (p - q);
    return has_ce ? g + ce * (s - choose(target, V(1), V(0))) : g;
  }

  FUSEDKD_HD A element(int32_t i, A z, A v, A& acc) const { return elements(i == t, z, v, acc); }

  FUSEDKD_HD A loss(A acc) const { return l_kl * acc - ce * log_st; }
};

// ---------------------------------------------------------------------------------------------
// DKD: row loss = alpha * TCKD + beta * NCKD + ce * (-log S_t), at temperature T.
// ---------------------------------------------------------------------------------------------
template <typename A>
struct DkdRow {
  LogProb<A> Phat, Qhat, S;  // non-target student / teacher at 1/T, student full at scale 1
  A pt, qt;                  // target probabilities at 1/T
  A tckd;                    // T^2 * KL([q_t, 1-q_t] || [p_t, 1-p_t])
  A g_tc, g_nc;              // alpha * T, beta * T
  A l_nc;                    // beta * T^2
  A alpha, ce, log_st;
  A s_t;                     // S_t
  A k_ph, k_qh, k_s;         // StatExps factors of Phat, Qhat, S
  int32_t t;
  bool has_ce;

  FUSEDKD_HD DkdRow(const SplitStats<A>& zs, const SplitStats<A>& vs, const RowTargets<A>& tg,
                    A inv_t, A alpha_, A beta, A ce_weight) {
    const LogProb<A> P = zs.full(inv_t, tg), Q = vs.full(inv_t, tg);
    Phat = zs.non_target(inv_t);
    Qhat = vs.non_target(inv_t);
    S = ce_weight != A(0) ? zs.full(A(1), tg) : LogProb<A>{A(0), A(1), A(0)};
    const A log_pt = P(zs.x1), log_qt = Q(vs.x1);
    const A log_pn = log_non_target_mass(Phat, P), log_qn = log_non_target_mass(Qhat, Q);
    pt = fk_exp(log_pt);
    qt = fk_exp(log_qt);
    const A temp = A(1) / inv_t;
    tckd = temp * temp *
           (xlogy_diff(qt, log_qt, log_pt) + xlogy_diff(fk_exp(log_qn), log_qn, log_pn));
    alpha = alpha_;
    g_tc = alpha_ * temp;
    g_nc = beta * temp;
    l_nc = beta * temp * temp;
    ce = ce_weight;
    has_ce = ce != A(0);
    log_st = has_ce ? S(zs.x1) : A(0);
    s_t = has_ce ? fk_exp(log_st) : A(0);
    k_ph = Phat.rel(zs.m);
    k_qh = Qhat.rel(vs.m);
    k_s = has_ce ? S.rel(zs.m) : A(0);
    t = tg.t1;
  }

  /// Gradient w.r.t. z_i for the lanes of z and v (see NkdRow::elements); adds the lanes'
  /// shares of KL(That || Shat) to acc. S is a dummy without the cross-entropy, and not evaluated.
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V elements(M target, V z, V v, V& acc) const {
    return gradient(target, z, v, fk_exp(Phat(z)), fk_exp(Qhat(v)),
                    has_ce ? fk_exp(S(z)) : V(0), acc);
  }

  /// The same from the statistics pass's exponentials (no exponential here).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V elements(M target, V z, V v, const StatExps<V>& e, V& acc) const {
    return gradient(target, z, v, e.zt * k_ph, e.vt * k_qh,
                    has_ce ? choose(target, V(s_t), e.z1 * k_s) : V(0), acc);
  }

  /// The gradient from Phat_i, Qhat_i (any value at the target) and (with the cross-entropy)
  /// S_i (S_t at the target).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD V gradient(M target, V z, V v, V ph, V qh, V s, V& acc) const {
    const V g = has_ce ? ce * s : V(0);
    acc += choose(target, V(0), xlogy_diff(qh, Qhat(v), Phat(z)));
    return choose(target, g + g_tc * (pt - qt) - ce, g + g_tc * ph * (qt - pt) + g_nc * (ph - qh));
  }

  FUSEDKD_HD A element(int32_t i, A z, A v, A& acc) const { return elements(i == t, z, v, acc); }

  FUSEDKD_HD A loss(A acc) const { return alpha * tckd + l_nc * acc - ce * log_st; }
};

// ---------------------------------------------------------------------------------------------
// USKD. Phase 1 (per row): the student's target probabilities, whose squares the batch averages.
// Phase 2 (per row): the rank keys R_i, a sort, then UskdRow::element per class.
// ---------------------------------------------------------------------------------------------

/// Rank key of class i, by `mode` (UskdRank's order):
///   0 (reference) W_i / (1 - sum_k W_tk + 1e-6) + log S_i / (1 - sum_k log S_tk + 1e-6)
///   1 (paper)     W_i / (1 - sum_k W_tk + 1e-6) + S_i / (1 - sum_k S_tk + 1e-6)
///   2 (weak) W_i,  3 (final) S_i,  4 (combination) W_i + S_i
/// All are a * W_i + b * X_i, X = log S in mode 0 and S otherwise (`paper`). Sorted descending,
/// ties by lower index.
template <typename A>
struct UskdRankKey {
  LogProb<A> S, W;
  A a, b;
  bool paper;  // X = S (every mode but the reference one)

  FUSEDKD_HD UskdRankKey(const LogProb<A>& S_, const LogProb<A>& W_, const SplitStats<A>& zs,
                         const SplitStats<A>& ws, const RowTargets<A>& tg, int mode)
      : S(S_), W(W_), paper(mode != 0) {
    if (mode >= 2) {
      a = mode == 3 ? A(0) : A(1);
      b = mode == 2 ? A(0) : A(1);
      return;
    }
    A wt = fk_exp(W(ws.x1)), xt = paper ? fk_exp(S(zs.x1)) : S(zs.x1);
    if (tg.t2 >= 0) {
      wt += fk_exp(W(ws.x2));
      xt += paper ? fk_exp(S(zs.x2)) : S(zs.x2);
    }
    a = A(1) / (A(1) - wt + A(1e-6));
    b = A(1) / (A(1) - xt + A(1e-6));
  }

  /// The key with X fixed at compile time (the reference mode needs one exponential per
  /// element, not two), for the lanes of z and w; also gives W_i and (X = S) S_i, which the
  /// gradient pass needs again.
  FUSEDKD_HD_TEMPLATE
  template <bool Paper, typename V>
  FUSEDKD_HD V eval(V z, V w, V& w_prob, V& s_prob) const {
    w_prob = fk_exp(W(w));
    return from_w_prob<Paper>(z, w_prob, s_prob);
  }

  /// The same with W_i known (the CPU backend's kept exponentials of w, times W.rel).
  FUSEDKD_HD_TEMPLATE
  template <bool Paper, typename V>
  FUSEDKD_HD V from_w_prob(V z, V w_prob, V& s_prob) const {
    const V log_s = S(z);
    if (Paper) s_prob = fk_exp(log_s);
    return w_prob * a + (Paper ? s_prob : log_s) * b;
  }

  FUSEDKD_HD A operator()(A z, A w) const {
    A w_prob, s_prob;
    return paper ? eval<true>(z, w, w_prob, s_prob) : eval<false>(z, w, w_prob, s_prob);
  }
};

/// Sum of 1/r for r = 1..n (the Zipf mass of all C ranks).
template <typename A>
FUSEDKD_HD A harmonic(int64_t n) {
  A h = A(0);
  for (int64_t r = n; r >= 1; --r) h += A(1) / A(r);  // small terms first
  return h;
}

/// u_k = S_tk^2 (S_tk without `square`) for the row's target classes (u2 = 0 without a second
/// target): USKD's soft target before the batch statistics of the same values enter it.
template <typename A>
FUSEDKD_HD void uskd_target_squares(const SplitStats<A>& zs, const RowTargets<A>& tg, A& sq1,
                                    A& sq2, bool square = true) {
  const LogProb<A> S = zs.full(A(1), tg);
  const A s1 = fk_exp(S(zs.x1));
  sq1 = square ? s1 * s1 : s1;
  sq2 = A(0);
  if (tg.t2 >= 0) {
    const A s2 = fk_exp(S(zs.x2));
    sq2 = square ? s2 * s2 : s2;
  }
}

/// Batch statistics of one target column of u (uskd_target_squares) over the non-ignored rows.
template <typename A>
struct UskdColumn {
  A mean = A(0);     ///< mean of u
  A min = A(0);      ///< smallest u
  A max = A(0);      ///< largest u
  A sum_exp = A(0);  ///< sum of exp(u) (u <= 1: no overflow)
  A sum_v = A(0);    ///< sum of the label values V
};

/// The soft target P of one target from its u, its label value V and its column's batch
/// statistics, by `mode` (UskdSoftTarget's order): 0 u + V - mean, 1 exp(u) / sum_exp * sum_v,
/// 2 sqrt(u - min), 3 u / max, 4 u / mean. P = 0 where V = 0; modes 3 and 4 give 0 when the
/// batch's max or mean is 0 (every S_t underflowed).
template <typename A>
FUSEDKD_HD A uskd_soft_target(int mode, A u, A v, const UskdColumn<A>& col) {
  if (v == A(0)) return A(0);
  switch (mode) {
    case 1: return fk_exp(u) / col.sum_exp * col.sum_v;
    case 2: return u > col.min ? fk_sqrt(u - col.min) : A(0);
    case 3: return col.max > A(0) ? u / col.max : A(0);
    case 4: return col.mean > A(0) ? u / col.mean : A(0);
    default: return u + v - col.mean;
  }
}

/// Which USKD terms a row has (UskdOptions' target, non_target, t2).
struct UskdTerms {
  bool target = true;      ///< alpha * L_target
  bool non_target = true;  ///< beta * L_non
  bool t2 = false;         ///< -alpha * (1 - sum_k P_k) log(1 - sum_k S_tk)
};

template <typename A>
struct UskdRow {
  LogProb<A> S, Shat, W;
  A inv_zsum;    // 1 / sum over non-targets of 1/r
  A k_o, k_t;    // gradient weight of S_i off and on the targets
  A b_sh, beta;  // non-target gradient: k_o * S_i + b_sh * Shat_i - beta * Zhat_i
  A tt1, tt2;    // subtracted from the target gradients
  A mu;
  A q_on, q_off; // weak target: q_i = q_on * y_i + q_off
  A qsum;        // sum_i q_i
  A l_const;     // the row loss but the accumulated sums
  A sh_per_s;    // Shat_i / S_i, a constant of the row
  bool unit;     // Shat_i = S_i * sh_per_s (see sh_from_s): one exponential saved
  RowTargets<A> tg;

  /// `p1`, `p2`: the soft targets P_k (uskd_soft_target); `rank1`, `rank2`: the target classes'
  /// 1-based Zipf ranks (rank2 unused without a second target); `h`: harmonic(C).
  FUSEDKD_HD UskdRow(const SplitStats<A>& zs, const SplitStats<A>& ws, const RowTargets<A>& tg_,
                     A p1, A p2, int32_t rank1, int32_t rank2, A h, int64_t c, A alpha, A beta_,
                     A mu_, A eps, A ce, UskdTerms terms)
      : mu(mu_), tg(tg_) {
    const A a1 = terms.target ? alpha : A(0), a2 = terms.t2 ? alpha : A(0);
    beta = terms.non_target ? beta_ : A(0);
    A zipf_targets = A(1) / A(rank1);
    if (tg.t2 >= 0) zipf_targets += A(1) / A(rank2);
    S = zs.full(A(1), tg);
    Shat = zs.non_target(A(1));
    W = ws.full(A(1), tg);
    const A psum = p1 + p2;
    inv_zsum = A(1) / (h - zipf_targets);
    q_on = A(1) - eps;
    q_off = eps / A(c);
    qsum = q_on * tg.ysum + eps;  // ysum: 1 for hard labels
    const A log_s1 = S(zs.x1);
    const A log_s2 = tg.t2 >= 0 ? S(zs.x2) : A(0);
    k_o = a1 * psum + ce;
    k_t = k_o;
    b_sh = beta;
    tt1 = a1 * p1 + ce;
    tt2 = a1 * p2;
    l_const = -weighted(a1, weighted(p1, log_s1) + weighted(p2, log_s2)) - weighted(ce, log_s1);
    if (a2 != A(0)) {
      // T2 = -c2 log(1 - S_A), c2 = alpha (1 - psum), S_A = sum_k S_tk: gradient c2 S_i on a
      // target, -c2 S_A S_i / (1 - S_A) = -c2 S_A Shat_i off them.
      const A c2 = a2 * (A(1) - psum);
      const A s_a = fk_exp(log_s1) + (tg.t2 >= 0 ? fk_exp(log_s2) : A(0));
      k_t += c2;
      b_sh -= c2 * s_a;
      l_const -= weighted(c2, log_non_target_mass(Shat, S));
    }
    sh_per_s = fk_exp((S.m - Shat.m) + (S.ls - Shat.ls));
    unit = sh_from_s(sh_per_s);
  }

  /// The released USKD with the default terms; `sq1`, `sq2`: the row's S_tk^2
  /// (uskd_target_squares); `mean1`, `mean2`: their batch means.
  FUSEDKD_HD UskdRow(const SplitStats<A>& zs, const SplitStats<A>& ws, const RowTargets<A>& tg_,
                     A sq1, A sq2, A mean1, A mean2, int32_t rank1, int32_t rank2, A h, int64_t c,
                     A alpha_, A beta_, A mu_, A eps, A ce_)
      : UskdRow(zs, ws, tg_, tg_.v1 != A(0) ? sq1 + tg_.v1 - mean1 : A(0),
                tg_.t2 >= 0 && tg_.v2 != A(0) ? sq2 + tg_.v2 - mean2 : A(0), rank1, rank2, h, c,
                alpha_, beta_, mu_, eps, ce_, UskdTerms()) {}

  /// Gradients w.r.t. z_i and w_i for the lanes of z and w, at 1-based ranks `rank`, with
  /// label values y, S_i = `s` and W_i = `w_prob` (the backend computes them, or has them from
  /// the rank keys). `is1`, `target`: the lanes of the first target, of either target.
  /// Adds the lanes' shares of sum Zhat*log Shat to acc_non and of sum q*log W to acc_weak.
  /// V is A (one element) or a vector of lanes of the CPU backend (M its lane mask).
  FUSEDKD_HD_TEMPLATE
  template <typename V, typename M>
  FUSEDKD_HD void elements(M is1, M target, V z, V w, V y, V rank, V s, V w_prob, V& dz, V& dw,
                           V& acc_non, V& acc_weak) const {
    const V lw = W(w);
    const V q = q_on * y + q_off;
    acc_weak += weighted(q, lw);  // q_i = 0 (eps = 0, y_i = 0): no share, even for w_i = -inf
    dw = mu * (qsum * w_prob - q);
    const V lsh = Shat(z);
    const V zh = inv_zsum / rank;
    acc_non += choose(target, V(0), zh * lsh);
    const V target_term = choose(is1, V(tt1), V(tt2));
    const V sh = unit ? s * sh_per_s : fk_exp(lsh);
    dz = choose(target, k_t * s - target_term, k_o * s + b_sh * sh - beta * zh);
  }

  /// One class i at 1-based rank r with label value y_i (the CUDA kernels' form).
  FUSEDKD_HD void element(int32_t i, A z, A w, A y, int32_t r, A& dz, A& dw, A& acc_non,
                          A& acc_weak) const {
    const bool is1 = i == tg.t1, target = is1 || i == tg.t2;
    elements(is1, target, z, w, y, A(r), fk_exp(S(z)), fk_exp(W(w)), dz, dw, acc_non, acc_weak);
  }

  FUSEDKD_HD A loss(A acc_non, A acc_weak) const {
    return l_const - beta * acc_non - mu * acc_weak;
  }
};

}  // namespace detail
}  // namespace fusedkd
