// generate_cases.cpp — writes the project's conformance cases (shared/conformance/FORMAT.md).
//
//   fusedkd_conformance_generator CASES_DIR [SELFTEST_DIR]
//
// Every case is built from a fixed seed: float32 inputs rounded to the case's dtype (so they are
// exactly representable there), then the expected loss and gradients from the float64 LibTorch
// reference (tests/reference/) on exactly those inputs. The library is not used here. Error
// cases carry no expected values: only the status name the call must be refused with.
//
// SELFTEST_DIR gets a few deliberately wrong cases (a perturbed expected value, a truncated
// .npy, an unknown option, a missing error) that fusedkd-check must report as FAIL.
//
// The outputs are checked into the repository; regenerate with `cmake --build B --target
// fusedkd_generate_cases` after changing this file (needs LibTorch).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "npy.hpp"  // tools/fusedkd-check
#include "reference/reference.hpp"

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using torch::Tensor;

namespace {

enum class Labels {
  kHard64,     // int64 [N]
  kHard32,     // int32 [N] (the API's other index type)
  kNone,       // no labels input (kd only)
  kSoftMixup,  // lam * onehot(a) + (1 - lam) * onehot(b), lam in (0.5, 1)
  kSoftTie,    // rows of 0.5 / 0.5 (ties: the lower index wins) and one-hot rows
  kSoftSmooth, // label-smoothed mixup: every entry positive
};

enum class OptionStyle {
  kFull,     // every option written out
  kPartial,  // only the options that differ from the defaults
  kOmitted,  // no "options" object at all (all defaults)
};

struct Spec {
  std::string name;
  std::string loss;  // nkd, uskd, kd, dkd
  std::string dtype = "float32";
  int64_t n = 8, c = 10;
  Labels labels = Labels::kHard64;
  fusedkd::NkdOptions nkd;
  fusedkd::UskdOptions uskd;
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;
  OptionStyle style = OptionStyle::kFull;
  int64_t ignored = 0;      // rows whose label is set to ignore_index
  double scale = 2.0;       // std of the random logits
  double offset = 0.0;      // added to every logit of a row (times a random factor in [1, 2))
  std::string error;        // expected error name; then `bad_label` is written into row 0
  int64_t bad_label = 0;
  std::string bad_option;   // an option to write with an invalid value (error cases)
};

const fusedkd::CommonOptions& common(const Spec& s) {
  if (s.loss == "nkd") return s.nkd;
  if (s.loss == "uskd") return s.uskd;
  if (s.loss == "kd") return s.kd;
  return s.dkd;
}

// ---- case.json ---------------------------------------------------------------------------------

/// Adds `key: value` when the style asks for every option or the value differs from the default.
template <typename V>
void put(ojson& o, OptionStyle style, const char* key, const V& value, const V& fallback) {
  if (style == OptionStyle::kFull || !(value == fallback)) o[key] = value;
}

const char* reduction_name(fusedkd::Reduction r) {
  switch (r) {
    case fusedkd::Reduction::kMean: return "mean";
    case fusedkd::Reduction::kSum: return "sum";
    case fusedkd::Reduction::kNone: return "none";
  }
  return "?";
}

ojson options_json(const Spec& s) {
  ojson o = ojson::object();
  const OptionStyle st = s.style;
  if (s.loss == "nkd") {
    const fusedkd::NkdOptions d;
    put(o, st, "temperature", s.nkd.temperature, d.temperature);
    put(o, st, "gamma", s.nkd.gamma, d.gamma);
    // The paper's variants (tests/conformance/README.md): written only when not the default, so
    // the cases of the released loss read as before.
    put(o, OptionStyle::kPartial, "target", s.nkd.target, d.target);
    const char* forms[] = {"normalized", "plain", "none"};
    put(o, OptionStyle::kPartial, "non_target", std::string(forms[static_cast<int>(s.nkd.non_target)]),
        std::string("normalized"));
    put(o, OptionStyle::kPartial, "t2", s.nkd.t2, d.t2);
  } else if (s.loss == "uskd") {
    const fusedkd::UskdOptions d;
    put(o, st, "alpha", s.uskd.alpha, d.alpha);
    put(o, st, "beta", s.uskd.beta, d.beta);
    put(o, st, "mu", s.uskd.mu, d.mu);
    put(o, st, "smoothing", s.uskd.smoothing, d.smoothing);
    const char* ranks[] = {"reference", "paper", "weak", "final", "combination"};
    put(o, st, "rank", std::string(ranks[static_cast<int>(s.uskd.rank)]), std::string("reference"));
    const char* softs[] = {"mean_shift", "softmax", "sqrt_min", "max_norm", "mean_norm"};
    put(o, OptionStyle::kPartial, "target", s.uskd.target, d.target);
    put(o, OptionStyle::kPartial, "non_target", s.uskd.non_target, d.non_target);
    put(o, OptionStyle::kPartial, "square", s.uskd.square, d.square);
    put(o, OptionStyle::kPartial, "soft_target",
        std::string(softs[static_cast<int>(s.uskd.soft_target)]), std::string("mean_shift"));
    put(o, OptionStyle::kPartial, "t2", s.uskd.t2, d.t2);
  } else if (s.loss == "kd") {
    const fusedkd::KdOptions d;
    put(o, st, "temperature", s.kd.temperature, d.temperature);
    put(o, st, "weight", s.kd.weight, d.weight);
  } else {
    const fusedkd::DkdOptions d;
    put(o, st, "temperature", s.dkd.temperature, d.temperature);
    put(o, st, "alpha", s.dkd.alpha, d.alpha);
    put(o, st, "beta", s.dkd.beta, d.beta);
  }
  const fusedkd::CommonOptions& c = common(s);
  const fusedkd::CommonOptions d;
  put(o, st, "ce_weight", c.ce_weight, d.ce_weight);
  put(o, st, "reduction", std::string(reduction_name(c.reduction)), std::string("mean"));
  put(o, st, "ignore_index", c.ignore_index, d.ignore_index);
  put(o, st, "grad_scale", c.grad_scale, d.grad_scale);
  return o;
}

// ---- tensors -----------------------------------------------------------------------------------

torch::Dtype storage_type(const std::string& dtype) {
  if (dtype == "float16") return torch::kFloat16;
  if (dtype == "bfloat16") return torch::kBFloat16;
  return torch::kFloat32;
}

/// float32 values exactly representable in `dtype` (LibTorch rounds to nearest even).
Tensor representable(const Tensor& x, const std::string& dtype) {
  return x.to(torch::kFloat32).to(storage_type(dtype)).to(torch::kFloat32).contiguous();
}

void save_f32(const fs::path& p, const Tensor& t) {
  const Tensor x = t.to(torch::kFloat32).contiguous();
  npy::save(p.string(), x.data_ptr<float>(), x.sizes().vec());
}

void save_f64(const fs::path& p, const Tensor& t) {
  const Tensor x = t.to(torch::kFloat64).contiguous();
  npy::save(p.string(), x.data_ptr<double>(), x.sizes().vec());
}

void save_labels(const fs::path& p, const Tensor& t, Labels kind) {
  if (kind == Labels::kHard32) {
    const Tensor x = t.to(torch::kInt32).contiguous();
    npy::save(p.string(), x.data_ptr<int32_t>(), x.sizes().vec());
  } else if (kind == Labels::kHard64) {
    const Tensor x = t.to(torch::kInt64).contiguous();
    npy::save(p.string(), x.data_ptr<int64_t>(), x.sizes().vec());
  } else {
    save_f32(p, t);
  }
}

bool is_soft(Labels l) {
  return l == Labels::kSoftMixup || l == Labels::kSoftTie || l == Labels::kSoftSmooth;
}

struct Inputs {
  Tensor student, other, labels;  // labels: int64 [N], float32 [N, C] or undefined
  Tensor target;                  // int64 [N]: the class the logits favour
};

Inputs make_inputs(const Spec& s) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t n = s.n, c = s.c;
  Inputs in;
  Tensor t1 = torch::randint(0, c, {n}, torch::kInt64);
  Tensor t2 = (t1 + torch::randint(1, std::max<int64_t>(c, 2), {n}, torch::kInt64)) % c;
  in.target = t1;
  const Tensor hot = torch::one_hot(t1, c).to(torch::kFloat64);

