#include "worker/agent/run_results.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"

namespace gcl::agent {
namespace {
namespace fs = std::filesystem;

absl::StatusOr<JsonValue> ReadJsonFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat(path.string(), ": cannot read"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<JsonValue> v = ParseJson(text.str(), path.string());
  if (!v.ok()) return absl::DataLossError(v.status().message());
  return v;
}

absl::Status Malformed(const fs::path& path, const char* what) {
  return absl::DataLossError(absl::StrCat(path.string(), ": ", what));
}

}  // namespace

absl::StatusOr<std::vector<gcl::v1::CaseResult>> ReadCaseResults(const std::string& out_dir,
                                                                const std::string& variant) {
  std::vector<fs::path> runs;
  std::error_code ec;
  for (auto it = fs::directory_iterator(out_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (fs::exists(it->path() / "finetune.json") && fs::exists(it->path() / "summary.json")) {
      runs.push_back(it->path());
    }
  }
  std::sort(runs.begin(), runs.end());
  std::vector<gcl::v1::CaseResult> out;
  for (const fs::path& run : runs) {
    const fs::path info_path = run / "finetune.json", summary_path = run / "summary.json";
    GCL_ASSIGN_OR_RETURN(JsonValue info, ReadJsonFile(info_path));
    GCL_ASSIGN_OR_RETURN(JsonValue summary, ReadJsonFile(summary_path));
    const JsonValue* m_lab = info.Find("labeled_volumes");
    const JsonValue* repeat = info.Find("repeat");
    const JsonValue* names = info.Find("class_names");
    if (m_lab == nullptr || !m_lab->is_integer() || repeat == nullptr || !repeat->is_integer() ||
        names == nullptr || !names->is_array()) {
      return Malformed(info_path, "needs integer labeled_volumes and repeat and a class_names list");
    }
    const JsonValue* cases = summary.Find("metric_per_case");
    if (cases == nullptr || !cases->is_array()) return Malformed(summary_path, "no metric_per_case list");
    gcl::v1::CaseResult base;
    base.set_variant(variant);
    base.set_labeled_volumes(m_lab->int_value());
    base.set_repeat(static_cast<int32_t>(repeat->int_value()));
    for (const JsonValue& c : cases->items()) {
      const JsonValue* id = c.Find("case");
      const JsonValue* metrics = c.Find("metrics");
      if (id == nullptr || !id->is_string() || metrics == nullptr || !metrics->is_object()) {
        return Malformed(summary_path, "a case without \"case\" or \"metrics\"");
      }
      gcl::v1::CaseResult mean = base;
      mean.set_case_id(id->string_value());
      mean.set_class_name("mean");
      if (const JsonValue* d = c.Find("mean_dice"); d != nullptr && d->is_number()) {
        mean.set_dice(d->number_value());
        if (const JsonValue* h = c.Find("mean_hd95"); h != nullptr && h->is_number()) {
          mean.set_hd95(h->number_value());
        }
        out.push_back(mean);
      }
      for (const auto& [key, m] : metrics->fields()) {
        // Keys are label values "1", "2", ... indexing class_names.
        const size_t label = static_cast<size_t>(std::atoi(key.c_str()));
        const JsonValue* dice = m.Find("Dice");
        if (dice == nullptr || !dice->is_number()) continue;
        gcl::v1::CaseResult r = base;
        r.set_case_id(id->string_value());
        r.set_class_name(label < names->items().size() ? names->items()[label].string_value() : key);
        r.set_dice(dice->number_value());
        if (const JsonValue* h = m.Find("HD95"); h != nullptr && h->is_number()) r.set_hd95(h->number_value());
        if (const JsonValue* n = m.Find("n_ref"); n != nullptr) r.set_n_ref(n->int_value());
        if (const JsonValue* n = m.Find("n_pred"); n != nullptr) r.set_n_pred(n->int_value());
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

}  // namespace gcl::agent
