// `gcl-train experiment`: runs a kind-experiment spec locally, i.e. the
// ablation of algorithm spec sections 9-10: for every variant in
// experiment.variants one pre-training (none for random_init; full_frozen
// shares full's), then fine-tuning for every M_lab in labeled_volumes x
// repeats from that encoder. The dataset is loaded once. Repeat r uses the
// same FinetuneOptions (seed, repeat, so the same labelled cases and
// initialisation streams) in every variant: differences between variants are
// paired.
//
// Output (DIR = --output, else output.dir, else runs/<name>):
//   DIR/experiment.json, DIR/cells.csv             (see results.h)
//   DIR/<variant>/pretrain/                         the pre-training run folder
//                                                  (+ "done" marker when finished)
//   DIR/<variant>/finetune/m<M>-r<r>/               RunFinetune's output
// Resumable: a cell with a row in cells.csv is skipped; one whose
// finetune.json exists but whose row is missing gets its row back from that
// file; an unfinished pre-training resumes from its newest checkpoint and a
// finished one ("done" marker) is not rerun.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gcl/v1/spec.pb.h"
#include "gcl/spec/experiment_children.h"
#include "worker/trainer/job_runner.h"

namespace gcl::trainer {

// Uses flags.spec_path, output_dir, threads (overrides both
// experiment.pretrain.threads and experiment.finetune.threads) and quiet.
// Prints one line per cell (run / skipped) and the Dice table at the end.
absl::Status RunExperimentCommand(const RunFlags& flags);

}  // namespace gcl::trainer
