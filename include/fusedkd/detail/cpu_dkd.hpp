// fusedkd/detail/cpu_dkd.hpp — DKD on the CPU: the options checked, then the shared row loop.
#pragma once

#include "fusedkd/detail/cpu_backend.hpp"
#include "fusedkd/dkd.hpp"

namespace fusedkd {
namespace detail {
/// DKD's own options are valid in computation type A (both backends check them first; the
/// CUDA backend computes in float, the default).
template <typename A = float>
bool valid_options(const DkdOptions& o) {
  return valid_temperature<A>(o.temperature) && option_in_range<A>(o.alpha) &&
         option_in_range<A>(o.beta);
}

template <typename T>
Status dkd_cpu(Matrix<const T> z, Matrix<const T> v, Labels labels, const DkdOptions& o,
               acc_t<T>* loss, Matrix<T> grad) {
  using A = acc_t<T>;
  if (!valid_options<A>(o)) return Status::kInvalidOption;
  const A inv = A(1.0 / o.temperature), alpha = A(o.alpha), beta = A(o.beta), ce = A(o.ce_weight);
  return run_pair_loss(z, v, labels, o, 1.0 / o.temperature, false, o.ce_weight != 0.0, false,
                       loss, grad,
                       [=](const SplitStats<A>& zs, const SplitStats<A>& vs,
                           const RowTargets<A>& tg) { return DkdRow<A>(zs, vs, tg, inv, alpha, beta, ce); });
}
}  // namespace detail

namespace cpu {
inline Status dkd(Matrix<const float> student, Matrix<const float> teacher, Labels labels,
                  const DkdOptions& options, float* loss, Matrix<float> grad_student) {
  return detail::dkd_cpu(student, teacher, labels, options, loss, grad_student);
}
inline Status dkd(Matrix<const double> student, Matrix<const double> teacher, Labels labels,
                  const DkdOptions& options, double* loss, Matrix<double> grad_student) {
  return detail::dkd_cpu(student, teacher, labels, options, loss, grad_student);
}
}  // namespace cpu
}  // namespace fusedkd
