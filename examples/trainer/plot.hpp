// plot.hpp — a line chart of test accuracy against epoch, one line per method, saved as PNG.
#pragma once

#include <string>
#include <vector>

#include "png.hpp"

namespace trainer {

struct Series {
  std::string name;
  Rgb color;
  std::vector<double> y;  ///< y[e] is the value after epoch e + 1
  bool dashed = false;
};

struct ChartLabels {
  std::string title;
  std::string subtitle;
  std::string x_label = "epoch";
  std::string y_label = "test accuracy (%)";
};

/// Draws the series (x = 1, 2, ...) with axes, ticks, grid, axis labels and a legend, and
/// writes the PNG. A series with one point is drawn as a marker. Returns false and sets
/// `error` when the file cannot be written.
bool plot_lines(const std::vector<Series>& series, const ChartLabels& labels,
                const std::string& path, std::string* error);

/// A palette of distinguishable colours (matplotlib's tab10).
Rgb palette(int i);

}  // namespace trainer
