// tests/fuzz/fuzz_api.cpp — libFuzzer target for the CPU host API (every loss, float and
// double), built with clang under ASan + UBSan (scripts/fuzz.sh).
//
// The input chooses everything a caller can: the loss and type, N, C, every stride, the labels
// (none, int32, int64, soft, an invalid kind; in range, ignore_index, out of range; soft values
// NaN, inf, huge, negative), every option (valid, at the limits, beyond them, NaN, invalid
// enums), logits (moderate, +-inf, NaN, huge), gradients absent, separate or in place, and
// shapes that claim far more memory than exists. Every buffer ends at a PROT_NONE guard page
// (and starts after one), so a read or write past it crashes even where ASan does not look.
//
// Checked on every call:
//   * a refused call wrote nothing (outputs keep a sentinel) and changed no input;
//   * a call never writes outside its outputs (row padding, the slot after the loss);
//   * a shape that cannot exist (negative, C > 2^31 - 1, rows beyond the address space) is
//     refused before anything is read;
//   * with moderate finite logits, soft labels in [0, 1] and options inside their ranges, a
//     successful call gives finite loss and gradients;
//   * in place (gradient = logits) gives bitwise the result of out of place.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "fusedkd/fusedkd.hpp"

namespace {

using fusedkd::Labels;
using fusedkd::Matrix;
using fusedkd::Reduction;
using fusedkd::Status;

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "fuzz_api: check failed at line %d: %s\n", __LINE__, #cond); \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

/// `bytes` of memory whose end touches a PROT_NONE page, with another one before it.
class Guarded {
 public:
  explicit Guarded(size_t bytes) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t body = (bytes + page_ - 1) / page_ * page_;
    total_ = body + 2 * page_;
    void* m = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(m != MAP_FAILED);
    base_ = static_cast<unsigned char*>(m);
    FUZZ_CHECK(mprotect(base_, page_, PROT_NONE) == 0);
    FUZZ_CHECK(mprotect(base_ + page_ + body, page_, PROT_NONE) == 0);
    data_ = base_ + page_ + body - bytes;  // the last byte is the last before the guard
  }
  ~Guarded() { munmap(base_, total_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  template <typename T> T* as() const { return reinterpret_cast<T*>(data_); }

 private:
  unsigned char* base_ = nullptr;
  unsigned char* data_ = nullptr;
  size_t page_ = 0, total_ = 0;
};

constexpr size_t kMaxElements = 1 << 14;  // per buffer, for a real call

template <typename T>
T sentinel() {
  return T(-7777.25);
}

/// A value to put in a logit: mostly moderate, sometimes hostile (then `moderate` is cleared).
template <typename T>
T logit(FuzzedDataProvider& in, bool& moderate) {
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: moderate = false; return -std::numeric_limits<T>::infinity();
    case 1: moderate = false; return std::numeric_limits<T>::infinity();
    case 2: moderate = false; return std::numeric_limits<T>::quiet_NaN();
    case 3: moderate = false; return -std::numeric_limits<T>::quiet_NaN();
    case 4: moderate = false; return std::numeric_limits<T>::max();
    case 5: moderate = false; return std::numeric_limits<T>::lowest();
    case 6: return std::numeric_limits<T>::denorm_min();
    case 7: return T(1e4);
    case 8: return T(-1e4);
    default: return T(in.ConsumeIntegralInRange<int>(-2000, 2000)) / T(64);
  }
}

/// A soft-label value: mostly in [0, 1], sometimes hostile.
float soft_value(FuzzedDataProvider& in, bool& moderate) {
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: moderate = false; return std::numeric_limits<float>::quiet_NaN();
    case 1: moderate = false; return std::numeric_limits<float>::infinity();
    case 2: moderate = false; return -1.0f;
    case 3: moderate = false; return 3e38f;
    case 4: return 1.0f;
    case 5: case 6: case 7: return 0.0f;
    default: return static_cast<float>(in.ConsumeIntegralInRange<int>(0, 64)) / 64.0f;
  }
}

