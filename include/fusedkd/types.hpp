// fusedkd/types.hpp — the vocabulary shared by every loss: matrices, labels, reduction, options.
#pragma once

#include <cstdint>
#include <type_traits>

namespace fusedkd {

/// A row-major [rows, cols] matrix view. `stride` (elements between row starts) may exceed
/// `cols`, so the logits can be a view of a wider buffer. Nothing is owned.
template <typename T>
struct Matrix {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  /// A Matrix<T> converts to a Matrix<const T>.
  template <typename U, typename = std::enable_if_t<std::is_same<const U, T>::value &&
                                                    !std::is_same<U, T>::value>>
  Matrix(const Matrix<U>& m) : data(m.data), rows(m.rows), cols(m.cols), stride(m.stride) {}
  Matrix() = default;
  Matrix(T* d, int64_t r, int64_t c, int64_t s) : data(d), rows(r), cols(c), stride(s) {}

  T* row(int64_t i) const { return data + i * stride; }
};

/// Views `rows` x `cols` elements at `data`, rows `stride` elements apart (default: contiguous).
template <typename T>
Matrix<T> matrix(T* data, int64_t rows, int64_t cols, int64_t stride = -1) {
  return Matrix<T>(data, rows, cols, stride < 0 ? cols : stride);
}

/// The labels of a batch: hard class indices (int32 or int64, one per row; a row equal to
/// `ignore_index` is skipped) or dense soft labels [N, C] in float (mixup / cutmix).
struct Labels {
  enum class Kind { kNone, kIndex32, kIndex64, kSoft };
  Kind kind = Kind::kNone;
  const void* data = nullptr;
  int64_t stride = 0;  ///< soft labels: elements between rows (0: C)

  static Labels index(const int32_t* p) { return {Kind::kIndex32, p, 0}; }
  static Labels index(const int64_t* p) { return {Kind::kIndex64, p, 0}; }
  static Labels soft(const float* p, int64_t stride = 0) { return {Kind::kSoft, p, stride}; }
  /// No labels: KD only, and only with ce_weight == 0.
  static Labels none() { return {}; }

  bool is_soft() const { return kind == Kind::kSoft; }
};

/// How the per-row losses become the batch loss.
enum class Reduction {
  kMean,  ///< mean over the non-ignored rows (0 when there are none); one scalar
  kSum,   ///< sum over the rows; one scalar
  kNone,  ///< one value per row (0 for ignored rows); the gradient is that of their sum
};

/// Options every loss has. Values are double so that float64 callers lose nothing.
struct CommonOptions {
  Reduction reduction = Reduction::kMean;
  int64_t ignore_index = -100;  ///< hard label value that marks a row to skip
  double grad_scale = 1.0;      ///< the upstream gradient: every gradient is multiplied by it
  double ce_weight = 0.0;       ///< weight of an added cross-entropy term -log S_t
};

/// The accumulation type of a logits type: double for double, float for everything else.
template <typename T>
using acc_t = std::conditional_t<std::is_same<T, double>::value, double, float>;

}  // namespace fusedkd
