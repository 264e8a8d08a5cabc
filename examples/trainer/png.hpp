// png.hpp — just enough raster graphics to draw a line chart and save it as PNG: an RGB image,
// lines, rectangles, text in a built-in 5x7 bitmap font, and a PNG encoder (zlib deflate + CRC).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace trainer {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

class Image {
 public:
  Image(int width, int height, Rgb background = {255, 255, 255});

  int width() const { return w_; }
  int height() const { return h_; }
  Rgb at(int x, int y) const;

  void set(int x, int y, Rgb c);                          ///< ignores pixels outside the image
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  ///< inclusive corners
  void rect(int x0, int y0, int x1, int y1, Rgb c);       ///< outline
  /// Straight line of `thickness` pixels; `dash` > 0 draws dash-pixel segments with equal gaps.
  void line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1, int dash = 0);

  /// Text in the 5x7 font, each font pixel drawn as scale x scale pixels. Lowercase letters are
  /// drawn as capitals; characters without a glyph as a box. (x, y) is the top-left corner.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1);
  /// Text rotated 90 degrees counter-clockwise (reads bottom to top), (x, y) its top-left corner.
  void text_vertical(int x, int y, const std::string& s, Rgb c, int scale = 1);
  static int text_width(const std::string& s, int scale = 1) {
    return int(s.size()) * 6 * scale - scale;
  }
  static int text_height(int scale = 1) { return 7 * scale; }

  /// Writes the image as an 8-bit RGB PNG. Returns false (and sets `error`) when it cannot.
  bool write_png(const std::string& path, std::string* error) const;

 private:
  int w_, h_;
  std::vector<uint8_t> px_;  // RGB, row-major
};

/// The bytes of a PNG file for an RGB image (what write_png saves).
std::vector<uint8_t> encode_png(const uint8_t* rgb, int width, int height);

}  // namespace trainer