  // Logits: noise plus a bump at the target; the student leans on the teacher.
  const Tensor offset = s.offset * (1 + torch::rand({n, 1}, f64));
  const Tensor teacher = s.scale * torch::randn({n, c}, f64) + 4.0 * hot + offset;
  const Tensor student = s.scale * torch::randn({n, c}, f64) + 0.4 * (teacher - offset) + 1.5 * hot + offset;
  const Tensor weak = s.scale * torch::randn({n, c}, f64) + 1.0 * hot + offset;
  in.student = representable(student, s.dtype);
  in.other = representable(s.loss == "uskd" ? weak : teacher, s.dtype);

  if (s.labels == Labels::kNone) return in;
  if (!is_soft(s.labels)) {
    Tensor l = t1.clone();
    if (s.ignored > 0) {
      const Tensor rows = torch::randperm(n, torch::kInt64).slice(0, 0, std::min(s.ignored, n));
      l.index_fill_(0, rows, common(s).ignore_index);
    }
    if (s.error == "label_out_of_range" && n > 0) l[n / 2] = s.bad_label;
    in.labels = l;
    return in;
  }
  const Tensor hot2 = torch::one_hot(t2, c).to(torch::kFloat64);
  Tensor y;
  if (s.labels == Labels::kSoftTie) {
    // Even rows: 0.5 / 0.5 ties; odd rows: one-hot (V2 = 0 for USKD).
    const Tensor even = (torch::arange(n, f64).fmod(2) == 0).to(torch::kFloat64).reshape({n, 1});
    y = even * (0.5 * hot + 0.5 * hot2) + (1 - even) * hot;
  } else {
    const Tensor lam = 0.5 + 0.45 * torch::rand({n, 1}, f64);
    y = lam * hot + (1 - lam) * hot2;
    if (s.labels == Labels::kSoftSmooth) y = 0.9 * y + 0.1 / static_cast<double>(c);
  }
  if (s.error == "empty_soft_label_row" && n > 0) y[1].zero_();  // an empty soft-label row
  in.labels = y.to(torch::kFloat32);  // the label values the case stores (and the library reads)
  return in;
}

