// data.cpp — the IDX reader. Format (big-endian): magic 0x00000803 (images) or 0x00000801
// (labels), then one uint32 per dimension, then the unsigned bytes.
#include "data.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>

namespace trainer {

const char* const kClassNames[kNumClasses] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

/// A gzip file read as a stream of bytes; every short read is an error with the file's name.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      throw DataError("cannot open " + path + ": " + std::strerror(errno), true);
    }
    if (!S_ISREG(st.st_mode)) throw DataError(path + " is not a regular file");
    file_.reset(gzopen(path.c_str(), "rb"));
    if (!file_) throw DataError("cannot open " + path + ": " + std::strerror(errno), true);
    gzbuffer(file_.get(), 1 << 16);
  }

  void read(void* dst, size_t bytes, const char* what) {
    auto* p = static_cast<unsigned char*>(dst);
    while (bytes > 0) {
      const unsigned chunk = bytes > (1u << 30) ? (1u << 30) : static_cast<unsigned>(bytes);
      const int got = gzread(file_.get(), p, chunk);
      if (got < 0) {
        int err = 0;
        const char* msg = gzerror(file_.get(), &err);
        throw DataError(path_ + ": corrupt or unreadable gzip data while reading " + what + " (" +
                        (msg ? msg : "zlib error") + ")");
      }
      if (got == 0) {
        throw DataError(path_ + ": file ends early while reading " + what +
                        " (truncated download or wrong file?)");
      }
      p += got;
      bytes -= static_cast<size_t>(got);
    }
  }

  uint32_t read_be32(const char* what) {
    unsigned char b[4];
    read(b, 4, what);
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
  }

 private:
  std::string path_;
  GzPtr file_;
};

}  // namespace

Dataset load_fashion_mnist(const std::string& dir, const std::string& prefix, int64_t limit) {
  const std::string img_path = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lbl_path = dir + "/" + prefix + "-labels-idx1-ubyte.gz";

  GzReader img(img_path);
  const uint32_t img_magic = img.read_be32("the header");
  if (img_magic != 0x00000803u) {
    throw DataError(img_path + ": not an IDX image file (magic number " +
                    std::to_string(img_magic) + ", expected 2051)");
  }
  const uint32_t count = img.read_be32("the header");
  const uint32_t rows = img.read_be32("the header");
  const uint32_t cols = img.read_be32("the header");
  if (rows != 28 || cols != 28) {
    throw DataError(img_path + ": images are " + std::to_string(rows) + "x" + std::to_string(cols) +
                    ", expected 28x28");
  }
  if (count == 0 || count > 10000000u) {
    throw DataError(img_path + ": implausible image count " + std::to_string(count));
  }

  GzReader lbl(lbl_path);
  const uint32_t lbl_magic = lbl.read_be32("the header");
  if (lbl_magic != 0x00000801u) {
    throw DataError(lbl_path + ": not an IDX label file (magic number " +
                    std::to_string(lbl_magic) + ", expected 2049)");
  }
  const uint32_t lcount = lbl.read_be32("the header");
  if (lcount != count) {
    throw DataError(lbl_path + ": has " + std::to_string(lcount) + " labels but " + img_path +
                    " has " + std::to_string(count) + " images");
  }

  Dataset d;
  d.n = (limit > 0 && limit < int64_t(count)) ? limit : int64_t(count);
  d.dim = int64_t(rows) * cols;
  std::vector<unsigned char> pixels(static_cast<size_t>(d.n * d.dim));
  img.read(pixels.data(), pixels.size(), "the pixels");
  std::vector<unsigned char> labels(static_cast<size_t>(d.n));
  lbl.read(labels.data(), labels.size(), "the labels");

  d.x.resize(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) d.x[i] = pixels[i] * (1.0f / 255.0f);
  d.y.resize(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= kNumClasses) {
      throw DataError(lbl_path + ": label " + std::to_string(labels[i]) + " at index " +
                      std::to_string(i) + " is not a class 0..9");
    }
    d.y[i] = labels[i];
  }
  return d;
}

Dataset head(const Dataset& d, int64_t n) {
  Dataset h;
  h.n = std::min(n, d.n);
  h.dim = d.dim;
  h.x.assign(d.x.begin(), d.x.begin() + h.n * d.dim);
  h.y.assign(d.y.begin(), d.y.begin() + h.n);
  return h;
}

void pixel_stats(const Dataset& d, float* mean, float* stdev) {
  double s = 0, s2 = 0;
  for (float v : d.x) {
    s += v;
    s2 += double(v) * v;
  }
  const double n = double(d.x.size());
  const double m = s / n;
  *mean = float(m);
  *stdev = float(std::sqrt(std::max(s2 / n - m * m, 1e-12)));
}

void normalize(Dataset& d, float mean, float stdev) {
  const float inv = 1.0f / stdev;
  for (float& v : d.x) v = (v - mean) * inv;
}

}  // namespace trainer
