// fusedkd-train — trains a teacher MLP on Fashion-MNIST, then small students with plain
// cross-entropy, KD, DKD, NKD and USKD (every loss through fusedkd's CPU API), over several
// seeds, and reports test accuracy as a table, CSV and JSON (scripts/plot_trainer.py draws the
// charts from the CSV).
#include <cblas.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ablation.hpp"
#include "data.hpp"
#include "mlp.hpp"
#include "progress.hpp"
#include "train.hpp"

// Declared by OpenBLAS's cblas.h; repeated here in case another BLAS's cblas.h was found first.
extern "C" void openblas_set_num_threads(int num_threads);

namespace fs = std::filesystem;
using namespace trainer;

namespace {

constexpr const char* kProg = "fusedkd-train";

// ---- options ---------------------------------------------------------------------------------

struct Options {
  int epochs = 20;
  int teacher_epochs = 10;
  int seeds = 5;
  int64_t train_size = 5000;
  int64_t teacher_train_size = 60000;
  int64_t test_size = 10000;
  int64_t batch_size = 128;
  double lr = 0.02;
  double clip = 2.0;
  std::vector<int64_t> student_hidden = {64, 32};
  std::vector<int64_t> teacher_hidden = {1024, 1024};
  std::vector<Method> methods = {Method::kCE, Method::kKD, Method::kDKD, Method::kNKD,
                                 Method::kUSKD};
  std::string out = "trainer-out";
  std::string data_dir = kDefaultDataDir;
  std::vector<std::string> ablation;  ///< paper table ids (--ablation)
  bool cuda = false;                  ///< --device cuda
  std::string teacher_cache;          ///< --teacher-cache FILE
  bool quick = false;
  bool help = false;
};

const char* kUsage =
    "Usage: fusedkd-train [options]\n"
    "\n"
    "Trains a teacher MLP on Fashion-MNIST, then small student MLPs with five losses, all "
    "computed\n"
    "by fusedkd: CE (cross-entropy only), KD, DKD, NKD (with the teacher) and USKD (no teacher),\n"
    "each over several seeds. Prints a table of test accuracy (mean and std over the seeds) and\n"
    "writes results.csv, summary.csv and results.json to the output folder (scripts/plot_trainer.py\n"
    "draws accuracy.png from them).\n"
    "\n"
    "Options:\n"
    "  --epochs N           student epochs (default 20)\n"
    "  --teacher-epochs N   teacher epochs (default 10)\n"
    "  --seeds N            seeds per method, 1..N (default 5)\n"
    "  --train-size N       the students' training images: the first N of the 60000\n"
    "                       (default 5000)\n"
    "  --teacher-train-size N  the teacher's training images: the first N (default 60000)\n"
    "  --test-size N        test images, the first N of the 10000 (default 10000)\n"
    "  --student-hidden L   student hidden layer sizes, comma-separated (default 64,32:\n"
    "                       784-64-32-10; USKD's weak head reads the first)\n"
    "  --teacher-hidden L   teacher hidden layer sizes (default 1024,1024: 784-1024-1024-10)\n"
    "  --methods L          comma-separated subset of ce,kd,dkd,nkd,uskd (default all)\n"
    "  --batch-size N       minibatch size (default 128)\n"
    "  --lr X               peak learning rate of SGD (momentum 0.9, cosine decay; default 0.02)\n"
    "  --clip X             clip the gradient's global norm to X, 0 = off (default 2)\n"
    "  --out DIR            output folder (default ./trainer-out)\n"
    "  --data-dir DIR       folder of the *-idx?-ubyte.gz files\n"
    "                       (default /usr/share/datasets/fashion-mnist, Debian package\n"
    "                       dataset-fashion-mnist)\n"
    "  --ablation T         instead of the five methods, rerun the paper's ablation table T\n"
    "                       (5, 6, 8, 9, 12, 14, 15; a comma-separated list, or all): its\n"
    "                       variants over the seeds, written as ablation-table<T>.md/.csv and\n"
    "                       ablation-table<T>-epochs.csv (test accuracy per row, seed, epoch)\n"
    "  --device D           cpu (default) or cuda: cuBLAS layers and the fused CUDA losses\n"
    "                       (builds configured with nvcc and cuBLAS)\n"
    "  --teacher-cache F    keep the trained teacher (history, logits on the students' images)\n"
    "                       in file F and reuse it when every setting that shapes it matches\n"
    "  --quick              smoke test: 1 seed, 1 epoch, 1000 train / 1000 test images\n"
    "                       (options given explicitly still win)\n"
    "  -h, --help           this text\n"
    "\n"
    "Exit status: 0 success, 1 data, file or training error, 2 bad command line.\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// train_run on the device the options ask for.
RunResult run_one(const Options& opt, Method method, const std::vector<int64_t>& sizes,
                  const TrainConfig& cfg, const RunInputs& in, uint64_t seed, uint64_t stream,
                  const std::string& label, bool tty, Mlp* net_out = nullptr);

std::string num_str(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

int64_t parse_int(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE) {
    throw UsageError(opt + " expects an integer, got '" + v + "'");
  }
  if (x < lo || x > hi) {
    throw UsageError(opt + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                     ", got " + v);
  }
  return x;
}

double parse_double(const std::string& opt, const std::string& v, double lo, double hi,
                    bool allow_lo = false) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x)) {
    throw UsageError(opt + " expects a number, got '" + v + "'");
  }
  if (x < lo || (x == lo && !allow_lo) || x > hi) {
    throw UsageError(opt + " must be " + (allow_lo ? ">= " : "> ") + num_str(lo) +
                     " and <= " + num_str(hi) + ", got " + v);
  }
  return x;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  if (!s.empty() && s.back() == ',') out.push_back("");
  return out;
}

