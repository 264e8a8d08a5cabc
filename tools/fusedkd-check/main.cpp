// fusedkd-check — runs conformance cases (shared/conformance/FORMAT.md) through fusedkd.
//
//   fusedkd-check [--device cpu|cuda] [--filter TEXT] PATH...
//
// PATH: a case folder (one holding case.json) or a folder holding case folders at any depth.
// Prints one line per case, `PASS name ...` or `FAIL name reason`, then `N passed, N failed`.
// Exit status: 0 when every case passed, 1 when one failed (or none was found), 2 on a usage
// error or when the device is not available.
//
// A device backend is one function `Status run_<device>(const Problem&, Result&)` (case.hpp):
// it runs one case's inputs through the library and writes the loss and the gradients. The CPU
// backend is below; a CUDA backend plugs in the same way (see `find_device`).

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "case.hpp"

namespace fs = std::filesystem;
using namespace fusedkd_check;

namespace {

// ---- device backends --------------------------------------------------------------------------

/// The CPU backend: fusedkd::cpu::* in float. For float16 / bfloat16 cases the inputs are
/// already values of that type; the float gradients are rounded to it, as a half-precision
/// backend would store them. The loss stays in float (the accumulation type).
fusedkd::Status run_cpu(const Problem& p, Result& r) {
  const auto student = fusedkd::matrix<const float>(p.student.data(), p.n, p.c);
  const auto other = fusedkd::matrix<const float>(p.other.data(), p.other_rows, p.other_cols);
  const auto gs = fusedkd::matrix<float>(r.grad_student.data(), p.n, p.c);
  const fusedkd::Labels labels = p.labels();
  fusedkd::Status s = fusedkd::Status::kNotSupported;
  switch (p.loss) {
    case LossKind::kNkd:
      s = fusedkd::cpu::nkd(student, other, labels, p.nkd, r.loss.data(), gs);
      break;
    case LossKind::kKd:
      s = fusedkd::cpu::kd(student, other, labels, p.kd, r.loss.data(), gs);
      break;
    case LossKind::kDkd:
      s = fusedkd::cpu::dkd(student, other, labels, p.dkd, r.loss.data(), gs);
      break;
    case LossKind::kUskd:
      s = fusedkd::cpu::uskd(student, other, labels, p.uskd, r.loss.data(), gs,
                             fusedkd::matrix<float>(r.grad_weak.data(), p.n, p.c));
      break;
  }
  if (s == fusedkd::Status::kSuccess && p.dtype != DType::kFloat32) {
    for (float& g : r.grad_student) g = round_to(p.dtype, g);
    for (float& g : r.grad_weak) g = round_to(p.dtype, g);
  }
  return s;
}

using Backend = fusedkd::Status (*)(const Problem&, Result&);

}  // namespace
#if defined(FUSEDKD_CHECK_WITH_CUDA)
// Provided by the CUDA backend's translation unit when it is built in (external linkage).
bool cuda_device_available(std::string& why);
fusedkd::Status run_cuda(const Problem& p, Result& r);
#endif
namespace {

/// The backend of `device`, or null with `why` set.
Backend find_device(const std::string& device, std::string& why) {
  if (device == "cpu") return run_cpu;
  if (device == "cuda") {
#if defined(FUSEDKD_CHECK_WITH_CUDA)
    if (!cuda_device_available(why)) return nullptr;
    return run_cuda;
#else
    why = "CUDA is not built into this fusedkd-check";
    return nullptr;
#endif
  }
  why = "unknown device '" + device + "' (cpu or cuda)";
  return nullptr;
}

// ---- comparison -------------------------------------------------------------------------------

// A quiet NaN with a payload: the outputs are filled with it before the call, so that values the
// call did not write show up (as NaN) and a refused call can be checked to have written nothing.
constexpr uint32_t kSentinelBits = 0x7fc0deadu;

bool is_sentinel(float f) { return float_bits(f) == kSentinelBits; }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// "[i, j]" of flat index k in a [rows, cols] matrix (cols 0: a vector, "[k]").
std::string where(int64_t k, int64_t cols) {
  if (cols <= 0) return "[" + std::to_string(k) + "]";
  return "[" + std::to_string(k / cols) + ", " + std::to_string(k % cols) + "]";
}

struct Measure {
  bool ok = true;
  std::string text;  // "loss 1.2e-08" or a failure description
};

/// Loss: |got - want| <= rtol * max(|want|, 1) element-wise; the error shown is the largest
/// |got - want| / max(|want|, 1).
Measure compare_loss(const std::vector<float>& got, const std::vector<double>& want, double rtol) {
  double worst = 0;
  int64_t at = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]) / std::max(std::fabs(want[i]), 1.0);
    if (!(err <= worst)) {  // also catches NaN
      worst = err;
      at = static_cast<int64_t>(i);
      if (std::isnan(err)) break;
    }
  }
  Measure m;
  m.ok = !(worst > rtol) && !std::isnan(worst);
  m.text = "loss " + fmt("%.1e", worst);
  if (!m.ok) {
    m.text += " > " + fmt("%.0e", rtol);
    if (at >= 0)
      m.text += " (" + std::string(want.size() > 1 ? "row " + std::to_string(at) + ": " : "") +
                "got " + fmt("%.9g", got[static_cast<size_t>(at)]) + ", expected " +
                fmt("%.9g", want[static_cast<size_t>(at)]) + ")";
  }
  return m;
}