/// Smallest gap between consecutive USKD rank keys among each row's top 64, relative to the
/// keys' magnitude: such a near-tie could be ordered differently by a float32 library (its keys
/// carry relative errors of about 1e-7). Exact ties (equal inputs) are fine: both sides break
/// them by the lower class index.
double uskd_min_rank_gap(const Spec& s, const Inputs& in) {
  const Tensor keys = ref::uskd_rank_keys(in.student, in.other, in.labels, s.uskd);
  double worst = 1.0;
  for (int64_t i = 0; i < keys.size(0); ++i) {
    const Tensor row = keys[i];
    if (row.abs().max().item<double>() == 0) continue;  // an ignored row
    const Tensor sorted = std::get<0>(torch::sort(row, /*stable=*/true, 0, /*descending=*/true));
    const int64_t k = std::min<int64_t>(64, s.c);
    for (int64_t r = 0; r + 1 < k; ++r) {
      const double a = sorted[r].item<double>(), b = sorted[r + 1].item<double>();
      if (a == b) continue;
      worst = std::min(worst, (a - b) / std::max(std::fabs(a), std::fabs(b)));
    }
  }
  return worst;
}

ref::Result reference(const Spec& s, const Inputs& in) {
  // Integer labels go to the reference as int64 whatever the stored type.
  const Tensor labels = in.labels;
  if (s.loss == "nkd") return ref::nkd(in.student, in.other, labels, s.nkd);
  if (s.loss == "uskd") return ref::uskd(in.student, in.other, labels, s.uskd);
  if (s.loss == "kd") return ref::kd(in.student, in.other, labels, s.kd);
  return ref::dkd(in.student, in.other, labels, s.dkd);
}

