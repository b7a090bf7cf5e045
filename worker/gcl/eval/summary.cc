#include "worker/gcl/eval/summary.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "gcl/base/json.h"

namespace gcl::core {
namespace {

constexpr char kEmptyMaskRule[] =
    "class absent from prediction and reference: Dice and HD95 null (skipped); "
    "absent from exactly one: Dice 0, HD95 null (skipped); means skip nulls";

double MeanOf(const std::vector<double>& v) {
  double s = 0;
  int64_t n = 0;
  for (double x : v) {
    if (std::isnan(x)) continue;
    s += x;
    ++n;
  }
  return n == 0 ? std::nan("") : s / static_cast<double>(n);
}

}  // namespace

std::string SummaryJson(const std::vector<VolumeScore>& cases,
                        const std::vector<std::string>& class_names, const std::string& hd95_unit) {
  size_t num_fg = class_names.empty() ? 0 : class_names.size() - 1;
  for (const auto& c : cases) num_fg = std::max(num_fg, c.classes.size());
  auto key = [](size_t fg_index) { return JsonQuote(std::to_string(fg_index + 1)); };

  std::ostringstream os;
  os << "{\n  \"metric_per_case\": [";
  for (size_t i = 0; i < cases.size(); ++i) {
    const VolumeScore& vs = cases[i];
    os << (i ? ",\n" : "\n") << "    {\"case\": " << JsonQuote(vs.case_id)
       << ", \"reference_file\": " << JsonQuote(vs.case_id) << ", \"metrics\": {";
    for (size_t c = 0; c < vs.classes.size(); ++c) {
      const ClassScore& cs = vs.classes[c];
      os << (c ? ", " : "") << key(c)
         << ": {\"Dice\": " << (cs.dice_valid ? JsonNumberExact(cs.dice) : "null")
         << ", \"HD95\": " << (cs.hd95_valid ? JsonNumberExact(cs.hd95) : "null")
         << ", \"n_ref\": " << cs.n_ref << ", \"n_pred\": " << cs.n_pred
         << ", \"TP\": " << cs.n_intersection << ", \"FP\": " << cs.n_pred - cs.n_intersection
         << ", \"FN\": " << cs.n_ref - cs.n_intersection << "}";
    }
    os << "}, \"mean_dice\": " << JsonNumberExact(vs.mean_dice)
       << ", \"mean_hd95\": " << JsonNumberExact(vs.mean_hd95) << "}";
  }
  os << (cases.empty() ? "]" : "\n  ]") << ",\n  \"mean\": {";

  std::vector<double> class_dice, class_hd;
  for (size_t c = 0; c < num_fg; ++c) {
    std::vector<double> d, h;
    for (const auto& vs : cases) {
      if (vs.classes.size() <= c) continue;
      const ClassScore& cs = vs.classes[c];
      if (cs.dice_valid) d.push_back(cs.dice);
      if (cs.hd95_valid) h.push_back(cs.hd95);
    }
    class_dice.push_back(MeanOf(d));
    class_hd.push_back(MeanOf(h));
    os << (c ? ",\n" : "\n") << "    " << key(c) << ": {\"Dice\": " << JsonNumberExact(class_dice.back())
       << ", \"HD95\": " << JsonNumberExact(class_hd.back()) << ", \"n_cases_dice\": " << d.size()
       << ", \"n_cases_hd95\": " << h.size() << "}";
  }
  os << (num_fg ? "\n  }" : "}");

  std::vector<double> vol_dice, vol_hd;
  for (const auto& vs : cases) {
    vol_dice.push_back(vs.mean_dice);
    vol_hd.push_back(vs.mean_hd95);
  }
  os << ",\n  \"foreground_mean\": {\"Dice\": " << JsonNumberExact(MeanOf(class_dice))
     << ", \"HD95\": " << JsonNumberExact(MeanOf(class_hd)) << "}";
  os << ",\n  \"volume_mean\": {\"Dice\": " << JsonNumberExact(MeanOf(vol_dice))
     << ", \"HD95\": " << JsonNumberExact(MeanOf(vol_hd)) << "}";
  os << ",\n  \"class_names\": [";
  for (size_t c = 0; c < class_names.size(); ++c) {
    os << (c ? ", " : "") << JsonQuote(class_names[c]);
  }
  for (size_t c = class_names.size(); c < num_fg + 1; ++c) {
    os << (c ? ", " : "") << JsonQuote("class" + std::to_string(c));
  }
  os << "],\n  \"hd95_unit\": " << JsonQuote(hd95_unit) << ",\n  \"num_cases\": " << cases.size()
     << ",\n  \"empty_mask_rule\": " << JsonQuote(kEmptyMaskRule) << "\n}\n";
  return os.str();
}

}  // namespace gcl::core
