#include "worker/trainer/progress.h"

#include <unistd.h>

#include <cmath>

#include "absl/strings/str_format.h"

namespace gcl::trainer {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

ProgressLine::ProgressLine(std::FILE* out, std::string prefix, int64_t every)
    : out_(out), prefix_(std::move(prefix)), every_(every > 0 ? every : 1),
      tty_(::isatty(::fileno(out)) != 0) {}

void ProgressLine::Update(int64_t step, int64_t total, double loss, double step_seconds) {
  // The first steps are slow (allocator warm-up); an EMA keeps the ETA steady.
  ema_seconds_ = ema_seconds_ == 0 ? step_seconds : 0.9 * ema_seconds_ + 0.1 * step_seconds;
  const bool last = step == total;
  if (!tty_ && step % every_ != 0 && !last) return;
  const std::string line = absl::StrFormat(
      "%s step %d/%d  loss %.4f  %.3f s/step  ETA %s", prefix_, step, total, loss, ema_seconds_,
      FormatDuration(ema_seconds_ * static_cast<double>(total - step)));
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    dirty_ = true;
    if (last) Finish();
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void ProgressLine::Finish() {
  if (dirty_) std::fprintf(out_, "\n");
  dirty_ = false;
  std::fflush(out_);
}

}  // namespace gcl::trainer
