// case.hpp — a conformance case (shared/conformance/FORMAT.md) read from its folder.
//
// `load_case` turns a case folder into a `Problem` (what a device backend runs: the loss, its
// options and the inputs, already rounded to the case's dtype) and an `Expected` (what the
// result is compared with, and the tolerances). Anything the checker cannot interpret exactly —
// an unknown loss, dtype, option or option value, a missing file, a malformed .npy, a shape that
// does not fit — is a CaseError whose message becomes the case's FAIL line.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fusedkd/fusedkd.hpp"
#include "half.hpp"
#include "npy.hpp"

namespace fusedkd_check {

using json = nlohmann::json;

struct CaseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class LossKind { kNkd, kUskd, kKd, kDkd };

inline const char* loss_name(LossKind k) {
  switch (k) {
    case LossKind::kNkd: return "nkd";
    case LossKind::kUskd: return "uskd";
    case LossKind::kKd: return "kd";
    case LossKind::kDkd: return "dkd";
  }
  return "?";
}

/// One loss evaluation, as a device backend receives it. Float inputs hold values that are
/// exactly representable in `dtype`. Every buffer has at least one element, so that `data()` is
/// never null, even for N = 0.
struct Problem {
  LossKind loss = LossKind::kNkd;
  DType dtype = DType::kFloat32;
  fusedkd::NkdOptions nkd;  // the options of `loss` (only that one is used)
  fusedkd::UskdOptions uskd;
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;

  int64_t n = 0, c = 0;        // student logits: [n, c]
  std::vector<float> student;
  int64_t other_rows = 0, other_cols = 0;  // teacher (nkd, kd, dkd) or weak (uskd) logits
  std::vector<float> other;

  enum class LabelKind { kNone, kInt32, kInt64, kSoft } label_kind = LabelKind::kNone;
  std::vector<int32_t> labels32;  // [n]
  std::vector<int64_t> labels64;  // [n]
  std::vector<float> soft;        // [n, c]

  const fusedkd::CommonOptions& common() const {
    switch (loss) {
      case LossKind::kNkd: return nkd;
      case LossKind::kUskd: return uskd;
      case LossKind::kKd: return kd;
      case LossKind::kDkd: return dkd;
    }
    return nkd;
  }

  fusedkd::Labels labels() const {
    switch (label_kind) {
      case LabelKind::kNone: return fusedkd::Labels::none();
      case LabelKind::kInt32: return fusedkd::Labels::index(labels32.data());
      case LabelKind::kInt64: return fusedkd::Labels::index(labels64.data());
      case LabelKind::kSoft: return fusedkd::Labels::soft(soft.data(), c);
    }
    return fusedkd::Labels::none();
  }