/// Writes case `s` into `root/s.name`. Returns the folder.
fs::path write_case(const fs::path& root, const Spec& s, uint64_t seed) {
  Inputs in;
  for (int attempt = 0;; ++attempt) {
    torch::manual_seed(seed + 1000003ull * static_cast<uint64_t>(attempt));
    in = make_inputs(s);
    if (s.loss != "uskd" || !s.error.empty() || s.n == 0) break;
    const double gap = uskd_min_rank_gap(s, in);
    if (gap > 1e-5) break;
    if (attempt == 50) {
      std::fprintf(stderr, "%s: no draw without near-tied rank keys (gap %.1e)\n", s.name.c_str(), gap);
      std::exit(1);
    }
  }

  const fs::path dir = root / s.name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const char* other = s.loss == "uskd" ? "weak" : "teacher";

  ojson j;
  j["loss"] = s.loss;
  j["dtype"] = s.dtype;
  if (s.style != OptionStyle::kOmitted) {
    ojson o = options_json(s);
    if (!s.bad_option.empty()) o[s.bad_option] = 0.0;
    j["options"] = o;
  }
  j["inputs"]["student"] = "student.npy";
  j["inputs"][other] = std::string(other) + ".npy";
  save_f32(dir / "student.npy", in.student);
  save_f32(dir / (std::string(other) + ".npy"), in.other);
  if (in.labels.defined()) {
    j["inputs"]["labels"] = "labels.npy";
    save_labels(dir / "labels.npy", in.labels, s.labels);
  }

  if (!s.error.empty()) {
    j["expected"]["error"] = s.error;
  } else {
    const ref::Result r = reference(s, in);
    j["expected"]["loss"] = "loss.npy";
    j["expected"]["grad_student"] = "grad_student.npy";
    save_f64(dir / "loss.npy", r.loss);
    save_f64(dir / "grad_student.npy", r.grad_student);
    if (s.loss == "uskd") {
      j["expected"]["grad_weak"] = "grad_weak.npy";
      save_f64(dir / "grad_weak.npy", r.grad_weak);
    }
  }
  std::ofstream(dir / "case.json") << j.dump(2) << "\n";
  return dir;
}

// ---- the cases ---------------------------------------------------------------------------------

using fusedkd::Reduction;