/// Gradient: max |got - want| <= rtol * max |want|; the error shown is their ratio (or the
/// absolute difference when the expected gradient is all zero).
Measure compare_grad(const char* name, const std::vector<float>& got, const std::vector<double>& want,
                     int64_t cols, double rtol) {
  double scale = 0, worst = 0;
  int64_t at = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(want[i]));
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= worst)) {
      worst = d;
      at = static_cast<int64_t>(i);
      if (std::isnan(d)) break;
    }
  }
  Measure m;
  const bool nan = std::isnan(worst);
  m.ok = !nan && worst <= rtol * scale;
  const double shown = scale > 0 ? worst / scale : worst;
  m.text = std::string(name) + " " + fmt("%.1e", shown) + (scale > 0 || nan ? "" : " (abs)");
  if (!m.ok) {
    m.text += " > " + fmt("%.0e", rtol);
    if (at >= 0)
      m.text += " (at " + where(at, cols) + ": got " + fmt("%.9g", got[static_cast<size_t>(at)]) +
                ", expected " + fmt("%.9g", want[static_cast<size_t>(at)]) + ")";
  }
  return m;
}

/// Runs one case. Returns true when it passed; `line` gets the rest of its output line.
bool check_case(const fs::path& dir, Backend backend, std::string& line) {
  Case cs;
  try {
    cs = load_case(dir);
  } catch (const std::exception& e) {
    line = e.what();
    return false;
  }
  const Problem& p = cs.problem;
  const Expected& e = cs.expected;

  Result r;
  const float sentinel = bits_float(kSentinelBits);
  const size_t nc = static_cast<size_t>(std::max<int64_t>(p.n * p.c, 1));
  r.loss.assign(static_cast<size_t>(std::max<int64_t>(p.loss_count(), 1)), sentinel);
  r.grad_student.assign(nc, sentinel);
  if (p.has_weak()) r.grad_weak.assign(nc, sentinel);
  try {
    r.status = backend(p, r);
  } catch (const std::exception& ex) {
    line = std::string("the call threw: ") + ex.what();
    return false;
  }

  const auto untouched = [](const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), is_sentinel);
  };
  if (!e.error.empty()) {
    if (r.status == fusedkd::Status::kSuccess) {
      line = "expected the error " + e.error + ", the call succeeded";
      return false;
    }
    const std::string name = fusedkd::status_name(r.status);
    if (name != e.error) {
      line = "expected the error " + e.error + ", got " + name + " (" +
             fusedkd::status_string(r.status) + ")";
      return false;
    }
    if (!untouched(r.loss) || !untouched(r.grad_student) || !untouched(r.grad_weak)) {
      line = "refused with " + name + " but wrote to its outputs";
      return false;
    }
    line = "refused: " + name + " (" + fusedkd::status_string(r.status) + ")";
    return true;
  }
  if (r.status != fusedkd::Status::kSuccess) {
    line = std::string("the call failed: ") + fusedkd::status_name(r.status) + " (" +
           fusedkd::status_string(r.status) + ")";
    return false;
  }

  std::vector<Measure> ms;
  r.loss.resize(static_cast<size_t>(p.loss_count()));
  ms.push_back(compare_loss(r.loss, e.loss, e.loss_rtol));
  r.grad_student.resize(static_cast<size_t>(p.n * p.c));
  if (e.has_grad_student) ms.push_back(compare_grad("grad_student", r.grad_student, e.grad_student, p.c, e.grad_rtol));
  if (e.has_grad_weak) {
    r.grad_weak.resize(static_cast<size_t>(p.n * p.c));
    ms.push_back(compare_grad("grad_weak", r.grad_weak, e.grad_weak, p.c, e.grad_rtol));
  }
  bool ok = true;
  for (const Measure& m : ms) {
    if (!line.empty()) line += ", ";
    line += m.text;
    ok = ok && m.ok;
  }
  return ok;
}

// ---- case discovery ---------------------------------------------------------------------------

struct CaseRef {
  std::string name;  // shown in the output: the folder's path below the PATH argument
  fs::path dir;
};