std::vector<int64_t> parse_sizes(const std::string& opt, const std::string& v) {
  std::vector<int64_t> out;
  for (const std::string& item : split_commas(v)) out.push_back(parse_int(opt, item, 1, 8192));
  if (out.empty()) throw UsageError(opt + " expects at least one layer size");
  if (out.size() > 8) throw UsageError(opt + " accepts at most 8 hidden layers");
  return out;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool set_epochs = false, set_teacher_epochs = false, set_seeds = false, set_train = false,
       set_test = false, set_teacher_train = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_value = true;
      }
    }
    auto flag = [&]() {
      if (has_value) throw UsageError(arg + " takes no value");
    };
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      flag();
      o.help = true;
    } else if (arg == "--quick") {
      flag();
      o.quick = true;
    } else if (arg == "--epochs") {
      o.epochs = int(parse_int(arg, next(), 1, 1000));
      set_epochs = true;
    } else if (arg == "--teacher-epochs") {
      o.teacher_epochs = int(parse_int(arg, next(), 1, 1000));
      set_teacher_epochs = true;
    } else if (arg == "--seeds") {
      o.seeds = int(parse_int(arg, next(), 1, 100));
      set_seeds = true;
    } else if (arg == "--train-size") {
      o.train_size = parse_int(arg, next(), 1, 60000);
      set_train = true;
    } else if (arg == "--teacher-train-size") {
      o.teacher_train_size = parse_int(arg, next(), 1, 60000);
      set_teacher_train = true;
    } else if (arg == "--test-size") {
      o.test_size = parse_int(arg, next(), 1, 10000);
      set_test = true;
    } else if (arg == "--batch-size") {
      o.batch_size = parse_int(arg, next(), 1, 4096);
    } else if (arg == "--clip") {
      o.clip = parse_double(arg, next(), 0.0, 1e6, /*allow_lo=*/true);
    } else if (arg == "--lr") {
      o.lr = parse_double(arg, next(), 0.0, 10.0);
    } else if (arg == "--student-hidden") {
      o.student_hidden = parse_sizes(arg, next());
    } else if (arg == "--teacher-hidden") {
      o.teacher_hidden = parse_sizes(arg, next());
    } else if (arg == "--methods") {
      o.methods.clear();
      for (const std::string& item : split_commas(next())) {
        Method m;
        if (!parse_method(item, &m)) {
          throw UsageError("--methods: unknown method '" + item +
                           "' (choose from ce,kd,dkd,nkd,uskd)");
        }
        if (std::find(o.methods.begin(), o.methods.end(), m) == o.methods.end())
          o.methods.push_back(m);
      }
      if (o.methods.empty()) throw UsageError("--methods expects at least one method");
    } else if (arg == "--teacher-cache") {
      o.teacher_cache = next();
      if (o.teacher_cache.empty()) throw UsageError("--teacher-cache expects a file");
    } else if (arg == "--device") {
      const std::string d = next();
      if (d != "cpu" && d != "cuda") throw UsageError("--device expects cpu or cuda, got '" + d + "'");
      o.cuda = d == "cuda";
      if (o.cuda && !cuda_available()) {
        throw UsageError("--device cuda: this fusedkd-train was built without CUDA (nvcc, cuBLAS)");
      }
    } else if (arg == "--ablation") {
      for (const std::string& item : split_commas(next())) {
        std::vector<std::string> ids = item == "all" ? ablation_ids() : std::vector<std::string>{item};
        for (const std::string& id : ids) {
          AblationTable t;
          if (!ablation_table(id, &t)) {
            throw UsageError("--ablation: unknown table '" + item + "' (5, 6, 8, 9, 12, 14, 15 or all)");
          }
          if (std::find(o.ablation.begin(), o.ablation.end(), id) == o.ablation.end())
            o.ablation.push_back(id);
        }
      }
      if (o.ablation.empty()) throw UsageError("--ablation expects a table");
    } else if (arg == "--out") {
      o.out = next();
      if (o.out.empty()) throw UsageError("--out expects a folder");
    } else if (arg == "--data-dir") {
      o.data_dir = next();
      if (o.data_dir.empty()) throw UsageError("--data-dir expects a folder");
    } else if (arg.rfind("-", 0) == 0) {
      throw UsageError("unknown option '" + arg + "'");
    } else {
      throw UsageError("unexpected argument '" + arg + "'");
    }
  }
  if (o.quick) {
    if (!set_epochs) o.epochs = 1;
    if (!set_teacher_epochs) o.teacher_epochs = 1;
    if (!set_seeds) o.seeds = 1;
    if (!set_train) o.train_size = 1000;
    if (!set_teacher_train) o.teacher_train_size = 1000;
    if (!set_test) o.test_size = 1000;
  }
  return o;
}

