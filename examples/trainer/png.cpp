// png.cpp — rasterizer, bitmap font and PNG encoder.
#include "png.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace trainer {

namespace {

// 5x7 glyphs, one string per glyph: 7 rows of 5 pixels separated by '/', '#' = ink.
struct Glyph {
  char ch;
  const char* rows;
};
constexpr Glyph kFont[] = {
    {'A', ".###./#...#/#...#/#####/#...#/#...#/#...#"},
    {'B', "####./#...#/#...#/####./#...#/#...#/####."},
    {'C', ".###./#...#/#..../#..../#..../#...#/.###."},
    {'D', "####./#...#/#...#/#...#/#...#/#...#/####."},
    {'E', "#####/#..../#..../####./#..../#..../#####"},
    {'F', "#####/#..../#..../####./#..../#..../#...."},
    {'G', ".###./#...#/#..../#.###/#...#/#...#/.####"},
    {'H', "#...#/#...#/#...#/#####/#...#/#...#/#...#"},
    {'I', ".###./..#../..#../..#../..#../..#../.###."},
    {'J', "..###/...#./...#./...#./...#./#..#./.##.."},
    {'K', "#...#/#..#./#.#../##.../#.#../#..#./#...#"},
    {'L', "#..../#..../#..../#..../#..../#..../#####"},
    {'M', "#...#/##.##/#.#.#/#.#.#/#...#/#...#/#...#"},
    {'N', "#...#/#...#/##..#/#.#.#/#..##/#...#/#...#"},
    {'O', ".###./#...#/#...#/#...#/#...#/#...#/.###."},
    {'P', "####./#...#/#...#/####./#..../#..../#...."},
    {'Q', ".###./#...#/#...#/#...#/#.#.#/#..#./.##.#"},
    {'R', "####./#...#/#...#/####./#.#../#..#./#...#"},
    {'S', ".####/#..../#..../.###./....#/....#/####."},
    {'T', "#####/..#../..#../..#../..#../..#../..#.."},
    {'U', "#...#/#...#/#...#/#...#/#...#/#...#/.###."},
    {'V', "#...#/#...#/#...#/#...#/#...#/.#.#./..#.."},
    {'W', "#...#/#...#/#...#/#.#.#/#.#.#/#.#.#/.#.#."},
    {'X', "#...#/#...#/.#.#./..#../.#.#./#...#/#...#"},
    {'Y', "#...#/#...#/.#.#./..#../..#../..#../..#.."},
    {'Z', "#####/....#/...#./..#../.#.../#..../#####"},
    {'0', ".###./#...#/#..##/#.#.#/##..#/#...#/.###."},
    {'1', "..#../.##../..#../..#../..#../..#../.###."},
    {'2', ".###./#...#/....#/...#./..#../.#.../#####"},
    {'3', "#####/...#./..#../...#./....#/#...#/.###."},
    {'4', "...#./..##./.#.#./#..#./#####/...#./...#."},
    {'5', "#####/#..../####./....#/....#/#...#/.###."},
    {'6', "..##./.#.../#..../####./#...#/#...#/.###."},
    {'7', "#####/....#/...#./..#../.#.../.#.../.#..."},
    {'8', ".###./#...#/#...#/.###./#...#/#...#/.###."},
    {'9', ".###./#...#/#...#/.####/....#/...#./.##.."},
    {' ', "...../...../...../...../...../...../....."},
    {'.', "...../...../...../...../...../.##../.##.."},
    {',', "...../...../...../...../.##../..#../.#..."},
    {':', "...../.##../.##../...../.##../.##../....."},
    {';', "...../.##../.##../...../.##../..#../.#..."},
    {'-', "...../...../...../#####/...../...../....."},
    {'+', "...../..#../..#../#####/..#../..#../....."},
    {'=', "...../...../#####/...../#####/...../....."},
    {'%', "##.../##..#/...#./..#../.#.../#..##/...##"},
    {'(', "...#./..#../.#.../.#.../.#.../..#../...#."},
    {')', ".#.../..#../...#./...#./...#./..#../.#..."},
    {'[', ".###./.#.../.#.../.#.../.#.../.#.../.###."},
    {']', ".###./...#./...#./...#./...#./...#./.###."},
    {'/', "...../....#/...#./..#../.#.../#..../....."},
    {'_', "...../...../...../...../...../...../#####"},
    {'#', ".#.#./.#.#./#####/.#.#./#####/.#.#./.#.#."},
    {'<', "...#./..#../.#.../#..../.#.../..#../...#."},
    {'>', ".#.../..#../...#./....#/...#./..#../.#..."},
    {'\'', "..#../..#../.#.../...../...../...../....."},
    {'*', "...../..#../#.#.#/.###./#.#.#/..#../....."},
    {'|', "..#../..#../..#../..#../..#../..#../..#.."},
    {'?', ".###./#...#/....#/...#./..#../...../..#.."},
    {'!', "..#../..#../..#../..#../..#../...../..#.."},
};
constexpr const char* kBox = "#####/#...#/#...#/#...#/#...#/#...#/#####";

const char* glyph_rows(char ch) {
  if (ch >= 'a' && ch <= 'z') ch = char(ch - 'a' + 'A');
  for (const Glyph& g : kFont) {
    if (g.ch == ch) return g.rows;
  }
  return kBox;
}

// Calls ink(col, row) for each inked pixel of the glyph (col 0..4, row 0..6).
template <typename F>
void for_each_ink(char ch, F ink) {
  const char* p = glyph_rows(ch);
  int row = 0, col = 0;
  for (; *p; ++p) {
    if (*p == '/') {
      ++row;
      col = 0;
      continue;
    }
    if (*p == '#') ink(col, row);
    ++col;
  }
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(uint8_t(v >> 24));
  out.push_back(uint8_t(v >> 16));
  out.push_back(uint8_t(v >> 8));
  out.push_back(uint8_t(v));
}

void put_chunk(std::vector<uint8_t>& out, const char type[4], const uint8_t* data, size_t len) {
  put_be32(out, uint32_t(len));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  if (len) out.insert(out.end(), data, data + len);
  // The CRC covers the chunk type and data (not the length).
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), out.data() + start, uInt(out.size() - start));
  put_be32(out, uint32_t(crc));
}

}  // namespace