/// An option value for computation type A: mostly moderate, sometimes at or beyond the limits.
template <typename A>
double option(FuzzedDataProvider& in, double usual, bool positive, bool& valid) {
  const double lim = fusedkd::detail::option_limit<A>();
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0: valid = false; return std::numeric_limits<double>::quiet_NaN();
    case 1: valid = false; return std::numeric_limits<double>::infinity();
    case 2: valid = false; return lim * 2;
    case 3: valid = false; return positive ? 1.0 / (lim * 2) : -lim * 2;
    case 4: return lim;
    case 5: return positive ? 1.0 / lim : -lim;
    case 6: if (positive) valid = false; return 0.0;
    case 7: if (positive) valid = false; return -1.0;
    case 8: if (sizeof(A) == sizeof(float)) valid = false; return 1e39;  // beyond float only
    default: return usual * static_cast<double>(in.ConsumeIntegralInRange<int>(1, 64)) / 16.0;
  }
}

/// A hostile dimension or stride: a value that can describe no real buffer.
int64_t hostile(FuzzedDataProvider& in) {
  static const int64_t table[] = {-1, INT64_MIN, int64_t{1} << 31, (int64_t{1} << 31) + 7,
                                  int64_t{1} << 40, int64_t{1} << 58, int64_t{1} << 59,
                                  int64_t{1} << 61, int64_t{1} << 62, INT64_MAX, INT64_MAX - 1};
  return table[in.ConsumeIntegralInRange<size_t>(0, sizeof table / sizeof table[0] - 1)];
}

/// Whether [n, c] with `stride` can describe no buffer: the call must refuse it.
bool impossible(int64_t n, int64_t c, int64_t stride, size_t size) {
  if (n < 0 || c < 0 || stride < c) return true;
  // C beyond int32 is refused; from N = 2^59 the O(N) scratch's size overflows (refused without
  // an allocation: a smaller huge N would try one, which libFuzzer's malloc limit reports).
  if (c > INT32_MAX || n >= (int64_t{1} << 59)) return true;
  if (n == 0) return false;
  const __int128 bytes = (static_cast<__int128>(n - 1) * stride + c) * static_cast<__int128>(size);
  return bytes > PTRDIFF_MAX;
}

enum class Loss { kNkd, kKd, kDkd, kUskd };

template <typename T>
struct Options {
  fusedkd::NkdOptions nkd;
  fusedkd::KdOptions kd;
  fusedkd::DkdOptions dkd;
  fusedkd::UskdOptions uskd;
};

template <typename T>
Status call(Loss loss, const Options<T>& o, Matrix<const T> z, Matrix<const T> v, Labels lab,
            fusedkd::acc_t<T>* out, Matrix<T> gz, Matrix<T> gw) {
  switch (loss) {
    case Loss::kNkd: return fusedkd::cpu::nkd(z, v, lab, o.nkd, out, gz);
    case Loss::kKd: return fusedkd::cpu::kd(z, v, lab, o.kd, out, gz);
    case Loss::kDkd: return fusedkd::cpu::dkd(z, v, lab, o.dkd, out, gz);
    case Loss::kUskd: return fusedkd::cpu::uskd(z, v, lab, o.uskd, out, gz, gw);
  }
  return Status::kNotSupported;
}