  /// Number of loss values the call writes: N for reduction none, else 1.
  int64_t loss_count() const { return common().reduction == fusedkd::Reduction::kNone ? n : 1; }
  bool has_weak() const { return loss == LossKind::kUskd; }
};

/// What a device backend returns. The caller sizes the buffers (loss: loss_count(); gradients:
/// n * c, at least one element each) and fills them with a sentinel before the call. The
/// gradients come back as floats holding values of the case's dtype.
struct Result {
  fusedkd::Status status = fusedkd::Status::kSuccess;
  std::vector<float> loss;
  std::vector<float> grad_student;
  std::vector<float> grad_weak;  // uskd only
};

/// The expected outcome of a case.
struct Expected {
  std::string error;  // non-empty: the call must be refused with this status name
  std::vector<double> loss;
  std::vector<double> grad_student, grad_weak;
  bool has_grad_student = false, has_grad_weak = false;
  double loss_rtol = 1e-4, grad_rtol = 1e-4;
};

struct Case {
  Problem problem;
  Expected expected;
};

namespace detail {

inline double number(const json& v, const std::string& what) {
  if (!v.is_number()) throw CaseError(what + " must be a number, found " + v.dump());
  return v.get<double>();
}

inline std::string text(const json& v, const std::string& what) {
  if (!v.is_string()) throw CaseError(what + " must be a string, found " + v.dump());
  return v.get<std::string>();
}

/// Sets one of the options every loss has. Returns false when `key` is not one of them.
inline bool common_option(fusedkd::CommonOptions& o, const std::string& key, const json& v) {
  const std::string what = "option '" + key + "'";
  if (key == "reduction") {
    const std::string r = text(v, what);
    if (r == "mean") o.reduction = fusedkd::Reduction::kMean;
    else if (r == "sum") o.reduction = fusedkd::Reduction::kSum;
    else if (r == "none") o.reduction = fusedkd::Reduction::kNone;
    else throw CaseError("unknown reduction '" + r + "' (mean, sum or none)");
  } else if (key == "ignore_index") {
    const double d = number(v, what);
    if (!(std::floor(d) == d) || std::fabs(d) > 9.0e15)
      throw CaseError("option 'ignore_index' must be an integer, found " + v.dump());
    o.ignore_index = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(d);
  } else if (key == "grad_scale") {
    o.grad_scale = number(v, what);
  } else if (key == "ce_weight") {
    o.ce_weight = number(v, what);
  } else {
    return false;
  }
  return true;
}

inline void parse_options(Problem& p, const json& opts) {
  if (!opts.is_object()) throw CaseError("'options' must be an object");
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    const std::string what = "option '" + key + "'";
    bool known = false;
    switch (p.loss) {
      case LossKind::kNkd:
        known = common_option(p.nkd, key, v);
        if (key == "temperature") p.nkd.temperature = number(v, what), known = true;
        if (key == "gamma") p.nkd.gamma = number(v, what), known = true;
        break;
      case LossKind::kUskd:
        known = common_option(p.uskd, key, v);
        if (key == "alpha") p.uskd.alpha = number(v, what), known = true;
        if (key == "beta") p.uskd.beta = number(v, what), known = true;
        if (key == "mu") p.uskd.mu = number(v, what), known = true;
        if (key == "smoothing") p.uskd.smoothing = number(v, what), known = true;
        if (key == "rank") {
          const std::string r = text(v, what);
          if (r == "reference") p.uskd.rank = fusedkd::UskdRank::kReference;
          else if (r == "paper") p.uskd.rank = fusedkd::UskdRank::kPaper;
          else throw CaseError("unknown rank '" + r + "' (reference or paper)");
          known = true;
        }
        break;
      case LossKind::kKd:
        known = common_option(p.kd, key, v);
        if (key == "temperature") p.kd.temperature = number(v, what), known = true;
        if (key == "weight") p.kd.weight = number(v, what), known = true;
        break;
      case LossKind::kDkd:
        known = common_option(p.dkd, key, v);
        if (key == "temperature") p.dkd.temperature = number(v, what), known = true;
        if (key == "alpha") p.dkd.alpha = number(v, what), known = true;
        if (key == "beta") p.dkd.beta = number(v, what), known = true;
        break;
    }
    if (!known)
      throw CaseError("unknown option '" + key + "' for " + loss_name(p.loss));
  }
}

inline npy::Array load_array(const std::filesystem::path& dir, const json& files,
                             const std::string& key, const std::string& section) {
  const std::string what = section + "." + key;
  const std::string name = text(files.at(key), what);
  try {
    return npy::load((dir / name).string());
  } catch (const npy::Error& e) {
    throw CaseError(what + ": " + e.what());
  }
}

/// [N, C] float logits, rounded to `dtype` (exact for conforming cases: FORMAT.md says the
/// stored values are representable; rounding is what "cast them before the call" means).
inline std::vector<float> logits(const npy::Array& a, const std::string& what, DType dtype,
                                 int64_t& rows, int64_t& cols) {
  if (!npy::is_float(a.type) || a.ndim() != 2)
    throw CaseError(what + " must be a float [N, C] array, found " + npy::descr(a.type) + " " +
                    a.shape_string());
  rows = a.shape[0];
  cols = a.shape[1];
  std::vector<float> v = a.to_float();
  for (float& x : v) x = round_to(dtype, x);
  if (v.empty()) v.resize(1, 0.0f);
  return v;
}

inline std::vector<double> expected_array(const npy::Array& a, const std::string& what,
                                          int64_t count, const std::string& want_shape) {
  if (!npy::is_float(a.type) || a.size() != count)
    throw CaseError(what + " must hold " + want_shape + " float values, found " +
                    npy::descr(a.type) + " " + a.shape_string());
  return a.to_double();
}

}  // namespace detail

