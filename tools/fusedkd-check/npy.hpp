// npy.hpp — a small reader and writer of NumPy .npy files (format versions 1, 2 and 3).
//
// Supported: little-endian float32 ('<f4'), float64 ('<f8'), int32 ('<i4') and int64 ('<i8')
// arrays in C order, any number of dimensions (a 0-d array is a scalar). Anything else, and
// every malformed or truncated file, is reported by an npy::Error exception with a readable
// message; the reader never reads past what it has checked.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Type { kF4, kF8, kI4, kI8 };

inline const char* descr(Type t) {
  switch (t) {
    case Type::kF4: return "<f4";
    case Type::kF8: return "<f8";
    case Type::kI4: return "<i4";
    case Type::kI8: return "<i8";
  }
  return "?";
}

inline size_t item_size(Type t) { return (t == Type::kF4 || t == Type::kI4) ? 4 : 8; }
inline bool is_float(Type t) { return t == Type::kF4 || t == Type::kF8; }

namespace detail {

/// `s` cut to `max` characters, with every byte that is not printable ASCII shown as '?'.
inline std::string printable(const std::string& s, size_t max = 200) {
  std::string out = s.substr(0, max);
  for (char& ch : out)
    if (ch < 0x20 || ch > 0x7e) ch = '?';
  return out;
}

inline bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char c;
  std::memcpy(&c, &one, 1);
  return c == 1;
}

/// Copies one little-endian element of `n` bytes at `src` into the host value at `dst`.
inline void copy_le(void* dst, const unsigned char* src, size_t n) {
  if (host_is_little_endian()) {
    std::memcpy(dst, src, n);
  } else {
    auto* d = static_cast<unsigned char*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = src[n - 1 - i];
  }
}

/// Parser of the header: a Python dict literal such as
///   {'descr': '<f4', 'fortran_order': False, 'shape': (4, 10), }
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& s) : s_(s) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = str();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        descr = str();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple();
        have_shape = true;
      } else {
        fail("unknown header key '" + key + "'");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      expect('}');
      break;
    }
    if (!have_descr || !have_fortran || !have_shape)
      fail("the header lacks 'descr', 'fortran_order' or 'shape'");
    // After the dict: only the padding NumPy writes (spaces, then a newline).
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n')) ++i_;
    if (i_ != s_.size()) fail("junk after the header dict");
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    std::string h = s_;
    while (!h.empty() && (h.back() == ' ' || h.back() == '\n' || h.back() == '\r')) h.pop_back();
    throw Error("malformed .npy header (" + printable(why) + "): " + printable(h));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string str() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a string");
    ++i_;
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] != q) ++i_;
    if (i_ >= s_.size()) fail("unterminated string");
    return s_.substr(start, i_++ - start);
  }
  bool boolean() {
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<int64_t> tuple() {
    const char open = peek();
    if (open != '(' && open != '[') fail("expected a shape tuple");
    const char close = open == '(' ? ')' : ']';
    ++i_;
    std::vector<int64_t> dims;
    for (;;) {
      ws();
      if (peek() == close) {
        ++i_;
        return dims;
      }
      if (peek() < '0' || peek() > '9') fail("expected a non-negative dimension");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("dimension too large");
        v = v * 10 + (peek() - '0');
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 long suffix
      dims.push_back(v);
      if (dims.size() > 32) fail("too many dimensions");
      ws();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != close) {
        fail("expected ',' or the end of the shape");
      }
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace detail

/// An array read from a .npy file: its element type, shape and raw little-endian bytes.
struct Array {
  Type type = Type::kF4;
  uint64_t file_bytes = 0;  ///< the size of the file it was read from
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t ndim() const { return shape.size(); }

  /// "(4, 10)", "(4,)" or "()" as NumPy prints shapes.
  std::string shape_string() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) s += ", ";
      s += std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
  }

  /// The elements as doubles (float arrays only: an integer array is an Error).
  std::vector<double> to_double() const {
    if (!is_float(type)) throw Error(std::string("expected a float array, found ") + descr(type));
    std::vector<double> out(static_cast<size_t>(size()));
    const size_t w = item_size(type);
    for (size_t i = 0; i < out.size(); ++i) {
      if (type == Type::kF4) {
        float f;
        detail::copy_le(&f, &bytes[i * w], w);
        out[i] = f;
      } else {
        detail::copy_le(&out[i], &bytes[i * w], w);
      }
    }
    return out;
  }

  /// The elements as floats (float64 elements are rounded to float).
  std::vector<float> to_float() const {
    const std::vector<double> d = to_double();
    std::vector<float> out(d.size());
    for (size_t i = 0; i < d.size(); ++i) out[i] = static_cast<float>(d[i]);
    return out;
  }

  /// The elements as int64 (integer arrays only: a float array is an Error).
  std::vector<int64_t> to_int64() const {
    if (is_float(type))
      throw Error(std::string("expected an integer array, found ") + descr(type));
    std::vector<int64_t> out(static_cast<size_t>(size()));
    const size_t w = item_size(type);
    for (size_t i = 0; i < out.size(); ++i) {
      if (type == Type::kI4) {
        int32_t v;
        detail::copy_le(&v, &bytes[i * w], w);
        out[i] = v;
      } else {
        detail::copy_le(&out[i], &bytes[i * w], w);
      }
    }
    return out;
  }
};