template <typename T>
void run(FuzzedDataProvider& in) {
  using A = fusedkd::acc_t<T>;
  const Loss loss = static_cast<Loss>(in.ConsumeIntegralInRange<int>(0, 3));

  // ---- options
  bool valid = true;
  fusedkd::CommonOptions common;
  const int red = in.ConsumeIntegralInRange<int>(0, 8);
  common.reduction = static_cast<Reduction>(red < 7 ? red % 3 : red);
  if (red >= 7) valid = false;
  common.ignore_index = in.ConsumeBool() ? -100 : in.ConsumeIntegralInRange<int64_t>(-3, 40);
  common.grad_scale = in.ConsumeBool() ? 1.0 : option<A>(in, 1.0, false, valid);
  common.ce_weight = in.ConsumeBool() ? 0.0 : option<A>(in, 1.0, false, valid);
  Options<T> o;
  static_cast<fusedkd::CommonOptions&>(o.nkd) = common;
  static_cast<fusedkd::CommonOptions&>(o.kd) = common;
  static_cast<fusedkd::CommonOptions&>(o.dkd) = common;
  static_cast<fusedkd::CommonOptions&>(o.uskd) = common;
  switch (loss) {
    case Loss::kNkd:
      o.nkd.temperature = option<A>(in, 1.0, true, valid);
      o.nkd.gamma = option<A>(in, 1.5, false, valid);
      break;
    case Loss::kKd:
      o.kd.temperature = option<A>(in, 4.0, true, valid);
      o.kd.weight = option<A>(in, 1.0, false, valid);
      break;
    case Loss::kDkd:
      o.dkd.temperature = option<A>(in, 4.0, true, valid);
      o.dkd.alpha = option<A>(in, 1.0, false, valid);
      o.dkd.beta = option<A>(in, 8.0, false, valid);
      break;
    case Loss::kUskd: {
      o.uskd.alpha = option<A>(in, 1.0, false, valid);
      o.uskd.beta = option<A>(in, 0.1, false, valid);
      o.uskd.mu = option<A>(in, 0.005, false, valid);
      const int eps = in.ConsumeIntegralInRange<int>(-1, 17);
      o.uskd.smoothing = eps / 16.0;
      if (eps < 0 || eps > 16) valid = false;
      const int rank = in.ConsumeIntegralInRange<int>(0, 4);
      o.uskd.rank = static_cast<fusedkd::UskdRank>(rank < 4 ? rank % 2 : 7);
      if (rank == 4) valid = false;
      break;
    }
  }

  // ---- shapes: real ones (buffers of that size) or hostile ones (must be refused)
  const bool lie = in.ConsumeIntegralInRange<int>(0, 7) == 0;
  int64_t n = in.ConsumeIntegralInRange<int64_t>(0, 6);
  int64_t c = in.ConsumeIntegralInRange<int64_t>(0, 40);
  int64_t sz = c + in.ConsumeIntegralInRange<int64_t>(0, 3);  // student stride
  int64_t so = c + in.ConsumeIntegralInRange<int64_t>(0, 3);  // other stride
  int64_t sg = c + in.ConsumeIntegralInRange<int64_t>(0, 3);  // gradient stride
  int64_t sy = in.ConsumeBool() ? 0 : c + in.ConsumeIntegralInRange<int64_t>(0, 3);  // soft
  if (lie) {
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
        n = hostile(in);
        if (n > 0 && n < (int64_t{1} << 59)) n = int64_t{1} << 59;
        break;
      case 1: c = hostile(in); sz = so = sg = c; break;
      case 2: sz = hostile(in); n = std::max<int64_t>(n, 2); break;
      case 3: sg = hostile(in); n = std::max<int64_t>(n, 2); break;
      case 4: sy = hostile(in); n = std::max<int64_t>(n, 2); break;
    }
  }
  const int label_kind = in.ConsumeIntegralInRange<int>(0, 8);  // 0 none, 1 i32, 2 i64, 3-7 soft, 8 bad
  const Labels::Kind kind = label_kind == 0   ? Labels::Kind::kNone
                            : label_kind == 1 ? Labels::Kind::kIndex32
                            : label_kind == 2 ? Labels::Kind::kIndex64
                            : label_kind < 8  ? Labels::Kind::kSoft
                                              : static_cast<Labels::Kind>(9);
  const int64_t ly = sy > 0 ? sy : c;
  const int grads = in.ConsumeIntegralInRange<int>(0, 3);  // 0 none, 1 separate, 2 in place, 3 one only
  const bool must_refuse = impossible(n, c, sz, sizeof(T)) || impossible(n, c, so, sizeof(T)) ||
                           ((grads == 1 || grads == 3) && impossible(n, c, sg, sizeof(T))) ||
                           (kind == Labels::Kind::kSoft && (sy < 0 || impossible(n, c, ly, sizeof(float))));
  if (lie && !must_refuse) return;  // a hostile value that happens to describe a real buffer
  // Buffer sizes: the real extent, or a small buffer for a shape that must be refused.
  const auto extent = [&](int64_t stride) -> size_t {
    if (must_refuse || n == 0) return 16;
    return static_cast<size_t>((n - 1) * stride + c);
  };
  if (!must_refuse && (extent(sz) > kMaxElements || extent(so) > kMaxElements ||
                       extent(sg) > kMaxElements || extent(ly) > kMaxElements))
    return;

  Guarded zbuf(extent(sz) * sizeof(T)), vbuf(extent(so) * sizeof(T));
  Guarded gzbuf(extent(sg) * sizeof(T)), gwbuf(extent(sg) * sizeof(T));
  Guarded ybuf(extent(ly) * sizeof(float));
  const size_t nlabels = must_refuse ? 16 : static_cast<size_t>(std::max<int64_t>(n, 1));
  Guarded l32buf(nlabels * sizeof(int32_t)), l64buf(nlabels * sizeof(int64_t));
  const size_t nloss = must_refuse ? 1 : static_cast<size_t>(std::max<int64_t>(n, 1));
  Guarded lossbuf(nloss * sizeof(A));

  bool moderate = valid;
  T* z = zbuf.as<T>();
  T* v = vbuf.as<T>();
  for (size_t i = 0; i < extent(sz); ++i) z[i] = logit<T>(in, moderate);
  for (size_t i = 0; i < extent(so); ++i) v[i] = logit<T>(in, moderate);
  float* y = ybuf.as<float>();
  for (size_t i = 0; i < extent(ly); ++i) y[i] = soft_value(in, moderate);
  int32_t* l32 = l32buf.as<int32_t>();
  int64_t* l64 = l64buf.as<int64_t>();
  for (size_t i = 0; i < nlabels; ++i) {
    const int pick = in.ConsumeIntegralInRange<int>(0, 9);
    const int64_t label = pick == 0   ? common.ignore_index
                          : pick == 1 ? c
                          : pick == 2 ? -1
                          : pick == 3 ? INT64_MAX
                          : c > 0     ? in.ConsumeIntegralInRange<int64_t>(0, c - 1)
                                      : 0;
    l64[i] = label;
    l32[i] = static_cast<int32_t>(label);
  }
  Labels labels;
  labels.kind = kind;
  labels.data = kind == Labels::Kind::kIndex32 ? static_cast<const void*>(l32)
                : kind == Labels::Kind::kSoft  ? static_cast<const void*>(y)
                                               : static_cast<const void*>(l64);
  labels.stride = sy;
  if (kind == Labels::Kind::kNone) labels.data = nullptr;

  // Snapshots to check that inputs stay unchanged and refused calls write nothing.
  const std::vector<T> z0(z, z + extent(sz)), v0(v, v + extent(so));
  T* gz = gzbuf.as<T>();
  T* gw = gwbuf.as<T>();
  A* lossp = lossbuf.as<A>();
  const auto fill = [&]() {
    for (size_t i = 0; i < extent(sg); ++i) gz[i] = gw[i] = sentinel<T>();
    for (size_t i = 0; i < nloss; ++i) lossp[i] = sentinel<A>();
  };
  fill();
  Matrix<T> mgz, mgw;
  if (grads == 1 || grads == 3) {
    mgz = Matrix<T>(gz, n, c, sg);
    if (loss == Loss::kUskd && grads == 1) mgw = Matrix<T>(gw, n, c, sg);
  }
  const Matrix<const T> mz(z, n, c, sz), mv(v, n, c, so);
  const Status s = call<T>(loss, o, mz, mv, labels, lossp, mgz, mgw);

  if (must_refuse && s == Status::kSuccess)
    std::fprintf(stderr, "accepted: loss %d n %lld c %lld strides %lld %lld %lld soft %lld kind %d\n",
                 static_cast<int>(loss), static_cast<long long>(n), static_cast<long long>(c),
                 static_cast<long long>(sz), static_cast<long long>(so), static_cast<long long>(sg),
                 static_cast<long long>(sy), static_cast<int>(kind));
  if (must_refuse) FUZZ_CHECK(s != Status::kSuccess);
  FUZZ_CHECK(z0.empty() || std::memcmp(z0.data(), z, z0.size() * sizeof(T)) == 0);
  FUZZ_CHECK(v0.empty() || std::memcmp(v0.data(), v, v0.size() * sizeof(T)) == 0);
  const bool none = common.reduction == Reduction::kNone;
  if (s != Status::kSuccess) {
    FUZZ_CHECK(std::strcmp(fusedkd::status_name(s), "unknown_status") != 0);
    for (size_t i = 0; i < extent(sg); ++i) {
      const T sg0 = sentinel<T>();
      FUZZ_CHECK(std::memcmp(&gz[i], &sg0, sizeof(T)) == 0 && std::memcmp(&gw[i], &sg0, sizeof(T)) == 0);
    }
    for (size_t i = 0; i < nloss; ++i) FUZZ_CHECK(lossp[i] == sentinel<A>());
    return;
  }
  FUZZ_CHECK(valid);  // every invalid option was refused
  const size_t count = none ? static_cast<size_t>(n) : 1;
  for (size_t i = count; i < nloss; ++i) FUZZ_CHECK(lossp[i] == sentinel<A>());
  // Row padding of the gradients is never written.
  const bool wrote_gz = mgz.data != nullptr && n > 0;
  for (int64_t r = 0; r < n && wrote_gz; ++r)
    for (int64_t i = c; i < sg && r * sg + i < static_cast<int64_t>(extent(sg)); ++i)
      FUZZ_CHECK(gz[r * sg + i] == sentinel<T>());
  if (moderate) {
    for (size_t i = 0; i < count; ++i) FUZZ_CHECK(std::isfinite(static_cast<double>(lossp[i])));
    for (int64_t r = 0; r < n && wrote_gz; ++r)
      for (int64_t i = 0; i < c; ++i) {
        FUZZ_CHECK(std::isfinite(static_cast<double>(gz[r * sg + i])));
        if (mgw.data != nullptr) FUZZ_CHECK(std::isfinite(static_cast<double>(gw[r * sg + i])));
      }
  }

  // In place: the gradients into copies of the logits (same strides) give the same bits.
  if (grads == 2 && mgz.data == nullptr && n > 0) {
    mgz = Matrix<T>(gz, n, c, sg);
    if (loss == Loss::kUskd) mgw = Matrix<T>(gw, n, c, sg);
    fill();
    FUZZ_CHECK(call<T>(loss, o, mz, mv, labels, lossp, mgz, mgw) == Status::kSuccess);
    const std::vector<A> loss_out(lossp, lossp + count);
    const std::vector<T> gz_out(gz, gz + extent(sg)), gw_out(gw, gw + extent(sg));
    if (sg == sz && (loss != Loss::kUskd || sg == so)) {
      Guarded zc(extent(sz) * sizeof(T)), vc(extent(so) * sizeof(T));
      std::memcpy(zc.as<T>(), z, extent(sz) * sizeof(T));
      std::memcpy(vc.as<T>(), v, extent(so) * sizeof(T));
      const Matrix<T> ip_z(zc.as<T>(), n, c, sz), ip_w(vc.as<T>(), n, c, so);
      const Matrix<const T> cz(zc.as<T>(), n, c, sz), cv(vc.as<T>(), n, c, so);
      FUZZ_CHECK(call<T>(loss, o, cz, cv, labels, lossp, ip_z,
                         loss == Loss::kUskd ? ip_w : Matrix<T>()) == Status::kSuccess);
      FUZZ_CHECK(count == 0 || std::memcmp(loss_out.data(), lossp, count * sizeof(A)) == 0);
      for (int64_t r = 0; r < n; ++r) {
        if (c == 0) break;
        FUZZ_CHECK(std::memcmp(&gz_out[r * sg], &zc.as<T>()[r * sz], c * sizeof(T)) == 0);
        if (loss == Loss::kUskd)
          FUZZ_CHECK(std::memcmp(&gw_out[r * sg], &vc.as<T>()[r * so], c * sizeof(T)) == 0);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    run<float>(in);
  } else {
    run<double>(in);
  }
  return 0;
}
