// data.hpp — Fashion-MNIST from gzip-compressed IDX files (the Debian package
// dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace trainer {

/// Thrown for a missing, unreadable or malformed data file; what() is a message for the user.
struct DataError : std::runtime_error {
  explicit DataError(const std::string& what, bool missing_file = false)
      : std::runtime_error(what), missing(missing_file) {}
  bool missing;  ///< the file does not exist or cannot be opened (rather than being malformed)
};

/// Images as float rows of 784 pixels, labels as class indices 0..9.
struct Dataset {
  int64_t n = 0;
  int64_t dim = 0;         ///< pixels per image (28 * 28)
  std::vector<float> x;    ///< [n, dim], row-major
  std::vector<int32_t> y;  ///< [n]
};

constexpr int kNumClasses = 10;
constexpr const char* kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

/// Class names of Fashion-MNIST, index = label.
extern const char* const kClassNames[kNumClasses];

/// Reads `<dir>/<prefix>-images-idx3-ubyte.gz` and `<dir>/<prefix>-labels-idx1-ubyte.gz`
/// (prefix "train" or "t10k"), at most `limit` images (all when limit <= 0). Pixels are scaled
/// to [0, 1]. Throws DataError with a readable message when a file is missing or malformed.
Dataset load_fashion_mnist(const std::string& dir, const std::string& prefix, int64_t limit = 0);

/// The first `n` images of `d` (a copy; all of them when n >= d.n).
Dataset head(const Dataset& d, int64_t n);

/// Subtracts `mean` and divides by `stdev` in place.
void normalize(Dataset& d, float mean, float stdev);

/// Mean and standard deviation of all pixels of `d`.
void pixel_stats(const Dataset& d, float* mean, float* stdev);

}  // namespace trainer