// ---- reporting -------------------------------------------------------------------------------

struct MethodSummary {
  std::string name, setting;
  std::vector<RunResult> runs;
  double mean = 0, stdev = 0;  // of the final test accuracy, in percent; stdev with n - 1
};

void mean_std(const std::vector<double>& v, double* mean, double* stdev) {
  double s = 0;
  for (double x : v) s += x;
  *mean = v.empty() ? 0 : s / double(v.size());
  double q = 0;
  for (double x : v) q += (x - *mean) * (x - *mean);
  *stdev = v.size() > 1 ? std::sqrt(q / double(v.size() - 1)) : 0.0;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

std::string num(double v, int decimals = 4) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

/// The per-seed differences a - b of the final test accuracy (percent points), paired by seed.
std::vector<double> paired_diffs(const std::vector<RunResult>& a, const std::vector<RunResult>& b) {
  std::vector<double> d;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    d.push_back(100 * (a[i].final_test_acc() - b[i].final_test_acc()));
  return d;
}

std::string signed_num(double v, int decimals = 2) { return (v >= 0 ? "+" : "") + num(v, decimals); }

/// "d1 d2 ... (mean +/- std)" of the paired differences of m against ce.
std::string paired_str(const MethodSummary& m, const MethodSummary& ce) {
  const std::vector<double> d = paired_diffs(m.runs, ce.runs);
  double mean = 0, sd = 0;
  mean_std(d, &mean, &sd);
  std::string o;
  for (size_t i = 0; i < d.size(); ++i) o += (i ? " " : "") + signed_num(d[i]);
  return o + " (" + signed_num(mean) + " +/- " + num(sd, 2) + ")";
}

std::string sizes_str(const std::vector<int64_t>& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) o += (i ? "-" : "") + std::to_string(s[i]);
  return o;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
}

std::string history_csv(const RunResult& teacher, const std::vector<MethodSummary>& ms) {
  std::ostringstream o;
  o << "method,seed,epoch,train_loss,train_acc,test_acc,seconds\n";
  auto rows = [&](const RunResult& r) {
    for (size_t e = 0; e < r.epochs.size(); ++e) {
      const EpochStats& s = r.epochs[e];
      o << r.method << ',' << r.seed << ',' << e + 1 << ',' << num(s.train_loss, 6) << ','
        << num(100 * s.train_acc, 2) << ',' << num(100 * s.test_acc, 2) << ',' << num(s.seconds, 3)
        << '\n';
    }
  };
  rows(teacher);
  for (const MethodSummary& m : ms)
    for (const RunResult& r : m.runs) rows(r);
  return o.str();
}