std::vector<Spec> project_cases() {
  std::vector<Spec> v;
  const auto add = [&](const std::string& name, const std::string& loss, int64_t n, int64_t c,
                       const std::function<void(Spec&)>& f = nullptr) {
    Spec s;
    s.name = name;
    s.loss = loss;
    s.n = n;
    s.c = c;
    if (f) f(s);
    v.push_back(s);
  };

  // NKD
  add("nkd_f32_basic", "nkd", 16, 10);
  add("nkd_f32_cifar_preset", "nkd", 8, 100, [](Spec& s) { s.nkd = fusedkd::NkdOptions::cifar100(); });
  add("nkd_f32_sum_ce_gradscale", "nkd", 8, 37, [](Spec& s) {
    s.nkd.reduction = Reduction::kSum;
    s.nkd.ce_weight = 1.0;
    s.nkd.grad_scale = 0.5;
    s.nkd.gamma = 2.0;
  });
  add("nkd_f32_none_ignored", "nkd", 8, 1001, [](Spec& s) {
    s.nkd.reduction = Reduction::kNone;
    s.ignored = 3;
    s.nkd.temperature = 1.5;
  });
  add("nkd_f32_soft_mixup", "nkd", 6, 100, [](Spec& s) {
    s.labels = Labels::kSoftMixup;
    s.nkd.temperature = 2.0;
  });
  add("nkd_f32_soft_ties", "nkd", 6, 20, [](Spec& s) { s.labels = Labels::kSoftTie; });
  add("nkd_f16_ce", "nkd", 4, 1000, [](Spec& s) {
    s.dtype = "float16";
    s.nkd.ce_weight = 0.5;
  });
  add("nkd_bf16_none", "nkd", 6, 50, [](Spec& s) {
    s.dtype = "bfloat16";
    s.nkd.reduction = Reduction::kNone;
    s.ignored = 1;
  });
  add("nkd_f32_c2", "nkd", 7, 2);
  add("nkd_f32_vocab50257", "nkd", 2, 50257, [](Spec& s) { s.scale = 3.0; });
  // Llama-3's vocabulary: a float32 loss needs a careful sum over 128k classes.
  add("nkd_f32_vocab128256", "nkd", 1, 128256, [](Spec& s) { s.scale = 3.0; });
  add("nkd_f32_empty_batch", "nkd", 0, 10);
  add("nkd_f32_large_logits", "nkd", 6, 300, [](Spec& s) {
    s.scale = 30.0;
    s.offset = 1000.0;
  });
  add("nkd_f32_all_ignored", "nkd", 4, 10, [](Spec& s) { s.ignored = 4; });
  add("nkd_f32_options_omitted", "nkd", 5, 16, [](Spec& s) { s.style = OptionStyle::kOmitted; });
  add("nkd_f32_ignore_index_in_range", "nkd", 8, 300, [](Spec& s) {
    s.nkd.ignore_index = 255;  // a valid class index used as the ignore marker
    s.ignored = 2;
    s.style = OptionStyle::kPartial;
  });
  add("nkd_f32_int32_labels", "nkd", 8, 33, [](Spec& s) {
    s.labels = Labels::kHard32;
    s.ignored = 2;
  });
  add("nkd_err_label_eq_c", "nkd", 4, 10, [](Spec& s) {
    s.error = "label_out_of_range";
    s.bad_label = 10;
  });
  add("nkd_err_temperature_zero", "nkd", 4, 10, [](Spec& s) {
    s.error = "invalid_option";
    s.bad_option = "temperature";
  });

  // USKD
  add("uskd_f32_basic", "uskd", 16, 10);
  add("uskd_f32_cifar_preset", "uskd", 8, 100, [](Spec& s) { s.uskd = fusedkd::UskdOptions::cifar100(); });
  add("uskd_f32_paper_rank", "uskd", 8, 50, [](Spec& s) { s.uskd.rank = fusedkd::UskdRank::kPaper; });
  add("uskd_f32_sum_ce_smoothing", "uskd", 6, 40, [](Spec& s) {
    s.uskd.reduction = Reduction::kSum;
    s.uskd.ce_weight = 1.0;
    s.uskd.grad_scale = 2.0;
    s.uskd.smoothing = 0.2;
    s.uskd.alpha = 0.5;
    s.uskd.beta = 0.3;
  });
  add("uskd_f32_none_ignored", "uskd", 8, 64, [](Spec& s) {
    s.uskd.reduction = Reduction::kNone;
    s.ignored = 3;
  });
  add("uskd_f32_mean_ignored", "uskd", 8, 64, [](Spec& s) { s.ignored = 2; });
  add("uskd_f32_soft_mixup", "uskd", 6, 100, [](Spec& s) {
    s.labels = Labels::kSoftMixup;
    s.uskd = fusedkd::UskdOptions::cifar100();
  });
  add("uskd_f32_soft_ties_onehot", "uskd", 6, 12, [](Spec& s) { s.labels = Labels::kSoftTie; });
  add("uskd_f32_soft_smooth_paper", "uskd", 5, 30, [](Spec& s) {
    s.labels = Labels::kSoftSmooth;
    s.uskd.rank = fusedkd::UskdRank::kPaper;
  });
  add("uskd_f16", "uskd", 4, 1000, [](Spec& s) { s.dtype = "float16"; });
  add("uskd_bf16_paper_ce", "uskd", 6, 64, [](Spec& s) {
    s.dtype = "bfloat16";
    s.uskd.rank = fusedkd::UskdRank::kPaper;
    s.uskd.ce_weight = 0.5;
  });
  add("uskd_f32_c2", "uskd", 6, 2);
  add("uskd_f32_c3_soft", "uskd", 6, 3, [](Spec& s) { s.labels = Labels::kSoftMixup; });
  add("uskd_f32_vocab50257", "uskd", 2, 50257);
  add("uskd_f32_empty_batch", "uskd", 0, 10);
  add("uskd_f32_all_ignored", "uskd", 4, 10, [](Spec& s) { s.ignored = 4; });
  add("uskd_f32_smoothing0_mu1", "uskd", 6, 25, [](Spec& s) {
    s.uskd.smoothing = 0.0;
    s.uskd.mu = 1.0;
    s.style = OptionStyle::kPartial;
  });
  add("uskd_f32_large_logits", "uskd", 4, 200, [](Spec& s) {
    s.scale = 20.0;
    s.offset = 500.0;
  });
  add("uskd_err_label_minus1", "uskd", 4, 10, [](Spec& s) {
    s.error = "label_out_of_range";
    s.bad_label = -1;
  });
  add("uskd_err_soft_c2", "uskd", 4, 2, [](Spec& s) {
    s.labels = Labels::kSoftMixup;
    s.error = "too_few_classes";
  });

  // KD
  add("kd_f32_basic", "kd", 16, 100);
  add("kd_f32_no_labels", "kd", 8, 50, [](Spec& s) {
    s.labels = Labels::kNone;
    s.kd.temperature = 2.0;
    s.kd.weight = 0.5;
  });
  add("kd_f32_ce_sum_t1", "kd", 4, 1000, [](Spec& s) {
    s.kd.temperature = 1.0;
    s.kd.ce_weight = 1.0;
    s.kd.reduction = Reduction::kSum;
  });
  add("kd_f16_none_ignored", "kd", 8, 128, [](Spec& s) {
    s.dtype = "float16";
    s.kd.reduction = Reduction::kNone;
    s.ignored = 2;
    s.kd.grad_scale = 4.0;
  });
  add("kd_bf16_soft_ce", "kd", 6, 100, [](Spec& s) {
    s.dtype = "bfloat16";
    s.labels = Labels::kSoftSmooth;
    s.kd.ce_weight = 0.3;
  });
  add("kd_f32_vocab32000", "kd", 4, 32000, [](Spec& s) { s.kd.ce_weight = 0.1; });
  add("kd_f32_all_ignored_sum", "kd", 3, 10, [](Spec& s) {
    s.ignored = 3;
    s.kd.reduction = Reduction::kSum;
  });
  add("kd_f32_c2", "kd", 5, 2, [](Spec& s) { s.style = OptionStyle::kOmitted; });
  add("kd_err_int32_label_gt_c", "kd", 4, 10, [](Spec& s) {
    s.labels = Labels::kHard32;
    s.error = "label_out_of_range";
    s.bad_label = 13;
  });
  add("nkd_err_empty_soft_row", "nkd", 4, 10, [](Spec& s) {
    s.labels = Labels::kSoftMixup;
    s.error = "empty_soft_label_row";
  });

  // DKD
  add("dkd_f32_basic", "dkd", 16, 100);
  add("dkd_f32_options_sum_ce", "dkd", 8, 50, [](Spec& s) {
    s.dkd.temperature = 1.0;
    s.dkd.alpha = 0.5;
    s.dkd.beta = 2.0;
    s.dkd.ce_weight = 1.0;
    s.dkd.reduction = Reduction::kSum;
  });
  add("dkd_f32_none_ignored", "dkd", 8, 37, [](Spec& s) {
    s.dkd.reduction = Reduction::kNone;
    s.dkd.grad_scale = 0.25;
    s.ignored = 3;
  });
  add("dkd_f32_soft_mixup", "dkd", 6, 100, [](Spec& s) { s.labels = Labels::kSoftMixup; });
  add("dkd_f16", "dkd", 4, 1000, [](Spec& s) { s.dtype = "float16"; });
  add("dkd_bf16_t2", "dkd", 6, 37, [](Spec& s) {
    s.dtype = "bfloat16";
    s.dkd.temperature = 2.0;
    s.style = OptionStyle::kPartial;
  });
  add("dkd_f32_c2", "dkd", 6, 2);
  add("dkd_f32_vocab50257", "dkd", 2, 50257);
  add("dkd_f32_int32_labels_ignored", "dkd", 8, 20, [](Spec& s) {
    s.labels = Labels::kHard32;
    s.ignored = 2;
  });
  add("dkd_f32_all_ignored", "dkd", 4, 10, [](Spec& s) { s.ignored = 4; });
  add("dkd_err_int32_label_eq_c", "dkd", 4, 20, [](Spec& s) {
    s.labels = Labels::kHard32;
    s.error = "label_out_of_range";
    s.bad_label = 20;
  });
  // Appended last, so that the cases above keep their seeds.
  // The paper's NKD variants (Tables 5, 14).
  using NT = fusedkd::NkdNonTarget;
  add("nkd_var_target_only", "nkd", 8, 50, [](Spec& s) { s.nkd.non_target = NT::kNone; });
  add("nkd_var_plain_non_target", "nkd", 8, 50, [](Spec& s) { s.nkd.non_target = NT::kPlain; });
  add("nkd_var_plain_t3_soft", "nkd", 6, 100, [](Spec& s) {
    s.labels = Labels::kSoftMixup;
    s.nkd = fusedkd::NkdOptions::cifar100();
    s.nkd.non_target = NT::kPlain;
  });
  add("nkd_var_t2_only", "nkd", 8, 50, [](Spec& s) {
    s.nkd.target = false;
    s.nkd.t2 = true;
  });
  add("nkd_var_t1_t2_t2temp_f16", "nkd", 4, 1000, [](Spec& s) {
    s.dtype = "float16";
    s.nkd.temperature = 2.0;
    s.nkd.t2 = true;
    s.nkd.ce_weight = 0.5;
  });
  add("nkd_var_t2_bf16_none", "nkd", 6, 64, [](Spec& s) {
    s.dtype = "bfloat16";
    s.nkd.t2 = true;
    s.nkd.reduction = Reduction::kNone;
    s.ignored = 1;
  });

  // The paper's USKD variants (Tables 6, 8, 9, 12, 15).
  using ST = fusedkd::UskdSoftTarget;
  add("uskd_var_weak_rank_no_square", "uskd", 8, 40, [](Spec& s) {
    s.uskd.rank = fusedkd::UskdRank::kWeak;
    s.uskd.square = false;
  });
  add("uskd_var_final_rank_softmax", "uskd", 8, 40, [](Spec& s) {
    s.uskd.rank = fusedkd::UskdRank::kFinal;
    s.uskd.soft_target = ST::kSoftmax;
    s.uskd.square = false;
  });
  add("uskd_var_combination_sqrt_min", "uskd", 8, 40, [](Spec& s) {
    s.uskd.rank = fusedkd::UskdRank::kCombination;
    s.uskd.soft_target = ST::kSqrtMin;
    s.uskd.square = false;
  });
  add("uskd_var_max_norm_soft", "uskd", 6, 30, [](Spec& s) {
    s.labels = Labels::kSoftMixup;
    s.uskd.soft_target = ST::kMaxNorm;
    s.uskd.square = false;
  });
  add("uskd_var_mean_norm_t2", "uskd", 8, 50, [](Spec& s) {
    s.uskd.soft_target = ST::kMeanNorm;
    s.uskd.t2 = true;
    s.ignored = 2;
  });
  add("uskd_var_t2_only_soft", "uskd", 6, 30, [](Spec& s) {
    s.labels = Labels::kSoftSmooth;
    s.uskd.target = false;
    s.uskd.t2 = true;
    s.uskd.rank = fusedkd::UskdRank::kPaper;
  });
  add("uskd_var_target_only_bf16", "uskd", 6, 64, [](Spec& s) {
    s.dtype = "bfloat16";
    s.uskd.non_target = false;
  });
  add("uskd_var_non_target_only_f16", "uskd", 4, 1000, [](Spec& s) {
    s.dtype = "float16";
    s.uskd.target = false;
  });
  return v;
}

