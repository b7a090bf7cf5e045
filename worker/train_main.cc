// gcl-train: the GCL training process, usable alone for local work.
//   gcl-train pretrain --spec FILE [--metrics FILE] [--output DIR] [--threads N]
//   gcl-train finetune --spec FILE [...]
//   gcl-train validate --spec FILE
//   gcl-train experiment --spec FILE [--output DIR] [--threads N]
//   gcl-train results --dir DIR [--csv FILE] [--plots DIR] [--per-class]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/trainer/experiment.h"
#include "worker/trainer/job_runner.h"
#include "worker/trainer/results.h"

namespace {

constexpr char kUsage[] =
    "usage: gcl-train <pretrain|finetune|validate|experiment> --spec FILE [--metrics FILE] "
    "[--output DIR] [--threads N] [--quiet]\n"
    "       gcl-train results --dir DIR [--csv FILE] [--plots DIR] [--per-class]\n"
    "  pretrain   GCL pre-training of a U-Net encoder (kind: pretrain)\n"
    "  finetune   fine-tune with labelled volumes, print the Dice table (kind: finetune)\n"
    "  validate   check a spec and its dataset without training\n"
    "  experiment variants x M_lab x repeats (kind: experiment); resumable, skips finished cells\n"
    "  results    an experiment's Dice table, table.csv and gnuplot PNGs (--plots -: none)\n";

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "gcl-train: %s\n", error.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("missing command");
  const std::string command = argv[1];
  if (command == "-h" || command == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  gcl::trainer::RunFlags flags;
  gcl::trainer::ResultsFlags results;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    const char* v = nullptr;
    if (arg == "--quiet") {
      flags.quiet = true;
    } else if (arg == "--per-class") {
      results.per_class = true;
    } else if (arg == "--dir" || arg == "--csv" || arg == "--plots") {
      if ((v = value(arg.c_str())) == nullptr) return Usage(arg + " needs a value");
      (arg == "--dir" ? results.dir : arg == "--csv" ? results.csv_path : results.plots_dir) = v;
    } else if (arg == "--spec" || arg == "--metrics" || arg == "--output" || arg == "--threads") {
      if ((v = value(arg.c_str())) == nullptr) return Usage(arg + " needs a value");
      if (arg == "--spec") flags.spec_path = v;
      if (arg == "--metrics") flags.metrics_path = v;
      if (arg == "--output") flags.output_dir = v;
      if (arg == "--threads") {
        char* end = nullptr;
        flags.threads = std::strtoll(v, &end, 10);
        if (*end != '\0' || flags.threads < 0) return Usage("--threads needs a number >= 0");
      }
    } else {
      return Usage("unknown argument '" + arg + "'");
    }
  }
  if (command == "results" && results.dir.empty()) return Usage("--dir DIR is required");
  if (command != "results" && flags.spec_path.empty()) return Usage("--spec FILE is required");

  absl::Status status;
  if (command == "results") {
    status = gcl::trainer::RunResultsCommand(results);
  } else if (command == "experiment") {
    status = gcl::trainer::RunExperimentCommand(flags);
  } else if (command == "pretrain") {
    status = gcl::trainer::RunPretrainCommand(flags);
  } else if (command == "finetune") {
    status = gcl::trainer::RunFinetuneCommand(flags);
  } else if (command == "validate") {
    status = gcl::trainer::RunValidateCommand(flags);
  } else {
    return Usage("unknown command '" + command + "'");
  }
  if (!status.ok()) {
    std::fprintf(stderr, "gcl-train %s: error: %s\n", command.c_str(),
                 std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
