// plot.cpp — layout of the chart: plot area, "nice" ticks, legend.
#include "plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace trainer {

namespace {

// Tick step of 1, 2 or 5 times a power of ten giving at most `max_ticks` ticks over `span`.
double nice_step(double span, int max_ticks) {
  if (!(span > 0)) return 1.0;
  const double raw = span / max_ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10.0 * p;
}

std::string fmt(double v, double step) {
  char buf[32];
  const int decimals = step >= 1.0 ? 0 : int(std::ceil(-std::log10(step) - 1e-9));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

Rgb palette(int i) {
  static const Rgb k[] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                          {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                          {188, 189, 34},  {23, 190, 207}};
  return k[i % 10];
}

bool plot_lines(const std::vector<Series>& series, const ChartLabels& labels,
                const std::string& path, std::string* error) {
  const int W = 960, H = 600, S = 2;  // S: font scale
  const Rgb black{0, 0, 0}, grid{225, 225, 225}, grey{90, 90, 90};
  Image img(W, H);

  // Legend width from the longest name.
  int legend_w = 0;
  for (const Series& s : series) legend_w = std::max(legend_w, Image::text_width(s.name, S));
  legend_w += 50;

  const int left = 90, right = W - 30 - legend_w, top = 70, bottom = H - 70;

  // Data range.
  size_t max_len = 1;
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : series) {
    max_len = std::max(max_len, s.y.size());
    for (double v : s.y) {
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double ystep = nice_step(hi - lo, 8);
  const double y0 = std::floor(lo / ystep) * ystep, y1 = std::ceil(hi / ystep) * ystep;
  const double x0 = 1, x1 = std::max<double>(2, double(max_len));
  const double xstep = std::max(1.0, nice_step(x1 - x0, 10));

  auto px = [&](double x) {
    return left + int(std::lround((x - x0) / (x1 - x0) * (right - left)));
  };
  auto py = [&](double y) {
    return bottom - int(std::lround((y - y0) / (y1 - y0) * (bottom - top)));
  };

  // Grid and tick labels.
  for (double y = y0; y <= y1 + 1e-9; y += ystep) {
    img.line(left, py(y), right, py(y), grid);
    const std::string t = fmt(y, ystep);
    img.text(left - 10 - Image::text_width(t, S), py(y) - Image::text_height(S) / 2, t, black, S);
  }
  // x ticks: the multiples of the step, and epoch 1 when the first multiple is far from it.
  std::vector<double> xticks;
  if (xstep <= 1.0 || std::ceil(x0 / xstep) * xstep - x0 > 0.5 * xstep) xticks.push_back(x0);
  for (double x = std::ceil(x0 / xstep) * xstep; x <= x1 + 1e-9; x += xstep) {
    if (x > x0 + 1e-9 || xticks.empty()) xticks.push_back(x);
  }
  for (double x : xticks) {
    img.line(px(x), top, px(x), bottom, grid);
    img.line(px(x), bottom, px(x), bottom + 5, black);
    const std::string t = fmt(x, 1.0);
    img.text(px(x) - Image::text_width(t, S) / 2, bottom + 10, t, black, S);
  }
  img.rect(left, top, right, bottom, black);

  // Titles and axis labels.
  img.text((W - Image::text_width(labels.title, S)) / 2, 14, labels.title, black, S);
  if (!labels.subtitle.empty()) {
    img.text((W - Image::text_width(labels.subtitle, 1)) / 2, 40, labels.subtitle, grey, 1);
  }
  img.text((left + right - Image::text_width(labels.x_label, S)) / 2, H - 30, labels.x_label, black,
           S);
  img.text_vertical(18, (top + bottom - Image::text_width(labels.y_label, S)) / 2, labels.y_label,
                    black, S);

  // Lines, clipped to the plot area by construction of the range.
  for (const Series& s : series) {
    const int thick = 3;
    if (s.y.size() == 1) {
      const int cx = px(1), cy = py(s.y[0]);
      img.fill_rect(cx - 4, cy - 4, cx + 4, cy + 4, s.color);
      continue;
    }
    for (size_t i = 0; i + 1 < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.y[i + 1])) continue;
      img.line(px(double(i + 1)), py(s.y[i]), px(double(i + 2)), py(s.y[i + 1]), s.color, thick,
               s.dashed ? 8 : 0);
    }
  }

  // Legend.
  int ly = top + 10;
  const int lx = right + 20;
  for (const Series& s : series) {
    img.line(lx, ly + Image::text_height(S) / 2, lx + 30, ly + Image::text_height(S) / 2, s.color,
             3, s.dashed ? 6 : 0);
    img.text(lx + 38, ly, s.name, black, S);
    ly += Image::text_height(S) + 14;
  }

  return img.write_png(path, error);
}

}  // namespace trainer
