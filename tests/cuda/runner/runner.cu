// tests/cuda/runner/runner.cu — the runner's dtype-independent parts. The kernels are
// instantiated in runner_f32.cu, runner_f16.cu and runner_bf16.cu (one logits type each, see
// runner_impl.cuh); this file compiles none of them.
#include "runner_impl.cuh"

namespace fkcuda {

using detail::DeviceBuffer;
using detail::Failure;
using detail::Stream;
using detail::ck;
using detail::elapsed_ms;
using detail::from_t;
using detail::run_t;
using detail::sentinel_t;
using detail::time_call;

using fusedkd::Labels;
using fusedkd::Matrix;
using fusedkd::Status;

// Instantiated in runner_f32.cu, runner_f16.cu, runner_bf16.cu: not here.
namespace detail {
extern template Result run_t<float>(const Problem& p);
extern template Result run_t<__half>(const Problem& p);
extern template Result run_t<__nv_bfloat16>(const Problem& p);
extern template double time_call<float>(const Problem& p, int iters);
extern template double time_call<__half>(const Problem& p, int iters);
extern template double time_call<__nv_bfloat16>(const Problem& p, int iters);
}  // namespace detail

const char* loss_name(Loss l) {
  switch (l) {
    case Loss::kNkd: return "nkd";
    case Loss::kKd: return "kd";
    case Loss::kDkd: return "dkd";
    case Loss::kUskd: return "uskd";
  }
  return "?";
}
const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "?";
}
const char* label_name(LabelKind k) {
  switch (k) {
    case LabelKind::kNone: return "none";
    case LabelKind::kHard32: return "int32";
    case LabelKind::kHard64: return "int64";
    case LabelKind::kSoft: return "soft";
  }
  return "?";
}

float round_to(DType d, float x) {
  switch (d) {
    case DType::kFloat32: return x;
    case DType::kFloat16: return __half2float(__float2half_rn(x));
    case DType::kBFloat16: return __bfloat162float(__float2bfloat16_rn(x));
  }
  return x;
}

const fusedkd::CommonOptions& Problem::common() const {
  switch (loss) {
    case Loss::kNkd: return nkd;
    case Loss::kKd: return kd;
    case Loss::kDkd: return dkd;
    case Loss::kUskd: return uskd;
  }
  return nkd;
}
fusedkd::CommonOptions& Problem::common() {
  return const_cast<fusedkd::CommonOptions&>(static_cast<const Problem*>(this)->common());
}

fusedkd::Labels Problem::labels() const {
  switch (label_kind) {
    case LabelKind::kNone: return Labels::none();
    case LabelKind::kHard32: return Labels::index(labels32.data());
    case LabelKind::kHard64: return Labels::index(labels64.data());
    case LabelKind::kSoft: return Labels::soft(soft.data(), soft_ld);
  }
  return Labels::none();
}

void round_inputs(Problem& p) {
  for (float& x : p.student) x = round_to(p.dtype, x);
  for (float& x : p.other) x = round_to(p.dtype, x);
}


bool is_sentinel(DType d, float x) {
  float want = 0.0f;
  switch (d) {
    case DType::kFloat32: want = sentinel_t<float>(); break;
    case DType::kFloat16: want = from_t(sentinel_t<__half>()); break;
    case DType::kBFloat16: want = from_t(sentinel_t<__nv_bfloat16>()); break;
  }
  uint32_t a, b;
  std::memcpy(&a, &x, sizeof a);
  std::memcpy(&b, &want, sizeof b);
  return a == b;
}

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    if (why != nullptr) {
      *why = e != cudaSuccess ? std::string("no CUDA device: ") + cudaGetErrorString(e) : "no CUDA device";
    }
    cudaGetLastError();  // clear the error state
    return false;
  }
  return true;
}

std::string device_name() {
  if (!device_available()) return "";
  cudaDeviceProp prop;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return "";
  return prop.name;
}

bool device_reset() { return cudaDeviceReset() == cudaSuccess; }

Result run(const Problem& p) {
  switch (p.dtype) {
    case DType::kFloat32: return run_t<float>(p);
    case DType::kFloat16: return run_t<__half>(p);
    case DType::kBFloat16: return run_t<__nv_bfloat16>(p);
  }
  return Result();
}

double time_ms(const Problem& p, int iters) {
  switch (p.dtype) {
    case DType::kFloat32: return time_call<float>(p, iters);
    case DType::kFloat16: return time_call<__half>(p, iters);
    case DType::kBFloat16: return time_call<__nv_bfloat16>(p, iters);
  }
  return -1.0;
}

double copy_gbps(size_t bytes) {
  try {
    DeviceBuffer a, b;
    ck(a.alloc(bytes), "cudaMalloc");
    ck(b.alloc(bytes), "cudaMalloc");
    ck(cudaMemset(a.ptr, 0, bytes), "cudaMemset");
    Stream stream;
    ck(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream.s), "copy");
    const int iters = 10;
    const double ms = elapsed_ms(stream.s, [&] {
      for (int k = 0; k < iters; ++k) ck(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream.s), "copy");
    });
    return 2.0 * static_cast<double>(bytes) * iters / (ms * 1e-3) / 1e9;
  } catch (const Failure&) {
    return -1.0;
  }
}

}  // namespace fkcuda
