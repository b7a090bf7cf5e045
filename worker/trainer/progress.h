// A one-line progress display for gcl-train: step, loss, step time and ETA.
// On a terminal the line is redrawn in place; otherwise (CI, logs, pipes) a
// plain line is printed every `every` steps.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace gcl::trainer {

class ProgressLine {
 public:
  ProgressLine(std::FILE* out, std::string prefix, int64_t every);
  void Update(int64_t step, int64_t total, double loss, double step_seconds);
  // Ends a redrawn line so later output starts on a fresh line.
  void Finish();

 private:
  std::FILE* out_;
  std::string prefix_;
  int64_t every_;
  bool tty_;
  double ema_seconds_ = 0;  // smoothed step time for the ETA
  bool dirty_ = false;
};

// "1h02m", "6m44s", "12s".
std::string FormatDuration(double seconds);

}  // namespace gcl::trainer
