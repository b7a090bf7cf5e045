#include "worker/gcl/data/msd.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"
#include "worker/gcl/data/nifti_io.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;

// {"0": "a", "1": "b"} -> {"a", "b"}; keys must be 0..K-1.
absl::StatusOr<std::vector<std::string>> IndexedNames(const JsonValue& obj, const std::string& what,
                                                      const std::string& path) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", what, "\" is not an object"));
  }
  std::map<long, std::string> byindex;
  for (const auto& [k, v] : obj.fields()) {
    char* end = nullptr;
    const long idx = std::strtol(k.c_str(), &end, 10);
    if (k.empty() || *end != '\0' || idx < 0 || !v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", what, "\" key \"", k, "\" is not an index"));
    }
    byindex[idx] = v.string_value();
  }
  std::vector<std::string> out;
  for (const auto& [idx, name] : byindex) {
    if (idx != static_cast<long>(out.size())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"", what, "\" keys are not 0..", byindex.size() - 1));
    }
    out.push_back(name);
  }
  return out;
}

std::string JoinRelative(const fs::path& root, const std::string& rel) {
  fs::path p(rel);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (root / p).lexically_normal().string();
}

}  // namespace

absl::StatusOr<MsdIndex> ReadMsdIndex(const std::string& root) {
  const fs::path json_path = fs::path(root) / "dataset.json";
  const std::string path = json_path.string();
  std::ifstream in(json_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  GCL_ASSIGN_OR_RETURN(const JsonValue doc, ParseJson(text, path));
  if (!doc.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  MsdIndex index;
  const JsonValue* labels = doc.Find("labels");
  if (labels == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": no \"labels\""));
  GCL_ASSIGN_OR_RETURN(index.class_names, IndexedNames(*labels, "labels", path));
  if (const JsonValue* modality = doc.Find("modality"); modality != nullptr) {
    GCL_ASSIGN_OR_RETURN(index.modalities, IndexedNames(*modality, "modality", path));
  }
  const JsonValue* training = doc.Find("training");
  if (training == nullptr || !training->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no \"training\" array"));
  }
  for (size_t i = 0; i < training->items().size(); ++i) {
    const JsonValue& entry = training->items()[i];
    const JsonValue* image = entry.Find("image");
    if (image == nullptr || !image->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": training[", i, "] has no \"image\" string"));
    }
    MsdCase c;
    c.image = JoinRelative(root, image->string_value());
    c.id = NiftiStem(c.image);
    if (const JsonValue* label = entry.Find("label"); label != nullptr && label->is_string()) {
      c.label = JoinRelative(root, label->string_value());
    }
    index.cases.push_back(std::move(c));
  }
  std::sort(index.cases.begin(), index.cases.end(),
            [](const MsdCase& a, const MsdCase& b) { return a.id < b.id; });
  return index;
}

}  // namespace gcl::core