std::string summary_csv(const RunResult& teacher, const std::vector<MethodSummary>& ms) {
  std::ostringstream o;
  o << "method,seeds,mean_test_acc,std_test_acc,delta_vs_ce,per_seed_test_acc,"
       "per_seed_diff_vs_ce,std_diff_vs_ce\n";
  o << "teacher,1," << num(100 * teacher.final_test_acc(), 2) << ",,,"
    << num(100 * teacher.final_test_acc(), 2) << ",,\n";
  const MethodSummary* ce = nullptr;
  for (const MethodSummary& m : ms)
    if (m.name == "CE") ce = &m;
  for (const MethodSummary& m : ms) {
    o << m.name << ',' << m.runs.size() << ',' << num(m.mean, 2) << ',' << num(m.stdev, 2) << ','
      << (ce ? num(m.mean - ce->mean, 2) : "") << ',';
    for (size_t i = 0; i < m.runs.size(); ++i)
      o << (i ? " " : "") << num(100 * m.runs[i].final_test_acc(), 2);
    o << ',';
    if (ce && &m != ce) {
      const std::vector<double> d = paired_diffs(m.runs, ce->runs);
      double mean = 0, sd = 0;
      mean_std(d, &mean, &sd);
      for (size_t i = 0; i < d.size(); ++i) o << (i ? " " : "") << num(d[i], 2);
      o << ',' << num(sd, 2);
    } else {
      o << ',';
    }
    o << '\n';
  }
  return o.str();
}

std::string results_json(const Options& opt, const std::vector<int64_t>& teacher_sizes,
                         const std::vector<int64_t>& student_sizes, const RunResult& teacher,
                         const std::vector<MethodSummary>& ms, double seconds, float mean,
                         float stdev) {
  std::ostringstream o;
  auto curve = [&](const RunResult& r) {
    std::string s = "[";
    for (size_t e = 0; e < r.epochs.size(); ++e)
      s += (e ? ", " : "") + num(100 * r.epochs[e].test_acc, 2);
    return s + "]";
  };
  o << "{\n";
  o << "  \"dataset\": {\"name\": \"Fashion-MNIST\", \"data_dir\": " << json_str(opt.data_dir)
    << ", \"train_size\": " << opt.train_size
    << ", \"teacher_train_size\": " << opt.teacher_train_size
    << ", \"test_size\": " << opt.test_size << ", \"pixel_mean\": " << num(mean, 6)
    << ", \"pixel_std\": " << num(stdev, 6) << "},\n";
  o << "  \"settings\": {\"epochs\": " << opt.epochs
    << ", \"teacher_epochs\": " << opt.teacher_epochs << ", \"seeds\": " << opt.seeds
    << ", \"batch_size\": " << opt.batch_size << ", \"lr\": " << num(opt.lr, 6)
    << ", \"momentum\": 0.9, \"weight_decay\": 0.0005"
    << ", \"clip_grad_norm\": " << num(opt.clip, 3)
    << ", \"lr_schedule\": \"cosine\", \"blas_threads\": 1, \"device\": "
    << (opt.cuda ? "\"cuda\"" : "\"cpu\"") << ", \"quick\": "
    << (opt.quick ? "true" : "false")
    << ",\n    \"teacher\": " << json_str(sizes_str(teacher_sizes))
    << ", \"student\": " << json_str(sizes_str(student_sizes)) << "},\n";
  o << "  \"teacher\": {\"test_acc\": " << num(100 * teacher.final_test_acc(), 2)
    << ", \"curve\": " << curve(teacher)
    << ", \"seconds\": " << num(teacher.epochs.back().seconds, 3) << "},\n";
  o << "  \"methods\": [\n";
  for (size_t k = 0; k < ms.size(); ++k) {
    const MethodSummary& m = ms[k];
    o << "    {\"name\": " << json_str(m.name) << ", \"loss\": " << json_str(m.setting)
      << ", \"mean_test_acc\": " << num(m.mean, 2) << ", \"std_test_acc\": " << num(m.stdev, 2)
      << ",\n     \"runs\": [";
    for (size_t i = 0; i < m.runs.size(); ++i) {
      const RunResult& r = m.runs[i];
      o << (i ? ",\n              " : "") << "{\"seed\": " << r.seed
        << ", \"test_acc\": " << num(100 * r.final_test_acc(), 2)
        << ", \"seconds\": " << num(r.epochs.back().seconds, 3) << ", \"curve\": " << curve(r)
        << "}";
    }
    o << "]}" << (k + 1 < ms.size() ? "," : "") << "\n";
  }
  o << "  ],\n";
  o << "  \"total_seconds\": " << num(seconds, 2) << "\n}\n";
  return o.str();
}

