// cuda_device.cpp — fusedkd-check's CUDA backend (`--device cuda`), built when FUSEDKD_CUDA is ON.
//
// A case's inputs go to the GPU in the case's dtype (float, __half or __nv_bfloat16) through
// tests/cuda/runner (the translation unit that instantiates the kernels), the call runs with
// fusedkd::cuda::Validation::kSync so that a bad label is refused before anything is written,
// exactly as the format asks, and `fusedkd::cuda::check` must then report a clean status word.
// Outputs the device did not write come back as the checker's sentinel, so "refused but wrote
// to its outputs" is checked for real.
#include <stdexcept>
#include <string>

#include "case.hpp"
#include "runner/runner.hpp"

using fusedkd_check::LossKind;
using fusedkd_check::Problem;
using fusedkd_check::Result;

bool cuda_device_available(std::string& why) { return fkcuda::device_available(&why); }

fusedkd::Status run_cuda(const Problem& p, Result& r) {
  fkcuda::Problem q;
  switch (p.loss) {
    case LossKind::kNkd: q.loss = fkcuda::Loss::kNkd; break;
    case LossKind::kUskd: q.loss = fkcuda::Loss::kUskd; break;
    case LossKind::kKd: q.loss = fkcuda::Loss::kKd; break;
    case LossKind::kDkd: q.loss = fkcuda::Loss::kDkd; break;
  }
  switch (p.dtype) {
    case fusedkd_check::DType::kFloat32: q.dtype = fkcuda::DType::kFloat32; break;
    case fusedkd_check::DType::kFloat16: q.dtype = fkcuda::DType::kFloat16; break;
    case fusedkd_check::DType::kBFloat16: q.dtype = fkcuda::DType::kBFloat16; break;
  }
  q.nkd = p.nkd;
  q.uskd = p.uskd;
  q.kd = p.kd;
  q.dkd = p.dkd;
  q.n = p.n;
  q.c = p.c;
  q.student = p.student;
  q.other = p.other;
  if (p.other_rows != p.n || p.other_cols != p.c) {
    q.other_n = p.other_rows;
    q.other_c = p.other_cols;
  }
  switch (p.label_kind) {
    case Problem::LabelKind::kNone: q.label_kind = fkcuda::LabelKind::kNone; break;
    case Problem::LabelKind::kInt32: q.label_kind = fkcuda::LabelKind::kHard32; break;
    case Problem::LabelKind::kInt64: q.label_kind = fkcuda::LabelKind::kHard64; break;
    case Problem::LabelKind::kSoft: q.label_kind = fkcuda::LabelKind::kSoft; break;
  }
  q.labels32 = p.labels32;
  q.labels64 = p.labels64;
  q.soft = p.soft;
  q.sync_validation = true;

  const fkcuda::Result g = fkcuda::run(q);
  if (!g.error.empty()) throw std::runtime_error(g.error);
  // Copy back what the device wrote; what it left alone stays the checker's sentinel.
  const auto copy = [&](const std::vector<float>& from, std::vector<float>& to, fkcuda::DType type) {
    for (size_t k = 0; k < from.size() && k < to.size(); ++k) {
      if (!fkcuda::is_sentinel(type, from[k])) to[k] = from[k];
    }
  };
  copy(g.loss, r.loss, fkcuda::DType::kFloat32);  // the loss is float for every dtype
  copy(g.grad_student, r.grad_student, q.dtype);
  copy(g.grad_weak, r.grad_weak, q.dtype);
  if (g.status != fusedkd::Status::kSuccess) return g.status;
  return g.check;  // a clean status word after a successful call
}