Image::Image(int width, int height, Rgb bg)
    : w_(width), h_(height), px_(size_t(width) * height * 3) {
  for (size_t i = 0; i < px_.size(); i += 3) {
    px_[i] = bg.r;
    px_[i + 1] = bg.g;
    px_[i + 2] = bg.b;
  }
}

Rgb Image::at(int x, int y) const {
  const size_t i = (size_t(y) * w_ + x) * 3;
  return {px_[i], px_[i + 1], px_[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  const size_t i = (size_t(y) * w_ + x) * 3;
  px_[i] = c.r;
  px_[i + 1] = c.g;
  px_[i + 2] = c.b;
}

void Image::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  if (x0 > x1) std::swap(x0, x1);
  if (y0 > y1) std::swap(y0, y1);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) set(x, y, c);
}

void Image::rect(int x0, int y0, int x1, int y1, Rgb c) {
  line(x0, y0, x1, y0, c);
  line(x1, y0, x1, y1, c);
  line(x1, y1, x0, y1, c);
  line(x0, y1, x0, y0, c);
}

void Image::line(int x0, int y0, int x1, int y1, Rgb c, int thickness, int dash) {
  // Bresenham; each step stamps a thickness x thickness square centred on the point.
  const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy, step = 0;
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (;;) {
    if (dash <= 0 || (step / dash) % 2 == 0) {
      for (int oy = lo; oy <= hi; ++oy)
        for (int ox = lo; ox <= hi; ++ox) set(x0 + ox, y0 + oy, c);
    }
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
    ++step;
  }
}

void Image::text(int x, int y, const std::string& s, Rgb c, int scale) {
  for (size_t k = 0; k < s.size(); ++k) {
    const int gx = x + int(k) * 6 * scale;
    for_each_ink(s[k], [&](int col, int row) {
      fill_rect(gx + col * scale, y + row * scale, gx + col * scale + scale - 1,
                y + row * scale + scale - 1, c);
    });
  }
}

void Image::text_vertical(int x, int y, const std::string& s, Rgb c, int scale) {
  // Rotated counter-clockwise: the text runs upwards, starting at the bottom of its box.
  const int len = text_width(s, scale);
  for (size_t k = 0; k < s.size(); ++k) {
    const int gy = y + len - int(k) * 6 * scale;  // bottom edge of this glyph's run
    for_each_ink(s[k], [&](int col, int row) {
      const int px = x + row * scale;
      const int py = gy - (col + 1) * scale;
      fill_rect(px, py, px + scale - 1, py + scale - 1, c);
    });
  }
}

std::vector<uint8_t> encode_png(const uint8_t* rgb, int width, int height) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t ihdr[13];
  const uint32_t w = uint32_t(width), h = uint32_t(height);
  const uint8_t dims[8] = {uint8_t(w >> 24), uint8_t(w >> 16), uint8_t(w >> 8), uint8_t(w),
                           uint8_t(h >> 24), uint8_t(h >> 16), uint8_t(h >> 8), uint8_t(h)};
  std::memcpy(ihdr, dims, 8);
  ihdr[8] = 8;   // bit depth
  ihdr[9] = 2;   // colour type: RGB
  ihdr[10] = 0;  // deflate
  ihdr[11] = 0;  // adaptive filtering
  ihdr[12] = 0;  // no interlace
  put_chunk(out, "IHDR", ihdr, sizeof ihdr);

  // Each scanline starts with its filter type; 0 (none) is plenty for a chart of flat colours.
  const size_t stride = size_t(width) * 3;
  std::vector<uint8_t> raw((stride + 1) * size_t(height));
  for (int y = 0; y < height; ++y) {
    raw[y * (stride + 1)] = 0;
    std::memcpy(&raw[y * (stride + 1) + 1], rgb + y * stride, stride);
  }
  uLongf zlen = compressBound(uLong(raw.size()));
  std::vector<uint8_t> z(zlen);
  if (compress2(z.data(), &zlen, raw.data(), uLong(raw.size()), 9) != Z_OK) return {};
  put_chunk(out, "IDAT", z.data(), zlen);
  put_chunk(out, "IEND", nullptr, 0);
  return out;
}

bool Image::write_png(const std::string& path, std::string* error) const {
  const std::vector<uint8_t> bytes = encode_png(px_.data(), w_, h_);
  if (bytes.empty()) {
    if (error) *error = "zlib could not compress the image";
    return false;
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) {
    if (error) *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
    if (error) *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  if (std::fclose(f.release()) != 0) {
    if (error) *error = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace trainer
