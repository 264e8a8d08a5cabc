// case.hpp — a conformance case (shared/conformance/FORMAT.md) read from its folder.
//
// `load_case` turns a case folder into a `Problem` (what a device backend runs: the loss, its
// options and the inputs, already rounded to the case's dtype) and an `Expected` (what the
// result is compared with, and the tolerances). Anything the checker cannot interpret exactly —
// an unknown loss, dtype, option or option value, a missing file, a malformed .npy, a shape that
// does not fit — is a CaseError whose message becomes the case's FAIL line.
//
// Cases are untrusted input: the JSON may nest at most kMaxJsonDepth deep, no JSON value is ever
// serialised back (only its type, or a cut and escaped copy of a string: `shown`), every key of
// case.json must be known, and N and C may not exceed the bytes the case's files hold (so a
// 300-byte case cannot make the checker allocate gigabytes).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
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

/// How deep case.json may nest (a conforming case needs 3).
constexpr int kMaxJsonDepth = 16;

namespace detail {

/// Untrusted text as it may appear in a message: at most `max` bytes, and every byte that is not
/// printable ASCII as \xNN (so a message stays one short line).
inline std::string shown(const std::string& s, size_t max = 64) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
      out += static_cast<char>(ch);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  if (s.size() > max) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

/// What a JSON value is, for a message: never the value itself (it may be huge or deep).
inline std::string kind_of(const json& v) {
  if (v.is_string()) return "the string '" + shown(v.get_ref<const std::string&>()) + "'";
  if (v.is_number() || v.is_boolean() || v.is_null()) return v.dump();  // a scalar: short
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "a binary value";
}

inline double number(const json& v, const std::string& what) {
  if (!v.is_number()) throw CaseError(what + " must be a number, found " + kind_of(v));
  return v.get<double>();
}

inline std::string text(const json& v, const std::string& what) {
  if (!v.is_string()) throw CaseError(what + " must be a string, found " + kind_of(v));
  return v.get<std::string>();
}

inline bool boolean(const json& v, const std::string& what) {
  if (!v.is_boolean()) throw CaseError(what + " must be true or false, found " + v.dump());
  return v.get<bool>();
}

/// Sets one of the options every loss has. Returns false when `key` is not one of them.
inline bool common_option(fusedkd::CommonOptions& o, const std::string& key, const json& v) {
  const std::string what = "option '" + shown(key) + "'";
  if (key == "reduction") {
    const std::string r = text(v, what);
    if (r == "mean") o.reduction = fusedkd::Reduction::kMean;
    else if (r == "sum") o.reduction = fusedkd::Reduction::kSum;
    else if (r == "none") o.reduction = fusedkd::Reduction::kNone;
    else throw CaseError("unknown reduction '" + shown(r) + "' (mean, sum or none)");
  } else if (key == "ignore_index") {
    const double d = number(v, what);
    if (!(std::floor(d) == d) || std::fabs(d) > 9.0e15)
      throw CaseError("option 'ignore_index' must be an integer, found " + kind_of(v));
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
    const std::string what = "option '" + shown(key) + "'";
    bool known = false;
    switch (p.loss) {
      case LossKind::kNkd:
        known = common_option(p.nkd, key, v);
        if (key == "temperature") p.nkd.temperature = number(v, what), known = true;
        if (key == "gamma") p.nkd.gamma = number(v, what), known = true;
        if (key == "target") p.nkd.target = boolean(v, what), known = true;
        if (key == "t2") p.nkd.t2 = boolean(v, what), known = true;
        if (key == "non_target") {
          const std::string f = text(v, what);
          if (f == "normalized") p.nkd.non_target = fusedkd::NkdNonTarget::kNormalized;
          else if (f == "plain") p.nkd.non_target = fusedkd::NkdNonTarget::kPlain;
          else if (f == "none") p.nkd.non_target = fusedkd::NkdNonTarget::kNone;
          else throw CaseError("unknown non_target '" + shown(f) + "' (normalized, plain or none)");
          known = true;
        }
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
          else if (r == "weak") p.uskd.rank = fusedkd::UskdRank::kWeak;
          else if (r == "final") p.uskd.rank = fusedkd::UskdRank::kFinal;
          else if (r == "combination") p.uskd.rank = fusedkd::UskdRank::kCombination;
          else throw CaseError("unknown rank '" + shown(r) + "' (reference, paper, weak, final or combination)");
          known = true;
        }
        if (key == "target") p.uskd.target = boolean(v, what), known = true;
        if (key == "non_target") p.uskd.non_target = boolean(v, what), known = true;
        if (key == "square") p.uskd.square = boolean(v, what), known = true;
        if (key == "t2") p.uskd.t2 = boolean(v, what), known = true;
        if (key == "soft_target") {
          const std::string f = text(v, what);
          if (f == "mean_shift") p.uskd.soft_target = fusedkd::UskdSoftTarget::kMeanShift;
          else if (f == "softmax") p.uskd.soft_target = fusedkd::UskdSoftTarget::kSoftmax;
          else if (f == "sqrt_min") p.uskd.soft_target = fusedkd::UskdSoftTarget::kSqrtMin;
          else if (f == "max_norm") p.uskd.soft_target = fusedkd::UskdSoftTarget::kMaxNorm;
          else if (f == "mean_norm") p.uskd.soft_target = fusedkd::UskdSoftTarget::kMeanNorm;
          else throw CaseError("unknown soft_target '" + shown(f) +
                               "' (mean_shift, softmax, sqrt_min, max_norm or mean_norm)");
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
      throw CaseError("unknown option '" + shown(key) + "' for " + loss_name(p.loss));
  }
}

/// Reads the array that files[key] names. Adds the file's size to `bytes`.
inline npy::Array load_array(const std::filesystem::path& dir, const json& files,
                             const std::string& key, const std::string& section,
                             uint64_t& bytes) {
  const std::string what = section + "." + key;
  const std::string name = text(files.at(key), what);
  try {
    npy::Array a = npy::load((dir / name).string());
    bytes += a.file_bytes;
    return a;
  } catch (const npy::Error& e) {
    throw CaseError(what + " (" + shown(name) + "): " + shown(e.what(), 300));
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
  uint64_t bytes = 0;  // the bytes the case's files hold: bounds N and C
  {
    std::ifstream in(dir / "case.json", std::ios::binary);
    if (!in) throw CaseError("cannot open case.json");
    const std::string textual((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes += textual.size();
    // Refuse deep nesting while parsing, before anything recursive (the value's destructor,
    // a comparison) can meet it.
    const json::parser_callback_t depth_limit = [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth)
        throw CaseError("case.json nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      return true;
    };
    try {
      j = json::parse(textual, depth_limit);
    } catch (const json::exception& ex) {
      throw CaseError("case.json is not valid JSON: " + detail::shown(ex.what(), 200));
    }
  }
  if (!j.is_object()) throw CaseError("case.json must hold an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k != "loss" && k != "dtype" && k != "options" && k != "tolerance" && k != "inputs" &&
        k != "expected")
      throw CaseError("unknown key '" + detail::shown(k) +
                      "' in case.json (loss, dtype, options, tolerance, inputs, expected)");
  }
  for (const char* key : {"loss", "inputs", "expected"})
    if (!j.contains(key)) throw CaseError(std::string("case.json has no '") + key + "'");

  const std::string loss = text(j["loss"], "'loss'");
  if (loss == "nkd") p.loss = LossKind::kNkd;
  else if (loss == "uskd") p.loss = LossKind::kUskd;
  else if (loss == "kd") p.loss = LossKind::kKd;
  else if (loss == "dkd") p.loss = LossKind::kDkd;
  else throw CaseError("unknown loss '" + detail::shown(loss) + "' (nkd, uskd, kd or dkd)");

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
    throw CaseError("unknown dtype '" + detail::shown(dtype) + "' (float32, float16 or bfloat16)");
  }

  if (j.contains("options")) detail::parse_options(p, j["options"]);

  if (j.contains("tolerance")) {
    const json& t = j["tolerance"];
    if (!t.is_object()) throw CaseError("'tolerance' must be an object");
    for (auto it = t.begin(); it != t.end(); ++it) {
      if (it.key() == "loss_rtol") e.loss_rtol = detail::number(it.value(), "tolerance.loss_rtol");
      else if (it.key() == "grad_rtol") e.grad_rtol = detail::number(it.value(), "tolerance.grad_rtol");
      else throw CaseError("unknown tolerance '" + detail::shown(it.key()) + "' (loss_rtol, grad_rtol)");
    }
  }

  // ---- inputs
  const json& in = j["inputs"];
  if (!in.is_object()) throw CaseError("'inputs' must be an object");
  const char* other_key = p.has_weak() ? "weak" : "teacher";
  for (auto it = in.begin(); it != in.end(); ++it)
    if (it.key() != "student" && it.key() != other_key && it.key() != "labels")
      throw CaseError("unexpected input '" + detail::shown(it.key()) + "' for " + loss_name(p.loss));
  if (!in.contains("student")) throw CaseError("inputs.student is missing");
  if (!in.contains(other_key)) throw CaseError(std::string("inputs.") + other_key + " is missing");

  p.student = detail::logits(detail::load_array(dir, in, "student", "inputs", bytes),
                             "inputs.student", p.dtype, p.n, p.c);
  p.other = detail::logits(detail::load_array(dir, in, other_key, "inputs", bytes),
                           std::string("inputs.") + other_key, p.dtype, p.other_rows, p.other_cols);

  if (in.contains("labels")) {
    const npy::Array a = detail::load_array(dir, in, "labels", "inputs", bytes);
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

  // Every buffer the checker makes holds N, C or N * C values; an (N, 0) array holds no bytes
  // whatever N says. A real case has at least one byte per row and per class.
  if (static_cast<uint64_t>(p.n) > bytes || static_cast<uint64_t>(p.c) > bytes ||
      static_cast<uint64_t>(p.other_rows) > bytes || static_cast<uint64_t>(p.other_cols) > bytes)
    throw CaseError("the shape (" + std::to_string(p.n) + ", " + std::to_string(p.c) +
                    ") is larger than the case's " + std::to_string(bytes) + " bytes of files");

  // ---- expected
  const json& ex = j["expected"];
  if (!ex.is_object()) throw CaseError("'expected' must be an object");
  if (ex.contains("error")) {
    e.error = text(ex["error"], "expected.error");
    if (e.error.empty()) throw CaseError("expected.error is empty");
    for (auto it = ex.begin(); it != ex.end(); ++it)
      if (it.key() != "error")
        throw CaseError("expected.error comes with an unexpected '" + detail::shown(it.key()) + "'");
    return cs;
  }
  for (auto it = ex.begin(); it != ex.end(); ++it)
    if (it.key() != "loss" && it.key() != "grad_student" &&
        !(p.has_weak() && it.key() == "grad_weak"))
      throw CaseError("unexpected expected." + detail::shown(it.key()) + " for " + loss_name(p.loss));
  // A result is the loss and every gradient: a case that leaves one out checks less than it says.
  if (!ex.contains("loss")) throw CaseError("expected.loss is missing");
  if (!ex.contains("grad_student")) throw CaseError("expected.grad_student is missing");
  if (p.has_weak() && !ex.contains("grad_weak")) throw CaseError("expected.grad_weak is missing");
  const bool none = p.common().reduction == fusedkd::Reduction::kNone;
  e.loss = detail::expected_array(detail::load_array(dir, ex, "loss", "expected", bytes), "expected.loss",
                                  p.loss_count(),
                                  none ? "[N] = " + std::to_string(p.n) : std::string("1"));
  const std::string nc = "[N, C] = " + std::to_string(p.n * p.c);
  if (ex.contains("grad_student")) {
    e.has_grad_student = true;
    e.grad_student = detail::expected_array(detail::load_array(dir, ex, "grad_student", "expected", bytes),
                                            "expected.grad_student", p.n * p.c, nc);
  }
  if (ex.contains("grad_weak")) {
    e.has_grad_weak = true;
    e.grad_weak = detail::expected_array(detail::load_array(dir, ex, "grad_weak", "expected", bytes),
                                         "expected.grad_weak", p.n * p.c, nc);
  }
  return cs;
}

}  // namespace fusedkd_check