void print_table(const RunResult& teacher, const std::vector<int64_t>& teacher_sizes,
                 const std::vector<MethodSummary>& ms) {
  const MethodSummary* ce = nullptr;
  for (const MethodSummary& m : ms)
    if (m.name == "CE") ce = &m;
  std::printf("\n%-8s  %-22s  %-8s  %-36s  %s\n", "method", "test accuracy (%)", "vs CE",
              "per seed", "paired vs CE per seed (mean +/- std)");
  std::printf("%-8s  %-22s  %-8s  %-36s  %s\n", "--------", "----------------------", "--------",
              "--------", "--------");
  std::printf("%-8s  %-22s  %-8s  %s\n", "teacher", num(100 * teacher.final_test_acc(), 2).c_str(),
              "", (sizes_str(teacher_sizes) + ", 1 run").c_str());
  for (const MethodSummary& m : ms) {
    const std::string acc = num(m.mean, 2) + " +/- " + num(m.stdev, 2);
    std::string delta;
    if (ce && &m != ce) delta = (m.mean >= ce->mean ? "+" : "") + num(m.mean - ce->mean, 2);
    std::string seeds;
    for (size_t i = 0; i < m.runs.size(); ++i)
      seeds += (i ? " " : "") + num(100 * m.runs[i].final_test_acc(), 2);
    std::printf("%-8s  %-22s  %-8s  %-36s  %s\n", m.name.c_str(), acc.c_str(), delta.c_str(),
                seeds.c_str(), ce && &m != ce ? paired_str(m, *ce).c_str() : "");
  }
}

// ---- ablations (--ablation) -----------------------------------------------------------------

/// The numbers of a paper cell "70.18 / 76.87" (empty for "-").
std::vector<double> paper_values(const std::string& cell) {
  std::vector<double> v;
  std::stringstream ss(cell);
  std::string item;
  while (std::getline(ss, item, '/')) {
    char* end = nullptr;
    const double x = std::strtod(item.c_str(), &end);
    if (end != item.c_str()) v.push_back(x);
  }
  return v;
}

/// The paper's difference to its baseline, cell by cell ("+0.97 / +0.03").
std::string paper_delta(const std::string& cell, const std::string& base) {
  const std::vector<double> a = paper_values(cell), b = paper_values(base);
  if (a.empty() || a.size() != b.size()) return "";
  std::string o;
  for (size_t i = 0; i < a.size(); ++i) o += (i ? " / " : "") + signed_num(a[i] - b[i]);
  return o;
}

/// Runs every row of one table over the seeds and writes ablation-table<id>.md/.csv and
/// ablation-table<id>-epochs.csv (the per-epoch test accuracy that scripts/plot_trainer.py draws).
void run_ablation(const Options& opt, const AblationTable& t,
                  const std::vector<int64_t>& student_sizes, const TrainConfig& scfg,
                  const RunInputs& in, const std::vector<float>* self_logits, bool tty) {
  std::vector<std::vector<RunResult>> runs(t.rows.size());
  const int total = opt.seeds * int(t.rows.size());
  int run_no = 0;
  for (int seed = 1; seed <= opt.seeds; ++seed) {
    for (size_t k = 0; k < t.rows.size(); ++k) {
      const AblationRow& row = t.rows[k];
      TrainConfig cfg = scfg;
      cfg.nkd = row.nkd;
      cfg.uskd = row.uskd;
      RunInputs rin = in;
      if (row.self_teacher) rin.teacher_logits = self_logits;
      char label[96];
      std::snprintf(label, sizeof label, "table %s row %zu seed %d (%d/%d)", t.id.c_str(), k, seed,
                    ++run_no, total);
      runs[k].push_back(run_one(opt, row.method, student_sizes, cfg, rin, uint64_t(seed), 0, label, tty));
    }
  }

  std::ostringstream md, csv, epochs;
  md << "Table " << t.id << ": " << t.title << ". Paper: ImageNet top-1 (%), " << t.paper_model
     << ". Ours: Fashion-MNIST test accuracy (%) of the student " << sizes_str(student_sizes)
     << ", " << opt.epochs << " epochs, " << in.train->n << " training images, " << opt.seeds
     << " seeds; mean +/- std (n - 1) over the seeds, and the paired difference to the baseline"
        " (the same seed) as mean +/- std. \"beyond spread\": |mean difference| > its std.\n\n";
  md << "| row | paper | paper vs baseline | ours | ours vs baseline (paired) | beyond spread | per seed |\n";
  md << "| --- | --- | --- | --- | --- | --- | --- |\n";
  csv << "table,row,method,paper,mean,std,diff_mean,diff_std,beyond_spread,per_seed\n";
  epochs << "table,row,seed,epoch,test_acc\n";
  for (size_t k = 0; k < t.rows.size(); ++k) {
    const AblationRow& row = t.rows[k];
    std::vector<double> finals;
    for (const RunResult& r : runs[k]) finals.push_back(100 * r.final_test_acc());
    double mean = 0, sd = 0;
    mean_std(finals, &mean, &sd);
    std::string per_seed;
    for (size_t i = 0; i < finals.size(); ++i) per_seed += (i ? " " : "") + num(finals[i], 2);
    std::string diff_cell, beyond;
    double dm = 0, ds = 0;
    if (k > 0) {
      mean_std(paired_diffs(runs[k], runs[0]), &dm, &ds);
      diff_cell = signed_num(dm) + " +/- " + num(ds, 2);
      beyond = runs[k].size() < 2 ? "-" : std::fabs(dm) > ds ? "yes" : "no";
    }
    md << "| " << row.name << " | " << row.paper << " | "
       << (k > 0 ? paper_delta(row.paper, t.rows[0].paper) : "") << " | " << num(mean, 2)
       << " +/- " << num(sd, 2) << " | " << diff_cell << " | " << beyond << " | " << per_seed
       << " |\n";
    csv << t.id << ',' << json_str(row.name) << ',' << method_name(row.method) << ','
        << json_str(row.paper) << ',' << num(mean, 2) << ',' << num(sd, 2) << ','
        << (k > 0 ? num(dm, 2) : "") << ',' << (k > 0 ? num(ds, 2) : "") << ',' << beyond << ','
        << per_seed << '\n';
    for (const RunResult& r : runs[k])
      for (size_t e = 0; e < r.epochs.size(); ++e)
        epochs << t.id << ',' << json_str(row.name) << ',' << r.seed << ',' << e + 1 << ','
               << num(100 * r.epochs[e].test_acc, 2) << '\n';
  }
  if (!t.note.empty()) md << "\n" << t.note << "\n";
  const fs::path out(opt.out);
  const std::string stem = "ablation-table" + t.id;
  write_file(out / (stem + ".md"), md.str());
  write_file(out / (stem + ".csv"), csv.str());
  write_file(out / (stem + "-epochs.csv"), epochs.str());
  std::printf("\n%s", md.str().c_str());
  std::printf("wrote %s/%s.{md,csv} and %s-epochs.csv\n", opt.out.c_str(), stem.c_str(),
              stem.c_str());
  std::fflush(stdout);
}

