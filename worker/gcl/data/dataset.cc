#include "worker/gcl/data/dataset.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"
#include "worker/gcl/data/acdc_h5.h"
#include "worker/gcl/data/msd.h"
#include "worker/gcl/data/nifti_io.h"
#include "worker/gcl/data/preprocess.h"
#include "worker/gcl/data/slice_cache.h"
#include "worker/gcl/data/synthetic.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;

enum Split { kTrain = 0, kVal = 1, kTest = 2 };

// One volume to read; reading is deferred so a cache hit decodes nothing.
struct Source {
  std::string id;
  std::string case_id;
  int split = kTrain;
  std::vector<std::string> files;  // fingerprinted for the cache key
  std::function<absl::StatusOr<Volume>()> read;
};

struct Plan {
  std::vector<Source> sources;
  std::vector<std::string> key_parts;    // list contents, class names, ...
  std::vector<std::string> class_names;  // empty: derived from label values (nifti)
};

std::string ListPath(const DatasetOptions& o, const std::string& name) {
  return (fs::path(o.path) / name).string();
}

// Last test_cases cases (sorted) -> test, the val_cases before them -> val.
absl::Status SplitByCases(const DatasetOptions& o, std::vector<Source>* sources) {
  std::set<std::string> case_set;
  for (const Source& s : *sources) case_set.insert(s.case_id);
  const std::vector<std::string> cases(case_set.begin(), case_set.end());
  const int64_t n = static_cast<int64_t>(cases.size());
  if (o.val_cases < 0 || o.test_cases < 0 || n <= o.val_cases + o.test_cases) {
    return absl::InvalidArgumentError(absl::StrCat(o.path.empty() ? o.format : o.path, ": ", n,
                                                   " cases cannot hold val_cases = ", o.val_cases,
                                                   " and test_cases = ", o.test_cases, " plus a training case"));
  }
  std::map<std::string, int> split_of;
  for (int64_t i = 0; i < n; ++i) {
    split_of[cases[i]] = i >= n - o.test_cases ? kTest : i >= n - o.test_cases - o.val_cases ? kVal : kTrain;
  }
  for (Source& s : *sources) s.split = split_of[s.case_id];
  return absl::OkStatus();
}

// nifti / msd: lists when val or test list exists, else SplitByCases.
absl::Status SplitOptionalLists(const DatasetOptions& o, Plan* plan) {
  std::error_code ec;
  const std::string val = ListPath(o, o.val_list), test = ListPath(o, o.test_list), train = ListPath(o, o.train_list);
  const bool have_val = !o.val_list.empty() && fs::is_regular_file(val, ec);
  const bool have_test = !o.test_list.empty() && fs::is_regular_file(test, ec);
  if (!have_val && !have_test) return SplitByCases(o, &plan->sources);
  std::map<std::string, Source*> by_id;
  for (Source& s : plan->sources) {
    s.split = -1;
    by_id[s.id] = &s;
  }
  const bool have_train = !o.train_list.empty() && fs::is_regular_file(train, ec);
  for (auto [file, present, split] : {std::make_tuple(train, have_train, kTrain), std::make_tuple(val, have_val, kVal),
                                      std::make_tuple(test, have_test, kTest)}) {
    if (!present) continue;
    GCL_ASSIGN_OR_RETURN(std::vector<std::string> ids, ReadIdList(file));
    plan->key_parts.push_back(absl::StrCat(file, "=", absl::StrJoin(ids, ",")));
    for (const std::string& id : ids) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        return absl::NotFoundError(absl::StrCat(file, ": entry \"", id, "\" has no image file under ", o.path));
      }
      it->second->split = split;
    }
  }
  std::vector<Source> kept;
  for (Source& s : plan->sources) {
    if (s.split < 0 && !have_train) s.split = kTrain;  // not in val/test: train
    if (s.split >= 0) kept.push_back(std::move(s));
  }
  plan->sources = std::move(kept);
  return absl::OkStatus();
}

absl::StatusOr<Plan> PlanAcdcH5(const DatasetOptions& o) {
  Plan plan;
  plan.class_names = AcdcClassNames();
  const std::string data_dir = (fs::path(o.path) / "data").string();
  std::vector<std::vector<std::string>> lists(3);
  const std::string names[3] = {o.train_list, o.val_list, o.test_list};
  for (int split = 0; split < 3; ++split) {
    GCL_ASSIGN_OR_RETURN(lists[split], ReadIdList(ListPath(o, names[split])));
    plan.key_parts.push_back(absl::StrCat(names[split], "=", absl::StrJoin(lists[split], ",")));
  }
  GCL_ASSIGN_OR_RETURN(auto index, IndexAcdcDataDir(data_dir));
  for (int split = 0; split < 3; ++split) {
    for (const std::string& id : lists[split]) {
      auto it = index.find(id);
      if (it == index.end()) {
        return absl::NotFoundError(absl::StrCat(ListPath(o, names[split]), ": entry \"", id, "\" has neither ",
                                                data_dir, "/", id, ".h5 nor ", id, "_slice_K.h5 files"));
      }
      Source s;
      s.id = id;
      s.split = split;
      AcdcVolumeFiles files = it->second;
      s.files = files.volume_file.empty() ? files.slices : std::vector<std::string>{files.volume_file};
      s.read = [files]() { return ReadAcdcVolume(files); };
      plan.sources.push_back(std::move(s));
    }
  }
  return plan;
}