/// Reads the case in folder `dir`. Throws CaseError (or std::exception) when it cannot be run.
inline Case load_case(const std::filesystem::path& dir) {
  using detail::text;
  Case cs;
  Problem& p = cs.problem;
  Expected& e = cs.expected;

  json j;
  {
    std::ifstream in(dir / "case.json");
    if (!in) throw CaseError("cannot open case.json");
    try {
      j = json::parse(in);
    } catch (const json::exception& ex) {
      throw CaseError(std::string("case.json is not valid JSON: ") + ex.what());
    }
  }
  if (!j.is_object()) throw CaseError("case.json must hold an object");
  for (const char* key : {"loss", "inputs", "expected"})
    if (!j.contains(key)) throw CaseError(std::string("case.json has no '") + key + "'");

  const std::string loss = text(j["loss"], "'loss'");
  if (loss == "nkd") p.loss = LossKind::kNkd;
  else if (loss == "uskd") p.loss = LossKind::kUskd;
  else if (loss == "kd") p.loss = LossKind::kKd;
  else if (loss == "dkd") p.loss = LossKind::kDkd;
  else throw CaseError("unknown loss '" + loss + "' (nkd, uskd, kd or dkd)");

  const std::string dtype = j.contains("dtype") ? text(j["dtype"], "'dtype'") : "float32";
  if (dtype == "float32") {
    p.dtype = DType::kFloat32;
    e.loss_rtol = 1e-4, e.grad_rtol = 1e-4;
  } else if (dtype == "float16") {
    p.dtype = DType::kFloat16;
    e.loss_rtol = 1e-3, e.grad_rtol = 2e-3;
  } else if (dtype == "bfloat16") {
    p.dtype = DType::kBFloat16;
    e.loss_rtol = 1e-3, e.grad_rtol = 1e-2;
  } else {
    throw CaseError("unknown dtype '" + dtype + "' (float32, float16 or bfloat16)");
  }

  if (j.contains("options")) detail::parse_options(p, j["options"]);

  if (j.contains("tolerance")) {
    const json& t = j["tolerance"];
    if (!t.is_object()) throw CaseError("'tolerance' must be an object");
    for (auto it = t.begin(); it != t.end(); ++it) {
      if (it.key() == "loss_rtol") e.loss_rtol = detail::number(it.value(), "tolerance.loss_rtol");
      else if (it.key() == "grad_rtol") e.grad_rtol = detail::number(it.value(), "tolerance.grad_rtol");
      else throw CaseError("unknown tolerance '" + it.key() + "' (loss_rtol, grad_rtol)");
    }
  }

  // ---- inputs
  const json& in = j["inputs"];
  if (!in.is_object()) throw CaseError("'inputs' must be an object");
  const char* other_key = p.has_weak() ? "weak" : "teacher";
  for (auto it = in.begin(); it != in.end(); ++it)
    if (it.key() != "student" && it.key() != other_key && it.key() != "labels")
      throw CaseError("unexpected input '" + it.key() + "' for " + loss_name(p.loss));
  if (!in.contains("student")) throw CaseError("inputs.student is missing");
  if (!in.contains(other_key)) throw CaseError(std::string("inputs.") + other_key + " is missing");

  p.student = detail::logits(detail::load_array(dir, in, "student", "inputs"), "inputs.student",
                             p.dtype, p.n, p.c);
  p.other = detail::logits(detail::load_array(dir, in, other_key, "inputs"),
                           std::string("inputs.") + other_key, p.dtype, p.other_rows, p.other_cols);

  if (in.contains("labels")) {
    const npy::Array a = detail::load_array(dir, in, "labels", "inputs");
    if (!npy::is_float(a.type)) {
      if (a.ndim() != 1 || a.shape[0] != p.n)
        throw CaseError("inputs.labels: hard labels must be [N] = (" + std::to_string(p.n) +
                        ",), found " + a.shape_string());
      const std::vector<int64_t> v = a.to_int64();
      if (a.type == npy::Type::kI4) {
        p.label_kind = Problem::LabelKind::kInt32;
        p.labels32.assign(v.begin(), v.end());
        p.labels32.resize(std::max<size_t>(v.size(), 1), 0);
      } else {
        p.label_kind = Problem::LabelKind::kInt64;
        p.labels64 = v;
        p.labels64.resize(std::max<size_t>(v.size(), 1), 0);
      }
    } else {
      if (a.type != npy::Type::kF4 || a.ndim() != 2 || a.shape[0] != p.n || a.shape[1] != p.c)
        throw CaseError("inputs.labels: soft labels must be float32 [N, C] = (" +
                        std::to_string(p.n) + ", " + std::to_string(p.c) + "), found " +
                        npy::descr(a.type) + " " + a.shape_string());
      p.label_kind = Problem::LabelKind::kSoft;
      p.soft = a.to_float();
      if (p.soft.empty()) p.soft.resize(1, 0.0f);
    }
  }

  // ---- expected
  const json& ex = j["expected"];
  if (!ex.is_object()) throw CaseError("'expected' must be an object");
  if (ex.contains("error")) {
    e.error = text(ex["error"], "expected.error");
    if (e.error.empty()) throw CaseError("expected.error is empty");
    for (auto it = ex.begin(); it != ex.end(); ++it)
      if (it.key() != "error")
        throw CaseError("expected.error comes with an unexpected '" + it.key() + "'");
    return cs;
  }
  for (auto it = ex.begin(); it != ex.end(); ++it)
    if (it.key() != "loss" && it.key() != "grad_student" &&
        !(p.has_weak() && it.key() == "grad_weak"))
      throw CaseError("unexpected expected." + it.key() + " for " + loss_name(p.loss));
  if (!ex.contains("loss")) throw CaseError("expected.loss is missing");
  const bool none = p.common().reduction == fusedkd::Reduction::kNone;
  e.loss = detail::expected_array(detail::load_array(dir, ex, "loss", "expected"), "expected.loss",
                                  p.loss_count(),
                                  none ? "[N] = " + std::to_string(p.n) : std::string("1"));
  const std::string nc = "[N, C] = " + std::to_string(p.n * p.c);
  if (ex.contains("grad_student")) {
    e.has_grad_student = true;
    e.grad_student = detail::expected_array(detail::load_array(dir, ex, "grad_student", "expected"),
                                            "expected.grad_student", p.n * p.c, nc);
  }
  if (ex.contains("grad_weak")) {
    e.has_grad_weak = true;
    e.grad_weak = detail::expected_array(detail::load_array(dir, ex, "grad_weak", "expected"),
                                         "expected.grad_weak", p.n * p.c, nc);
  }
  return cs;
}

}  // namespace fusedkd_check