void run_ablations(const Options& opt, const std::vector<int64_t>& student_sizes,
                   const TrainConfig& scfg, const RunInputs& in, const RunResult* teacher,
                   const std::vector<int64_t>& teacher_sizes, bool tty) {
  if (teacher) {
    std::printf("teacher %s: %s%% test accuracy\n", sizes_str(teacher_sizes).c_str(),
                num(100 * teacher->final_test_acc(), 2).c_str());
  }
  // Table 8's trained model of the student's own architecture: a CE student, seed 0.
  std::vector<float> self_logits;
  for (const std::string& id : opt.ablation) {
    AblationTable t;
    ablation_table(id, &t);
    for (const AblationRow& r : t.rows) {
      if (r.self_teacher && self_logits.empty()) {
        Mlp net;
        run_one(opt, Method::kCE, student_sizes, scfg, in, /*seed=*/0, /*stream=*/2, "CE model for T_t",
                  tty, &net);
        self_logits = predict_logits(net, in.train->x.data(), in.train->n);
      }
    }
    run_ablation(opt, t, student_sizes, scfg, in, &self_logits, tty);
  }
}

/// Writes the teacher's history and logits under `key` (see --teacher-cache).
void save_teacher(const std::string& path, const std::string& key, const RunResult& t,
                  const std::vector<float>& logits) {
  std::ofstream f(path, std::ios::binary);
  f << key << "\n" << t.epochs.size() << "\n";
  for (const EpochStats& e : t.epochs)
    f << num(e.train_loss, 9) << ' ' << num(e.train_acc, 9) << ' ' << num(e.test_acc, 9) << ' '
      << num(e.seconds, 3) << "\n";
  f << logits.size() << "\n";
  f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
  if (!f) throw std::runtime_error("cannot write the teacher cache " + path);
}

/// Reads what save_teacher wrote; false (and nothing read) when the file is missing or its key
/// or size differs.
bool load_teacher(const std::string& path, const std::string& key, int64_t count, RunResult* t,
                  std::vector<float>* logits) {
  std::ifstream f(path, std::ios::binary);
  std::string line;
  if (!f || !std::getline(f, line) || line != key) return false;
  size_t epochs = 0, n = 0;
  if (!(f >> epochs) || epochs > 100000) return false;
  RunResult r;
  r.method = "CE";
  for (size_t e = 0; e < epochs; ++e) {
    EpochStats s;
    if (!(f >> s.train_loss >> s.train_acc >> s.test_acc >> s.seconds)) return false;
    r.epochs.push_back(s);
  }
  if (!(f >> n) || int64_t(n) != count || f.get() != '\n') return false;
  std::vector<float> v(n);
  if (!f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(float)))) return false;
  *t = r;
  *logits = std::move(v);
  return true;
}