// ---- the checker's self-test: cases that must FAIL ---------------------------------------------

/// Multiplies the largest-magnitude element of a float64 .npy file by `factor`.
void perturb(const fs::path& file, double factor) {
  const npy::Array a = npy::load(file.string());
  std::vector<double> v = a.to_double();
  const auto mag = [](double x, double y) { return std::fabs(x) < std::fabs(y); };
  *std::max_element(v.begin(), v.end(), mag) *= factor;
  npy::save(file.string(), v, a.shape);
}

void write_selftest(const fs::path& root) {
  Spec s;
  s.loss = "nkd";
  s.n = 4;
  s.c = 10;
  s.style = OptionStyle::kPartial;

  s.name = "wrong_loss";  // expected loss off by 1e-3 (relative): above float32's 1e-4
  perturb(write_case(root, s, 7) / "loss.npy", 1.001);
  s.name = "wrong_grad";  // the largest gradient element off by 0.1%: above float32's 1e-4
  perturb(write_case(root, s, 7) / "grad_student.npy", 1.001);

  s.name = "truncated_npy";
  {
    const fs::path f = write_case(root, s, 7) / "teacher.npy";
    fs::resize_file(f, fs::file_size(f) - 4);
  }
  s.name = "unknown_option";
  {
    const fs::path dir = write_case(root, s, 7);
    std::ifstream in(dir / "case.json");
    ojson j = ojson::parse(in);
    in.close();
    j["options"]["lambda"] = 1.0;  // not an NKD option name (it is "temperature")
    std::ofstream(dir / "case.json") << j.dump(2) << "\n";
  }
  s.name = "missing_error";  // must be refused, but the labels are fine
  {
    const fs::path dir = write_case(root, s, 7);
    std::ifstream in(dir / "case.json");
    ojson j = ojson::parse(in);
    in.close();
    j["expected"] = {{"error", "label_out_of_range"}};
    std::ofstream(dir / "case.json") << j.dump(2) << "\n";
    fs::remove(dir / "loss.npy");
    fs::remove(dir / "grad_student.npy");
  }
  Spec u;
  u.loss = "uskd";
  u.n = 4;
  u.c = 10;
  u.name = "wrong_grad_weak";  // USKD: only the weak gradient is off (by 0.1%)
  perturb(write_case(root, u, 11) / "grad_weak.npy", 1.001);
}

/// Removes the case folders directly under `root` (those that hold a case.json).
void clear_cases(const fs::path& root) {
  if (!fs::is_directory(root)) return;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::exists(e.path() / "case.json")) fs::remove_all(e.path());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s CASES_DIR [SELFTEST_DIR]\n", argv[0]);
    return 2;
  }
  torch::set_num_threads(1);
  const fs::path root = argv[1];
  clear_cases(root);
  fs::create_directories(root);
  const std::vector<Spec> specs = project_cases();
  uint64_t seed = 20240601;
  for (const Spec& s : specs) {
    write_case(root, s, seed);
    seed += 7919;
    std::printf("wrote %s\n", (root / s.name).string().c_str());
  }
  if (argc == 3) {
    const fs::path st = argv[2];
    clear_cases(st);
    fs::create_directories(st);
    write_selftest(st);
    std::printf("wrote the self-test cases in %s\n", st.string().c_str());
  }
  std::printf("%zu cases\n", specs.size());
  return 0;
}
