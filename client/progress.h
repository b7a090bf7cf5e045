// The progress line of `gclctl watch`: state, a bar, step/total, loss, step
// time, ETA and the latest gradient-conflict figures, taken from the
// trainer's metrics (architecture doc section 5; names as written by
// worker/gcl/train/pretrain.cc):
//   gcl_grad_cosine{pair, stage="pre"|"post"}   cosine of two meta labels'
//                                               gradients before/after mitigation
//   gcl_grad_conflicts_total{pair, kind="none"|"slight"|"conflict"}
//                                               cumulative counts per pair
#pragma once

#include <string>

#include "gcl/v1/job.pb.h"

namespace gcl::client {

// Gradient-conflict figures of one metrics point.
struct ConflictFigures {
  bool has_cosine = false;  // any gcl_grad_cosine{stage="pre"} sample
  std::string worst_pair;   // the pair with the lowest pre-mitigation cosine
  double worst_pre = 0;
  bool has_post = false;
  double worst_post = 0;      // the same pair after mitigation
  int pairs = 0;              // pairs with a pre cosine
  int conflicting_pairs = 0;  // of those, pairs with a negative pre cosine
  bool has_share = false;     // any gcl_grad_conflicts_total sample
  double conflict_share = 0;  // kind="conflict" / all kinds, over every pair (0..1)
};

ConflictFigures ConflictsOf(const gcl::v1::MetricsPoint& point);

// "conflicts 20.0% of checks, 1/2 pairs opposed, worst patient|phase cos -0.20 -> 0.10";
// "" when the point had no conflict figures.
std::string ConflictText(const ConflictFigures& figures);

// Seconds left: step_seconds x remaining steps, else the trainer's
// eta_seconds; negative when unknown.
double EtaSeconds(const gcl::v1::Progress& progress);

// "RUNNING pretrain [#####-----]  50% step 5/10  loss 1.2345  0.20 s/step  ETA 1s  <conflicts>".
// bar_width 0 leaves the bar out.
std::string ProgressLine(const std::string& state, const gcl::v1::Progress& progress,
                         const ConflictFigures& conflicts, int bar_width = 20);

}  // namespace gcl::client
