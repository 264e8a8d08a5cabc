// fusedkd/detail/cpu_nkd.hpp — NKD on the CPU: the options checked, then the shared row loop.
#pragma once

#include "fusedkd/detail/cpu_backend.hpp"
#include "fusedkd/nkd.hpp"

namespace fusedkd {
namespace detail {
/// NKD's own options are valid in computation type A (both backends check them first; the
/// CUDA backend computes in float, the default).
template <typename A = float>
bool valid_options(const NkdOptions& o) {
  const int form = static_cast<int>(o.non_target);
  return valid_temperature<A>(o.temperature) && option_in_range<A>(o.gamma) && form >= 0 &&
         form <= static_cast<int>(NkdNonTarget::kNone);
}

/// The row terms of NKD's options.
inline NkdTerms nkd_terms(const NkdOptions& o) {
  NkdTerms t;
  t.target = o.target;
  t.non_target = static_cast<int>(o.non_target);
  t.t2 = o.t2;
  return t;
}

template <typename T>
Status nkd_cpu(Matrix<const T> z, Matrix<const T> v, Labels labels, const NkdOptions& o,
               acc_t<T>* loss, Matrix<T> grad) {
  using A = acc_t<T>;
  if (!valid_options<A>(o)) return Status::kInvalidOption;
  const A inv = A(1.0 / o.temperature), gamma = A(o.gamma), ce = A(o.ce_weight);
  const NkdTerms terms = nkd_terms(o);
  return run_pair_loss(z, v, labels, o, 1.0 / o.temperature, false, true, true, loss, grad,
                       [=](const SplitStats<A>& zs, const SplitStats<A>& vs,
                           const RowTargets<A>& tg) { return NkdRow<A>(zs, vs, tg, inv, gamma, ce, terms); });
}
}  // namespace detail

namespace cpu {
inline Status nkd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                  const NkdOptions& options, float* loss, Matrix<float> grad_student) {
  return detail::nkd_cpu(student, teacher, labels, options, loss, grad_student);
}
inline Status nkd(Matrix<const double> student, Matrix<const double> teacher, Labels labels,
                  const NkdOptions& options, double* loss, Matrix<double> grad_student) {
  return detail::nkd_cpu(student, teacher, labels, options, loss, grad_student);
}
}  // namespace cpu
}  // namespace fusedkd
