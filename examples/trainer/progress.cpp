// progress.cpp
#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace trainer {

Progress::Progress(std::string label, int epochs, int64_t total_steps, bool tty)
    : label_(std::move(label)),
      epochs_(epochs),
      total_(total_steps > 0 ? total_steps : 1),
      tty_(tty),
      start_(std::chrono::steady_clock::now()) {
  if (tty_) draw(0, 1, 0.0, 0.0, true);
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool Progress::stdout_is_tty() {
  const char* term = std::getenv("TERM");
  return isatty(STDOUT_FILENO) && !(term && std::strcmp(term, "dumb") == 0);
}

std::string format_duration(double s) {
  char buf[32];
  if (s < 0) s = 0;
  const long t = long(s + 0.5);
  if (t < 60) {
    std::snprintf(buf, sizeof buf, "%lds", t);
  } else if (t < 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  }
  return buf;
}

void Progress::draw(int64_t step, int epoch, double loss, double train_acc, bool force) {
  const double now = elapsed();
  if (!force && now - last_draw_ < 0.1) return;  // at most 10 redraws a second
  last_draw_ = now;
  const double frac = double(step) / double(total_);
  const int width = 24;
  const int filled = int(frac * width + 1e-9);
  char bar[width + 1];
  for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '-';
  bar[width] = 0;
  const std::string eta = step > 0 ? format_duration(now / step * (total_ - step)) : "?";
  char test[16] = "  -  ";
  if (last_test_ >= 0) std::snprintf(test, sizeof test, "%5.2f%%", 100 * last_test_);
  char info[256], line[512];
  std::snprintf(info, sizeof info, "epoch %2d/%d  loss %.4f  train %5.2f%%  test %s  left %s",
                epoch, epochs_, loss, 100 * train_acc, test, eta.c_str());
  std::snprintf(line, sizeof line, "%-20s [%s] %3.0f%% %s", label_.c_str(), bar, 100 * frac, info);
  // Fit the terminal's width (a wrapped line could not be redrawn in place): drop the bar
  // first, then cut the end.
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col < sizeof line) {
    if (std::strlen(line) >= ws.ws_col) {
      std::snprintf(line, sizeof line, "%s %3.0f%% %s", label_.c_str(), 100 * frac, info);
    }
    line[std::min<size_t>(std::strlen(line), ws.ws_col - 1)] = '\0';
  }
  std::printf("\r\033[K%s", line);
  std::fflush(stdout);
}

void Progress::step(int64_t step, int epoch, double loss, double train_acc) {
  if (tty_) draw(step, epoch, loss, train_acc, false);
}

void Progress::epoch_end(int epoch, double loss, double train_acc, double test_acc) {
  last_test_ = test_acc;
  const int64_t done = total_ * epoch / epochs_;
  if (tty_) {
    draw(done, epoch, loss, train_acc, true);
  } else {
    // Plain output: one line per epoch, but not more than one every 5 seconds (a student run
    // takes about a second; its "done" line says how it ended).
    const double now = elapsed();
    if (epoch < epochs_ && now - last_draw_ < 5.0) return;
    last_draw_ = now;
    std::printf("%-20s epoch %2d/%d  loss %.4f  train %5.2f%%  test %5.2f%%  elapsed %s  left %s\n",
                label_.c_str(), epoch, epochs_, loss, 100 * train_acc, 100 * test_acc,
                format_duration(now).c_str(),
                format_duration(now / epoch * (epochs_ - epoch)).c_str());
    std::fflush(stdout);
  }
}

void Progress::finish(double final_test_acc) {
  const std::string t = format_duration(elapsed());
  if (tty_) {
    std::printf("\r\033[K%-20s done: test accuracy %.2f%% in %s\n", label_.c_str(),
                100 * final_test_acc, t.c_str());
  } else {
    std::printf("%-20s done: test accuracy %.2f%% in %s\n", label_.c_str(), 100 * final_test_acc,
                t.c_str());
  }
  std::fflush(stdout);
}

}  // namespace trainer