absl::StatusOr<Plan> PlanNifti(const DatasetOptions& o) {
  Plan plan;
  GCL_ASSIGN_OR_RETURN(std::vector<NiftiPair> pairs, FindNiftiPairs(o.path));
  for (const NiftiPair& p : pairs) {
    Source s;
    s.id = p.id;
    int phase;
    CaseAndPhaseFromId(p.id, &s.case_id, &phase);
    s.files = {p.image};
    if (!p.label.empty()) s.files.push_back(p.label);
    s.read = [p]() { return ReadNiftiVolume(p.image, p.label, ExtraDims::kError); };
    plan.sources.push_back(std::move(s));
  }
  GCL_RETURN_IF_ERROR(SplitOptionalLists(o, &plan));
  return plan;
}

absl::StatusOr<Plan> PlanMsd(const DatasetOptions& o) {
  Plan plan;
  GCL_ASSIGN_OR_RETURN(MsdIndex index, ReadMsdIndex(o.path));
  plan.class_names = index.class_names;
  plan.key_parts.push_back(absl::StrJoin(index.class_names, ","));
  const std::string json = (fs::path(o.path) / "dataset.json").string();
  for (const MsdCase& c : index.cases) {
    Source s;
    s.id = c.id;
    int phase;
    CaseAndPhaseFromId(c.id, &s.case_id, &phase);
    s.files = {json, c.image};
    if (!c.label.empty()) s.files.push_back(c.label);
    s.read = [c]() { return ReadNiftiVolume(c.image, c.label, ExtraDims::kFirstChannel); };
    plan.sources.push_back(std::move(s));
  }
  GCL_RETURN_IF_ERROR(SplitOptionalLists(o, &plan));
  return plan;
}

std::vector<Volume>* SplitVector(Dataset* ds, int split) {
  return split == kTrain ? &ds->train : split == kVal ? &ds->val : &ds->test;
}

void FinishPhase(Dataset* ds) {
  size_t n = 0;
  bool all = true;
  for (auto* split : {&ds->train, &ds->val, &ds->test}) {
    for (const Volume& v : *split) {
      ++n;
      all = all && (v.phase == 0 || v.phase == 1);
    }
  }
  ds->has_phase = n > 0 && all;
}