/// Adds the case folders at or below `arg`. Returns false (with `why`) when `arg` is unusable.
bool collect(const std::string& arg, std::vector<CaseRef>& out, std::string& why) {
  std::error_code ec;
  fs::path root(arg);
  if (fs::is_regular_file(root, ec) && root.filename() == "case.json") root = root.parent_path();
  if (root.empty()) root = ".";
  if (!fs::is_directory(root, ec)) {
    why = fs::exists(root, ec) ? arg + " is not a folder" : "no such folder: " + arg;
    return false;
  }
  const auto case_name = [](const fs::path& dir) {
    const fs::path abs = fs::absolute(dir).lexically_normal();
    std::string n = (abs.has_filename() ? abs : abs.parent_path()).filename().string();
    return n.empty() ? dir.string() : n;
  };
  if (fs::exists(root / "case.json", ec)) {
    out.push_back({case_name(root), root});
    return true;
  }
  std::vector<CaseRef> found;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) {
    why = "cannot read " + arg + ": " + ec.message();
    return false;
  }
  for (; it != end; it.increment(ec)) {
    if (ec) {
      why = "cannot read below " + arg + ": " + ec.message();
      return false;
    }
    std::error_code ec2;
    if (!it->is_directory(ec2)) continue;
    if (fs::exists(it->path() / "case.json", ec2)) {
      found.push_back({it->path().lexically_relative(root).generic_string(), it->path()});
      it.disable_recursion_pending();  // a case folder's subfolders are its own business
    }
  }
  std::sort(found.begin(), found.end(),
            [](const CaseRef& a, const CaseRef& b) { return a.name < b.name; });
  out.insert(out.end(), found.begin(), found.end());
  return true;
}

int usage(FILE* f, int code) {
  std::fprintf(f,
               "usage: fusedkd-check [--device cpu|cuda] [--filter TEXT] PATH...\n"
               "  Runs the conformance cases in PATH (a case folder holding case.json, or a folder\n"
               "  holding case folders at any depth) through fusedkd and compares the results.\n"
               "  --device D    backend to run: cpu (default) or cuda\n"
               "  --filter TEXT run only the cases whose name contains TEXT\n"
               "Exit status: 0 all passed, 1 a case failed or none was found, 2 usage/device error.\n");
  return code;
}

}  // namespace

// FUSEDKD_CHECK_NO_MAIN: the fuzzer (tests/fuzz) includes this file for check_case.
#if !defined(FUSEDKD_CHECK_NO_MAIN)
int main(int argc, char** argv) {
  std::string device = "cpu", filter;
  std::vector<std::string> paths;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&](const char* opt, std::string& dst) {
      const std::string eq = std::string(opt) + "=";
      if (a == opt) {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "fusedkd-check: %s needs a value\n", opt);
          return false;
        }
        dst = argv[++i];
        return true;
      }
      dst = a.substr(eq.size());
      return true;
    };
    if (!options_done && (a == "-h" || a == "--help")) return usage(stdout, 0);
    if (!options_done && a == "--") {
      options_done = true;
    } else if (!options_done && (a == "--device" || a.rfind("--device=", 0) == 0)) {
      if (!value("--device", device)) return usage(stderr, 2);
    } else if (!options_done && (a == "--filter" || a.rfind("--filter=", 0) == 0)) {
      if (!value("--filter", filter)) return usage(stderr, 2);
    } else if (!options_done && a.size() > 1 && a[0] == '-') {
      std::fprintf(stderr, "fusedkd-check: unknown option %s\n", a.c_str());
      return usage(stderr, 2);
    } else {
      paths.push_back(a);
    }
  }
  if (paths.empty()) return usage(stderr, 2);

  std::string why;
  const Backend backend = find_device(device, why);
  if (!backend) {
    std::fprintf(stderr, "fusedkd-check: %s\n", why.c_str());
    return 2;
  }

  std::vector<CaseRef> cases;
  for (const std::string& path : paths) {
    if (!collect(path, cases, why)) {
      std::fprintf(stderr, "fusedkd-check: %s\n", why.c_str());
      return 2;
    }
  }

  int passed = 0, failed = 0;
  std::set<std::string> seen;
  for (const CaseRef& c : cases) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    std::error_code ec;
    const fs::path canon = fs::weakly_canonical(c.dir, ec);
    if (!seen.insert(ec ? c.dir.string() : canon.string()).second) continue;  // given twice
    std::string line;
    bool ok = false;
    try {
      ok = check_case(c.dir, backend, line);
    } catch (const std::exception& e) {  // e.g. bad_alloc on a huge case
      line = std::string("error: ") + e.what();
    }
    // Names and messages carry untrusted text: escaped (no newline can forge a line) and cut.
    std::printf("%s %s  %s\n", ok ? "PASS" : "FAIL", detail::shown(c.name, 200).c_str(),
                detail::shown(line, 1000).c_str());
    std::fflush(stdout);
    (ok ? passed : failed) += 1;
  }
  if (passed + failed == 0)
    std::fprintf(stderr, "fusedkd-check: no case found%s\n", filter.empty() ? "" : " (after --filter)");
  std::printf("%d passed, %d failed\n", passed, failed);
  return (failed == 0 && passed > 0) ? 0 : 1;
}
#endif  // FUSEDKD_CHECK_NO_MAIN