/// Reads a .npy file. Throws npy::Error on anything unsupported or malformed.
inline Array load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  in.seekg(0, std::ios::end);
  const std::streamoff file_size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (file_size < 0) throw Error("cannot read " + path);

  unsigned char pre[12];
  if (file_size < 10 || !in.read(reinterpret_cast<char*>(pre), 10))
    throw Error(path + ": too short to be a .npy file");
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file (bad magic)");
  const int major = pre[6], minor = pre[7];
  if (minor != 0)
    throw Error(path + ": unsupported .npy format version " + std::to_string(major) + "." +
                std::to_string(minor) + " (1.0, 2.0 and 3.0)");
  uint64_t header_len = 0;
  std::streamoff data_start = 0;
  if (major == 1) {
    header_len = static_cast<uint64_t>(pre[8]) | (static_cast<uint64_t>(pre[9]) << 8);
    data_start = 10;
  } else if (major == 2 || major == 3) {
    if (file_size < 12 || !in.read(reinterpret_cast<char*>(pre + 10), 2))
      throw Error(path + ": truncated .npy header");
    header_len = static_cast<uint64_t>(pre[8]) | (static_cast<uint64_t>(pre[9]) << 8) |
                 (static_cast<uint64_t>(pre[10]) << 16) | (static_cast<uint64_t>(pre[11]) << 24);
    data_start = 12;
  } else {
    throw Error(path + ": unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > static_cast<uint64_t>(file_size - data_start))
    throw Error(path + ": truncated .npy header");
  std::string header(static_cast<size_t>(header_len), '\0');
  if (header_len && !in.read(&header[0], static_cast<std::streamsize>(header_len)))
    throw Error(path + ": truncated .npy header");
  data_start += static_cast<std::streamoff>(header_len);

  std::string d;
  bool fortran = false;
  Array a;
  a.file_bytes = static_cast<uint64_t>(file_size);
  try {
    detail::HeaderParser(header).parse(d, fortran, a.shape);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  if (d == "<f4") {
    a.type = Type::kF4;
  } else if (d == "<f8") {
    a.type = Type::kF8;
  } else if (d == "<i4") {
    a.type = Type::kI4;
  } else if (d == "<i8") {
    a.type = Type::kI8;
  } else {
    throw Error(path + ": unsupported dtype '" + detail::printable(d) +
                "' (supported: <f4, <f8, <i4, <i8)");
  }
  if (fortran && a.shape.size() > 1)
    throw Error(path + ": Fortran-order arrays are not supported (C order only)");

  // Element count with an overflow check, then the data size against the file size.
  const uint64_t w = item_size(a.type);
  uint64_t count = 1;
  for (int64_t dim : a.shape) {
    if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(dim))
      throw Error(path + ": shape " + a.shape_string() + " is too large");
    count *= static_cast<uint64_t>(dim);
  }
  const uint64_t have = static_cast<uint64_t>(file_size - data_start);
  if (have != count * w)
    throw Error(path + ": shape " + a.shape_string() + " of " + d + " needs " +
                std::to_string(count * w) + " data bytes, the file has " + std::to_string(have));
  a.bytes.resize(static_cast<size_t>(count * w));
  if (!a.bytes.empty() &&
      !in.read(reinterpret_cast<char*>(a.bytes.data()), static_cast<std::streamsize>(a.bytes.size())))
    throw Error(path + ": read error");
  return a;
}

namespace detail {
template <typename T> struct TypeOf;
template <> struct TypeOf<float> { static constexpr Type value = Type::kF4; };
template <> struct TypeOf<double> { static constexpr Type value = Type::kF8; };
template <> struct TypeOf<int32_t> { static constexpr Type value = Type::kI4; };
template <> struct TypeOf<int64_t> { static constexpr Type value = Type::kI8; };
}  // namespace detail

/// Writes `data` (C order, shape `shape`; an empty shape is a scalar) as a version 1.0 .npy file.
/// T is float, double, int32_t or int64_t. Throws npy::Error when the file cannot be written.
template <typename T>
void save(const std::string& path, const T* data, const std::vector<int64_t>& shape) {
  const Type t = detail::TypeOf<T>::value;
  std::string header = std::string("{'descr': '") + descr(t) + "', 'fortran_order': False, 'shape': (";
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) header += ", ";
    header += std::to_string(shape[i]);
    count *= shape[i];
  }
  if (shape.size() == 1) header += ",";
  header += "), }";
  // Pad with spaces so that magic + version + length + header is a multiple of 64, end with \n.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error("cannot write " + path);
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                 static_cast<unsigned char>(header.size() & 0xff),
                                 static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(pre), 10);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<unsigned char> buf(static_cast<size_t>(count) * sizeof(T));
  for (int64_t i = 0; i < count; ++i)
    detail::copy_le(&buf[static_cast<size_t>(i) * sizeof(T)],
                    reinterpret_cast<const unsigned char*>(&data[i]), sizeof(T));
  out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
  if (!out) throw Error("error writing " + path);
}

template <typename T>
void save(const std::string& path, const std::vector<T>& data, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  if (static_cast<int64_t>(data.size()) != count)
    throw Error("npy::save " + path + ": data size does not match the shape");
  save(path, data.data(), shape);
}

}  // namespace npy
