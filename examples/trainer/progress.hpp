// progress.hpp — one progress bar per training run. On a terminal it redraws one line in place
// (bar, epoch, running loss and accuracy, last test accuracy, time left); when stdout is not a
// terminal (CI logs, pipes) it prints plain lines instead: one per epoch, at most one every 5 s.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace trainer {

class Progress {
 public:
  /// `label` names the run (e.g. "KD  seed 2"); `total_steps` = epochs * batches per epoch.
  Progress(std::string label, int epochs, int64_t total_steps, bool tty);

  /// After each optimizer step: `step` steps done in total, running means of the current epoch.
  void step(int64_t step, int epoch, double loss, double train_acc);
  /// After each epoch, with its test accuracy (fraction).
  void epoch_end(int epoch, double loss, double train_acc, double test_acc);
  /// Ends the run's line.
  void finish(double final_test_acc);

  double elapsed() const;

  /// Whether stdout is a terminal (and TERM is not "dumb").
  static bool stdout_is_tty();

 private:
  void draw(int64_t step, int epoch, double loss, double train_acc, bool force);

  std::string label_;
  int epochs_;
  int64_t total_;
  bool tty_;
  double last_test_ = -1;
  double last_draw_ = -1;
  std::chrono::steady_clock::time_point start_;
};

/// "1:05" or "12s" style duration.
std::string format_duration(double seconds);

}  // namespace trainer