RunResult run_one(const Options& opt, Method method, const std::vector<int64_t>& sizes,
                  const TrainConfig& cfg, const RunInputs& in, uint64_t seed, uint64_t stream,
                  const std::string& label, bool tty, Mlp* net_out) {
  return opt.cuda ? train_run_cuda(method, sizes, cfg, in, seed, stream, label, tty, net_out)
                  : train_run(method, sizes, cfg, in, seed, stream, label, tty, net_out);
}

int run(const Options& opt) {
  const auto t_start = std::chrono::steady_clock::now();
  // One BLAS thread: reproducible float sums, and the run fits one core of a shared machine.
  openblas_set_num_threads(1);
#if defined(_OPENMP)
  // fusedkd's CPU backend runs rows in parallel with OpenMP; a [128, 10] batch is far too small
  // for threads to pay off (and on a busy 2-core machine they only wait for each other).
  omp_set_num_threads(1);
#endif
  const bool tty = Progress::stdout_is_tty();

  // Output folder first, so that a bad --out fails before minutes of training.
  std::error_code ec;
  fs::create_directories(opt.out, ec);
  if (ec || !fs::is_directory(opt.out)) {
    std::fprintf(stderr, "%s: cannot create output folder %s: %s\n", kProg, opt.out.c_str(),
                 ec ? ec.message().c_str() : "not a folder");
    return 1;
  }

  // The teacher's training images and the students' are both the first N of the training file.
  Dataset teacher_train, train, test;
  try {
    teacher_train =
        load_fashion_mnist(opt.data_dir, "train", std::max(opt.train_size, opt.teacher_train_size));
    test = load_fashion_mnist(opt.data_dir, "t10k", opt.test_size);
  } catch (const DataError& e) {
    std::fprintf(stderr, "%s: cannot load Fashion-MNIST: %s\n", kProg, e.what());
    if (e.missing) {
      std::fprintf(
          stderr,
          "  Install it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or point\n"
          "  --data-dir at a folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
          "  t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.\n");
    } else {
      std::fprintf(stderr,
                   "  The file is damaged: download it again (Debian: apt-get install --reinstall "
                   "dataset-fashion-mnist).\n");
    }
    return 1;
  }
  // Pixels are standardized with the mean and std of the loaded training images.
  float mean = 0, stdev = 1;
  pixel_stats(teacher_train, &mean, &stdev);
  normalize(teacher_train, mean, stdev);
  normalize(test, mean, stdev);
  train = head(teacher_train, opt.train_size);
  if (teacher_train.n > opt.teacher_train_size)
    teacher_train = head(teacher_train, opt.teacher_train_size);

  std::vector<int64_t> teacher_sizes = {train.dim};
  teacher_sizes.insert(teacher_sizes.end(), opt.teacher_hidden.begin(), opt.teacher_hidden.end());
  teacher_sizes.push_back(kNumClasses);
  std::vector<int64_t> student_sizes = {train.dim};
  student_sizes.insert(student_sizes.end(), opt.student_hidden.begin(), opt.student_hidden.end());
  student_sizes.push_back(kNumClasses);

  std::printf(
      "Fashion-MNIST from %s\nteacher trains on %lld images, students on %lld; %lld test "
      "images\n",
      opt.data_dir.c_str(), (long long)teacher_train.n, (long long)train.n, (long long)test.n);
  std::printf(
      "teacher %s, %d epochs; students %s, %d epochs, seeds 1..%d\n"
      "batch %lld, SGD lr %g momentum 0.9 weight decay 5e-4, cosine decay, clip %g\n",
      sizes_str(teacher_sizes).c_str(), opt.teacher_epochs, sizes_str(student_sizes).c_str(),
      opt.epochs, opt.seeds, (long long)opt.batch_size, opt.lr, opt.clip);
  if (opt.cuda) std::printf("device: CUDA (cuBLAS layers, fusedkd::cuda losses)\n");
  std::fflush(stdout);

  TrainConfig tcfg;
  tcfg.epochs = opt.teacher_epochs;
  tcfg.batch_size = opt.batch_size;
  tcfg.sgd.lr = float(opt.lr);
  tcfg.sgd.clip = float(opt.clip);
  TrainConfig scfg = tcfg;
  scfg.epochs = opt.epochs;

  // 1. The teacher: cross-entropy (through fusedkd too), seed 0. It is trained even when only
  //    USKD or CE is asked for, because its accuracy belongs in the table; an ablation run
  //    trains it only when one of its tables needs it (NKD's).
  bool want_teacher = opt.ablation.empty();
  for (const std::string& id : opt.ablation) {
    AblationTable t;
    if (ablation_table(id, &t) && needs_teacher(t)) want_teacher = true;
  }
  RunInputs tin;
  tin.train = &teacher_train;
  tin.test = &test;
  Mlp teacher_net;
  RunResult teacher;
  RunInputs in;
  in.train = &train;
  in.test = &test;
  std::vector<float> teacher_logits;
  // --teacher-cache: the teacher's history and its logits on the students' images, keyed by every
  // setting that shapes them, so that several runs (the default table and the ablations) train
  // it once.
  const std::string cache_key = "fusedkd-train teacher v1 " + sizes_str(teacher_sizes) + " e" +
                                std::to_string(opt.teacher_epochs) + " n" +
                                std::to_string(opt.teacher_train_size) + " s" +
                                std::to_string(opt.train_size) + " t" + std::to_string(opt.test_size) +
                                " b" + std::to_string(opt.batch_size) + " lr" + num(opt.lr, 6) +
                                " clip" + num(opt.clip, 6) + (opt.cuda ? " cuda" : " cpu");
  if (want_teacher && !opt.teacher_cache.empty() &&
      load_teacher(opt.teacher_cache, cache_key, train.n * kNumClasses, &teacher, &teacher_logits)) {
    std::printf("teacher: loaded from %s\n", opt.teacher_cache.c_str());
  } else if (want_teacher) {
    teacher = run_one(opt, Method::kCE, teacher_sizes, tcfg, tin, /*seed=*/0, /*stream=*/1,
                      "teacher", tty, &teacher_net);
    // Its logits on the training images are fixed from now on: compute them once.
    teacher_logits = predict_logits(teacher_net, train.x.data(), train.n);
    if (!opt.teacher_cache.empty()) save_teacher(opt.teacher_cache, cache_key, teacher, teacher_logits);
  }
  RunResult teacher_named = teacher;
  teacher_named.method = "teacher";
  if (want_teacher) in.teacher_logits = &teacher_logits;
  if (!opt.ablation.empty()) {
    run_ablations(opt, student_sizes, scfg, in, want_teacher ? &teacher_named : nullptr,
                  teacher_sizes, tty);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    std::printf("total time %s (%.1f s)\n", format_duration(seconds).c_str(), seconds);
    return 0;
  }

  // 2. The students: every method, every seed. The same seed gives every method the same
  //    initial weights and the same batch order.
  std::vector<MethodSummary> ms;
  for (Method m : opt.methods) ms.push_back({method_name(m), method_setting(m), {}, 0, 0});
  const int total_runs = opt.seeds * int(opt.methods.size());
  int run_no = 0;
  for (int seed = 1; seed <= opt.seeds; ++seed) {
    for (size_t k = 0; k < opt.methods.size(); ++k) {
      char label[64];
      ++run_no;
      std::snprintf(label, sizeof label, "%-4s seed %d (%d/%d)", method_name(opt.methods[k]), seed,
                    run_no, total_runs);
      ms[k].runs.push_back(run_one(opt, opt.methods[k], student_sizes, scfg, in, uint64_t(seed),
                                     /*stream=*/0, label, tty));
    }
  }
  for (MethodSummary& m : ms) {
    std::vector<double> finals;
    for (const RunResult& r : m.runs) finals.push_back(100 * r.final_test_acc());
    mean_std(finals, &m.mean, &m.stdev);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  // 3. Report.
  print_table(teacher_named, teacher_sizes, ms);
  std::printf("\nstudents %s, %d epochs, %lld training images, %d seed(s); std over seeds (n-1)\n",
              sizes_str(student_sizes).c_str(), opt.epochs, (long long)train.n, opt.seeds);

  const fs::path out(opt.out);
  write_file(out / "results.csv", history_csv(teacher_named, ms));
  write_file(out / "summary.csv", summary_csv(teacher_named, ms));
  write_file(out / "results.json", results_json(opt, teacher_sizes, student_sizes, teacher_named,
                                                ms, seconds, mean, stdev));

  std::printf("wrote %s/{results.csv, summary.csv, results.json}\n", opt.out.c_str());
  std::printf("total time %s (%.1f s)\n", format_duration(seconds).c_str(), seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  try {
    opt = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\nTry '%s --help' for the options.\n", kProg, e.what(), kProg);
    return 2;
  }
  if (opt.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProg, e.what());
    return 1;
  }
}