// nifti: class names from the label values; values that are not 0..K-1 are
// remapped in sorted order (0 stays background).
absl::Status AssignNiftiClasses(Dataset* ds) {
  std::set<int64_t> values = {0};
  for (auto* split : {&ds->train, &ds->val, &ds->test}) {
    for (const Volume& v : *split) {
      if (!v.label.defined()) continue;
      at::Tensor u = std::get<0>(at::_unique(v.label.reshape({-1})));
      for (int64_t i = 0; i < u.numel(); ++i) {
        const int64_t value = u[i].item<int64_t>();
        if (value < 0) return absl::InvalidArgumentError(absl::StrCat(v.source, ": negative label value ", value));
        values.insert(value);
      }
    }
  }
  const std::vector<int64_t> sorted(values.begin(), values.end());
  ds->class_names = {"background"};
  for (size_t i = 1; i < sorted.size(); ++i) ds->class_names.push_back(absl::StrCat("label_", sorted[i]));
  if (sorted.back() == static_cast<int64_t>(sorted.size()) - 1) return absl::OkStatus();
  at::Tensor lut = at::zeros({sorted.back() + 1}, at::kLong);
  for (size_t i = 0; i < sorted.size(); ++i) lut[sorted[i]] = static_cast<int64_t>(i);
  for (auto* split : {&ds->train, &ds->val, &ds->test}) {
    for (Volume& v : *split) {
      if (v.label.defined()) v.label = lut.index_select(0, v.label.reshape({-1})).reshape(v.label.sizes());
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLabelRange(const Dataset& ds) {
  const int64_t k = ds.num_classes();
  for (const auto* split : {&ds.train, &ds.val, &ds.test}) {
    for (const Volume& v : *split) {
      if (!v.label.defined() || v.label.numel() == 0) continue;
      const int64_t lo = v.label.min().item<int64_t>(), hi = v.label.max().item<int64_t>();
      if (lo < 0 || hi >= k) {
        return absl::InvalidArgumentError(absl::StrCat(v.source, ": label values [", lo, ", ", hi,
                                                       "] outside 0..", k - 1, " (", k, " classes)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> ReadPlan(const DatasetOptions& o, Plan& plan) {
  Dataset ds;
  for (Source& s : plan.sources) {
    GCL_ASSIGN_OR_RETURN(Volume raw, s.read());
    Volume v;
    GCL_RETURN_IF_ERROR(gcl::CatchToStatus(raw.source, [&]() -> absl::Status {
      v = PreprocessVolume(raw, o.image_size);
      return absl::OkStatus();
    }));
    SplitVector(&ds, s.split)->push_back(std::move(v));
  }
  if (plan.class_names.empty()) {
    GCL_RETURN_IF_ERROR(AssignNiftiClasses(&ds));
  } else {
    ds.class_names = plan.class_names;
  }
  GCL_RETURN_IF_ERROR(CheckLabelRange(ds));
  FinishPhase(&ds);
  return ds;
}

absl::StatusOr<std::string> CacheKey(const DatasetOptions& o, const Plan& plan) {
  std::error_code ec;
  std::vector<std::string> parts = {o.format, fs::absolute(o.path, ec).lexically_normal().string(),
                                    absl::StrCat("image_size=", o.image_size),
                                    absl::StrCat("val_cases=", o.val_cases, ",test_cases=", o.test_cases)};
  parts.insert(parts.end(), plan.key_parts.begin(), plan.key_parts.end());
  for (const Source& s : plan.sources) {
    parts.push_back(absl::StrCat("volume ", s.id, " split ", s.split));
    for (const std::string& f : s.files) {
      GCL_ASSIGN_OR_RETURN(std::string fp, FileFingerprint(f));
      parts.push_back(std::move(fp));
    }
  }
  return SliceCacheKey(parts);
}

absl::StatusOr<Dataset> LoadSynthetic(const DatasetOptions& o) {
  std::vector<Volume> volumes;
  GCL_RETURN_IF_ERROR(gcl::CatchToStatus("synthetic dataset", [&]() -> absl::Status {
    volumes = GenerateSyntheticVolumes(o.synthetic);
    return absl::OkStatus();
  }));
  Plan plan;
  plan.class_names = {"background", "RV", "Myo", "LV"};
  for (Volume& v : volumes) {
    Source s;
    s.id = v.id;
    s.case_id = v.case_id;
    auto shared = std::make_shared<Volume>(std::move(v));
    s.read = [shared]() -> absl::StatusOr<Volume> { return std::move(*shared); };
    plan.sources.push_back(std::move(s));
  }
  GCL_RETURN_IF_ERROR(SplitByCases(o, &plan.sources));
  return ReadPlan(o, plan);
}

}  // namespace

absl::StatusOr<Dataset> LoadDataset(const DatasetOptions& o) {
  if (o.image_size < 1) return absl::InvalidArgumentError(absl::StrCat("image_size must be >= 1, got ", o.image_size));
  if (o.format == "synthetic") return LoadSynthetic(o);
  Plan plan;
  if (o.format == "acdc-h5") {
    GCL_ASSIGN_OR_RETURN(plan, PlanAcdcH5(o));
  } else if (o.format == "nifti") {
    GCL_ASSIGN_OR_RETURN(plan, PlanNifti(o));
  } else if (o.format == "msd") {
    GCL_ASSIGN_OR_RETURN(plan, PlanMsd(o));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown dataset format \"", o.format, "\" (acdc-h5 | nifti | msd | synthetic)"));
  }
  if (plan.sources.empty()) return absl::NotFoundError(absl::StrCat(o.path, ": no volumes"));
  if (o.cache_dir.empty()) return ReadPlan(o, plan);

  GCL_ASSIGN_OR_RETURN(std::string key, CacheKey(o, plan));
  const std::string cache_path = SliceCachePath(o.cache_dir, key);
  absl::StatusOr<Dataset> cached = LoadDatasetCache(cache_path);
  if (cached.ok()) return cached;
  if (!absl::IsNotFound(cached.status())) {
    // A corrupt entry is a cache miss, not an error: rebuild and overwrite it.
    std::fprintf(stderr, "gcl: ignoring slice cache entry: %s\n", std::string(cached.status().message()).c_str());
  }
  GCL_ASSIGN_OR_RETURN(Dataset ds, ReadPlan(o, plan));
  if (absl::Status s = SaveDatasetCache(cache_path, ds); !s.ok()) {
    std::fprintf(stderr, "gcl: could not write slice cache: %s\n", std::string(s.message()).c_str());
  }
  return ds;
}

}  // namespace gcl::core
