#include "worker/trainer/results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"

namespace gcl::trainer {
namespace fs = std::filesystem;

namespace {

constexpr int kFixedColumns = 11;  // before the dice_<class> columns

std::string Num(double v) {
  if (!std::isfinite(v)) return "nan";
  return absl::StrFormat("%.6g", v);
}

double ParseNum(const std::string& s) {
  double v = 0;
  if (s.empty() || !absl::SimpleAtod(s, &v)) return std::nan("");
  return v;
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path.string(), ": write failed"));
  return absl::OkStatus();
}

// A JSON object, or kInvalidArgument naming `where` (and the byte offset of a syntax error).
absl::StatusOr<JsonValue> ParseJsonObject(std::string_view text, const std::string& where) {
  GCL_ASSIGN_OR_RETURN(JsonValue doc, ParseJson(text, where));
  if (!doc.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  return doc;
}

struct Stats {
  double mean = std::nan("");
  double std = std::nan("");
  int64_t n = 0;
};

// Mean and sample standard deviation (n - 1; 0 for one value) of the finite values.
Stats Summarize(const std::vector<double>& values) {
  Stats s;
  std::vector<double> v;
  for (double x : values) {
    if (std::isfinite(x)) v.push_back(x);
  }
  s.n = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.std = v.size() > 1 ? std::sqrt(ss / (v.size() - 1)) : 0.0;
  return s;
}

std::string FormatCell(const Stats& s, bool sign = false) {
  if (s.n == 0) return "-";
  return absl::StrFormat(sign ? "%+.3f ± %.3f (n=%d)" : "%.3f ± %.3f (n=%d)", s.mean, s.std, s.n);
}

// Pads to `width` display columns ("±" is two bytes, one column).
std::string Pad(const std::string& s, size_t width) {
  size_t cols = 0;
  for (unsigned char c : s) cols += (c & 0xC0) != 0x80;
  return cols >= width ? s + " " : s + std::string(width - cols, ' ');
}

// ---- pre-training metrics -------------------------------------------------

using Series = std::vector<std::pair<double, double>>;  // (step, value)

struct PretrainCurves {
  std::string name;  // variant label in the plots
  std::map<std::string, Series> cos_pre, cos_post;  // by pair
  std::map<std::string, Series> share;              // conflicting share by pair
  Series pace;                                      // gcl_gradfilter_selected
};

std::string Label(const JsonValue& sample, const std::string& key) {
  const JsonValue* labels = sample.Find("labels");
  const JsonValue* l = labels == nullptr ? nullptr : labels->Find(key);
  return l == nullptr ? "" : l->string_value();
}

absl::StatusOr<PretrainCurves> ReadPretrainMetrics(const std::string& path, const std::string& name) {
  GCL_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  PretrainCurves c;
  c.name = name;
  // Conflict counters are totals since the start: the share per logging
  // window is the delta of "conflict" over the delta of all kinds.
  std::map<std::string, std::map<std::string, double>> last_totals;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    auto doc = ParseJsonObject(std::string_view(line.data(), line.size()),
                               absl::StrCat(path, ":", line_no));
    if (!doc.ok()) continue;  // a torn last line of a killed run
    const JsonValue* step_v = doc->Find("step");
    const JsonValue* samples = doc->Find("samples");
    if (step_v == nullptr || samples == nullptr) continue;
    const double step = step_v->number_value();
    std::map<std::string, std::map<std::string, double>> totals;
    for (const JsonValue& s : samples->items()) {
      const JsonValue* n = s.Find("name");
      const JsonValue* v = s.Find("value");
      if (n == nullptr || v == nullptr || !v->is_number()) continue;
      const std::string& metric = n->string_value();
      const double value = v->number_value();
      if (metric == "gcl_grad_cosine") {
        const std::string stage = Label(s, "stage");
        (stage == "pre" ? c.cos_pre : c.cos_post)[Label(s, "pair")].push_back({step, value});
      } else if (metric == "gcl_grad_conflicts_total") {
        totals[Label(s, "pair")][Label(s, "kind")] = value;
      } else if (metric == "gcl_gradfilter_selected") {
        c.pace.push_back({step, value});
      }
    }
    for (const auto& [pair, kinds] : totals) {
      double all = 0, prev_all = 0;
      auto& prev = last_totals[pair];
      for (const auto& [kind, v] : kinds) {
        all += v;
        prev_all += prev[kind];
      }
      const double conflict = kinds.count("conflict") ? kinds.at("conflict") : 0;
      const double d_all = all - prev_all, d_conflict = conflict - prev["conflict"];
      // A resumed run may restart its counters: then the window is the totals.
      if (d_all > 0 && d_conflict >= 0) {
        c.share[pair].push_back({step, d_conflict / d_all});
      } else if (all > 0) {
        c.share[pair].push_back({step, conflict / all});
      }
      prev = kinds;
    }
  }
  return c;
}

// ---- gnuplot --------------------------------------------------------------

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

std::string TerminalPreamble(const fs::path& png, int width, int height) {
  return absl::StrFormat(
      "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
      "  set terminal pngcairo size %d,%d noenhanced font \"sans,10\"\n"
      "} else {\n"
      "  set terminal png size %d,%d noenhanced\n"
      "}\n"
      "set output %s\nreset\nset grid\n",
      width, height, width, height, Quote(png.string()));
}

// One data block per series ("index i" in gnuplot) and its plot clause.
struct SeriesPlot {
  std::string data;
  std::vector<std::string> clauses;
  int blocks = 0;

  void Add(const Series& s, const fs::path& file, const std::string& style) {
    for (const auto& [x, y] : s) absl::StrAppend(&data, Num(x), " ", Num(y), "\n");
    absl::StrAppend(&data, "\n\n");
    clauses.push_back(absl::StrCat(Quote(file.string()), " index ", blocks, " using 1:2 ", style));
    ++blocks;
  }
};

bool GnuplotAvailable() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

}  // namespace

std::string CellsCsvHeader(const std::vector<std::string>& classes) {
  std::string h =
      "variant,m_lab,repeat,mean_dice,mean_hd95,hd95_unit,best_val_dice,best_step,"
      "accumulated_dice,seconds,labeled_ids";
  for (const auto& c : classes) absl::StrAppend(&h, ",dice_", c);
  return h;
}

std::string CellsCsvLine(const CellRow& r) {
  std::string s = absl::StrCat(r.variant, ",", r.m_lab, ",", r.repeat, ",", Num(r.mean_dice), ",",
                               Num(r.mean_hd95), ",", r.hd95_unit, ",", Num(r.best_val_dice), ",",
                               r.best_step, ",", Num(r.accumulated_dice), ",",
                               std::isfinite(r.seconds) ? absl::StrFormat("%.1f", r.seconds) : "nan",
                               ",", r.labeled_ids);
  for (double d : r.per_class_dice) absl::StrAppend(&s, ",", Num(d));
  return s;
}

absl::StatusOr<std::vector<CellRow>> ReadCellsCsv(const std::string& path,
                                                  std::vector<std::string>* classes) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  std::string line;
  if (!std::getline(in, line)) return absl::InvalidArgumentError(absl::StrCat(path, ": empty"));
  std::vector<std::string> head = absl::StrSplit(line, ',');
  if (head.size() < kFixedColumns || head[0] != "variant") {
    return absl::InvalidArgumentError(absl::StrCat(path, ":1: not a cells.csv header"));
  }
  classes->clear();
  for (size_t i = kFixedColumns; i < head.size(); ++i) {
    classes->push_back(head[i].rfind("dice_", 0) == 0 ? head[i].substr(5) : head[i]);
  }
  std::vector<CellRow> rows;
  int line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::vector<std::string> f = absl::StrSplit(line, ',');
    CellRow r;
    if (f.size() != head.size() || !absl::SimpleAtoi(f[1], &r.m_lab) ||
        !absl::SimpleAtoi(f[2], &r.repeat)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": expected ", head.size(), " columns"));
    }
    r.variant = f[0];
    r.mean_dice = ParseNum(f[3]);
    r.mean_hd95 = ParseNum(f[4]);
    r.hd95_unit = f[5];
    r.best_val_dice = ParseNum(f[6]);
    r.best_step = static_cast<int64_t>(ParseNum(f[7]));
    r.accumulated_dice = ParseNum(f[8]);
    r.seconds = ParseNum(f[9]);
    r.labeled_ids = f[10];
    for (size_t i = kFixedColumns; i < f.size(); ++i) r.per_class_dice.push_back(ParseNum(f[i]));
    rows.push_back(std::move(r));
  }
  return rows;
}

absl::Status AppendCellRow(const std::string& path, const std::vector<std::string>& classes,
                           const CellRow& row) {
  std::string text;
  if (fs::exists(path)) {
    GCL_ASSIGN_OR_RETURN(text, ReadText(path));
    if (!text.empty() && text.back() != '\n') text += '\n';
  } else {
    text = CellsCsvHeader(classes) + "\n";
  }
  absl::StrAppend(&text, CellsCsvLine(row), "\n");
  const std::string tmp = path + ".tmp";
  GCL_RETURN_IF_ERROR(WriteText(tmp, text));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat(path, ": rename failed: ", ec.message()));
  return absl::OkStatus();
}

std::string ExperimentPlanJson(const ExperimentPlan& p) {
  auto quoted = [](const std::vector<std::string>& v) {
    std::vector<std::string> q;
    for (const auto& s : v) q.push_back(JsonQuote(s));
    return absl::StrCat("[", absl::StrJoin(q, ", "), "]");
  };
  return absl::StrCat("{\n  \"name\": ", JsonQuote(p.name), ",\n  \"variants\": ", quoted(p.variants),
                      ",\n  \"labeled_volumes\": [", absl::StrJoin(p.labeled_volumes, ", "),
                      "],\n  \"repeats\": ", p.repeats, ",\n  \"classes\": ", quoted(p.classes),
                      "\n}\n");
}

absl::StatusOr<ExperimentPlan> ReadExperimentPlan(const std::string& path) {
  GCL_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  GCL_ASSIGN_OR_RETURN(const JsonValue doc, ParseJsonObject(text, path));
  ExperimentPlan p;
  if (const JsonValue* v = doc.Find("name")) p.name = v->string_value();
  if (const JsonValue* v = doc.Find("variants")) {
    for (const JsonValue& x : v->items()) p.variants.push_back(x.string_value());
  }
  if (const JsonValue* v = doc.Find("labeled_volumes")) {
    for (const JsonValue& x : v->items()) {
      p.labeled_volumes.push_back(static_cast<int64_t>(x.number_value()));
    }
  }
  if (const JsonValue* v = doc.Find("repeats")) p.repeats = static_cast<int64_t>(v->number_value());
  if (const JsonValue* v = doc.Find("classes")) {
    for (const JsonValue& x : v->items()) p.classes.push_back(x.string_value());
  }
  if (p.variants.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no variants"));
  return p;
}

std::string PretrainFolderOf(const std::string& variant) {
  if (variant == "random_init") return "";
  if (variant == "full_frozen") return "full/pretrain";
  return variant + "/pretrain";
}

absl::Status RunResultsCommand(const ResultsFlags& flags) {
  if (flags.dir.empty()) return absl::InvalidArgumentError("--dir DIR is required");
  const fs::path dir(flags.dir);
  std::vector<std::string> classes;
  GCL_ASSIGN_OR_RETURN(std::vector<CellRow> rows,
                       ReadCellsCsv((dir / "cells.csv").string(), &classes));
  // Order: the experiment's, then anything else in order of appearance.
  ExperimentPlan plan;
  if (auto p = ReadExperimentPlan((dir / "experiment.json").string()); p.ok()) plan = *p;
  std::vector<std::string> variants = plan.variants;
  std::vector<int64_t> m_labs = plan.labeled_volumes;
  for (const CellRow& r : rows) {
    if (std::find(variants.begin(), variants.end(), r.variant) == variants.end()) {
      variants.push_back(r.variant);
    }
    if (std::find(m_labs.begin(), m_labs.end(), r.m_lab) == m_labs.end()) m_labs.push_back(r.m_lab);
  }
  if (plan.labeled_volumes.empty()) std::sort(m_labs.begin(), m_labs.end());

  // value(row) for metric k: -1 = mean Dice, c = class c.
  auto collect = [&](const std::string& v, int64_t m, int k) {
    std::map<int64_t, double> by_repeat;
    for (const CellRow& r : rows) {
      if (r.variant != v || r.m_lab != m) continue;
      by_repeat[r.repeat] = k < 0 ? r.mean_dice
                                  : (static_cast<size_t>(k) < r.per_class_dice.size()
                                         ? r.per_class_dice[k]
                                         : std::nan(""));
    }
    return by_repeat;
  };
  auto values = [](const std::map<int64_t, double>& m) {
    std::vector<double> v;
    for (const auto& [r, x] : m) v.push_back(x);
    return v;
  };

  std::string csv = "variant,m_lab,metric,mean,std,n\n";
  auto add_csv = [&](const std::string& v, int64_t m, const std::string& metric, const Stats& s) {
    absl::StrAppend(&csv, v, ",", m, ",", metric, ",", Num(s.mean), ",", Num(s.std), ",", s.n, "\n");
  };
  size_t name_w = 12;
  for (const auto& v : variants) name_w = std::max(name_w, v.size() + 2);
  auto print_table = [&](const std::string& title, int k) {
    std::printf("%s\n%s", title.c_str(), Pad("variant", name_w).c_str());
    for (int64_t m : m_labs) std::printf("%s", Pad(absl::StrCat("M_lab=", m), 24).c_str());
    std::printf("\n");
    for (const auto& v : variants) {
      std::printf("%s", Pad(v, name_w).c_str());
      for (int64_t m : m_labs) {
        const Stats s = Summarize(values(collect(v, m, k)));
        std::printf("%s", Pad(FormatCell(s), 24).c_str());
        add_csv(v, m, k < 0 ? "dice" : "dice_" + classes[k], s);
      }
      std::printf("\n");
    }
    std::printf("\n");
  };
  print_table("Test Dice (3D per volume; mean ± std over repeats)", -1);
  for (size_t c = 0; c < classes.size(); ++c) {
    if (flags.per_class) {
      print_table(absl::StrCat("Test Dice, class ", classes[c]), static_cast<int>(c));
    } else {
      for (const auto& v : variants) {
        for (int64_t m : m_labs) {
          add_csv(v, m, "dice_" + classes[c], Summarize(values(collect(v, m, static_cast<int>(c)))));
        }
      }
    }
  }
  // Paired differences: same M_lab and repeat = same labelled cases and seeds.
  const bool has_random =
      std::any_of(rows.begin(), rows.end(), [](const CellRow& r) { return r.variant == "random_init"; });
  if (has_random) {
    std::printf("Paired difference vs random_init (mean ± std over repeats of per-repeat differences)\n%s",
                Pad("variant", name_w).c_str());
    for (int64_t m : m_labs) std::printf("%s", Pad(absl::StrCat("M_lab=", m), 24).c_str());
    std::printf("\n");
    for (const auto& v : variants) {
      if (v == "random_init") continue;
      std::printf("%s", Pad(v, name_w).c_str());
      for (int64_t m : m_labs) {
        const auto base = collect("random_init", m, -1);
        std::vector<double> diffs;
        for (const auto& [r, x] : collect(v, m, -1)) {
          if (auto it = base.find(r); it != base.end()) diffs.push_back(x - it->second);
        }
        const Stats s = Summarize(diffs);
        std::printf("%s", Pad(FormatCell(s, /*sign=*/true), 24).c_str());
        add_csv(v, m, "diff_vs_random_init", s);
      }
      std::printf("\n");
    }
    std::printf("\n");
  }
  const fs::path csv_path = flags.csv_path.empty() ? dir / "table.csv" : fs::path(flags.csv_path);
  GCL_RETURN_IF_ERROR(WriteText(csv_path, csv));
  std::printf("table: %s\n", csv_path.c_str());
  if (flags.plots_dir == "-") return absl::OkStatus();

  // ---- plots ----
  if (!GnuplotAvailable()) {
    return absl::FailedPreconditionError(
        "gnuplot not found: install it (Debian: apt-get install gnuplot-nox, listed in "
        "scripts/common.sh) to render the plots; table.csv was written");
  }
  const fs::path plots = flags.plots_dir.empty() ? dir / "plots" : fs::path(flags.plots_dir);
  std::error_code ec;
  fs::create_directories(plots, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(plots.string(), ": ", ec.message()));
  std::string script;
  std::vector<std::string> made;

  {  // dice.png: points with error bars per variant, grouped by M_lab.
    const fs::path data = fs::absolute(plots / "dice.dat");
    std::string text;
    std::vector<std::string> clauses;
    const double width = 0.8 / std::max<size_t>(1, variants.size());
    for (size_t j = 0; j < variants.size(); ++j) {
      absl::StrAppend(&text, "# ", variants[j], ": x mean std\n");
      for (size_t i = 0; i < m_labs.size(); ++i) {
        const Stats s = Summarize(values(collect(variants[j], m_labs[i], -1)));
        if (s.n == 0) continue;
        const double x = i + (j - (variants.size() - 1) / 2.0) * width;
        absl::StrAppend(&text, Num(x), " ", Num(s.mean), " ", Num(s.std), "\n");
      }
      absl::StrAppend(&text, "\n\n");
      clauses.push_back(absl::StrCat(Quote(data.string()), " index ", j,
                                     " using 1:2:3 with yerrorlines lw 1.5 pt 7 ps 0.8 title ",
                                     Quote(variants[j])));
    }
    GCL_RETURN_IF_ERROR(WriteText(data, text));
    std::vector<std::string> tics;
    for (size_t i = 0; i < m_labs.size(); ++i) tics.push_back(absl::StrCat("\"", m_labs[i], "\" ", i));
    absl::StrAppend(&script, TerminalPreamble(fs::absolute(plots / "dice.png"), 1000, 600),
                    "set title \"Test Dice (mean ± std over repeats)\"\n",
                    "set xlabel \"labelled volumes M_lab\"\nset ylabel \"3D Dice\"\n",
                    "set xtics (", absl::StrJoin(tics, ", "), ")\n",
                    absl::StrFormat("set xrange [-0.6:%f]\n", m_labs.size() - 0.4),
                    "set key outside right\n", "plot ", absl::StrJoin(clauses, ", \\\n  "), "\n");
    made.push_back("dice.png");
  }

  std::vector<PretrainCurves> curves;
  std::vector<std::string> seen_folders;
  for (const auto& v : variants) {
    const std::string folder = PretrainFolderOf(v);
    if (folder.empty() ||
        std::find(seen_folders.begin(), seen_folders.end(), folder) != seen_folders.end()) {
      continue;
    }
    seen_folders.push_back(folder);
    const fs::path metrics = dir / folder / "metrics.jsonl";
    if (!fs::exists(metrics, ec)) continue;
    auto c = ReadPretrainMetrics(metrics.string(), folder.substr(0, folder.find('/')));
    if (c.ok()) curves.push_back(std::move(*c));
  }
  // One panel per variant with pair curves.
  auto panels = [&](const std::string& png, const std::string& title, const std::string& ylabel,
                    const std::string& yrange,
                    const std::function<void(const PretrainCurves&, const fs::path&, SeriesPlot*)>& fill) {
    std::vector<std::pair<std::string, SeriesPlot>> parts;
    for (const auto& c : curves) {
      SeriesPlot sp;
      fill(c, fs::absolute(plots / (png + "." + c.name + ".dat")), &sp);
      if (sp.blocks > 0) parts.push_back({c.name, std::move(sp)});
    }
    if (parts.empty()) {
      std::printf("%s.png: skipped (no pre-training logged these metrics)\n", png.c_str());
      return absl::OkStatus();
    }
    absl::StrAppend(&script, TerminalPreamble(fs::absolute(plots / (png + ".png")), 1000,
                                              std::max<int>(400, 330 * parts.size())),
                    absl::StrFormat("set multiplot layout %d,1 title %s\n", parts.size(), Quote(title)));
    for (auto& [name, sp] : parts) {
      GCL_RETURN_IF_ERROR(WriteText(plots / (png + "." + name + ".dat"), sp.data));
      absl::StrAppend(&script, "set grid\nset title ", Quote(name), "\nset xlabel \"pre-training step\"\n",
                      "set ylabel ", Quote(ylabel), "\n", yrange.empty() ? "" : "set yrange " + yrange + "\n",
                      "set key outside right\nplot ", absl::StrJoin(sp.clauses, ", \\\n  "), "\n");
    }
    absl::StrAppend(&script, "unset multiplot\n");
    made.push_back(png + ".png");
    return absl::OkStatus();
  };
  GCL_RETURN_IF_ERROR(panels(
      "conflicts", "Cosine between meta-label encoder gradients (solid: pre, dashed: post mitigation)",
      "cosine", "[-1:1]", [](const PretrainCurves& c, const fs::path& f, SeriesPlot* sp) {
        int lt = 1;
        for (const auto& [pair, s] : c.cos_pre) {
          sp->Add(s, f, absl::StrFormat("with lines lt %d lw 1.5 title %s", lt, Quote(pair + " pre")));
          if (auto it = c.cos_post.find(pair); it != c.cos_post.end()) {
            sp->Add(it->second, f,
                    absl::StrFormat("with lines lt %d dt 2 lw 1.5 title %s", lt, Quote(pair + " post")));
          }
          ++lt;
        }
      }));
  GCL_RETURN_IF_ERROR(panels(
      "conflict_share", "Share of encoder tensors in conflict (category c, per logging window)",
      "share", "[0:1]", [](const PretrainCurves& c, const fs::path& f, SeriesPlot* sp) {
        for (const auto& [pair, s] : c.share) sp->Add(s, f, "with lines lw 1.5 title " + Quote(pair));
      }));
  {  // pace.png: one panel, one line per variant.
    SeriesPlot sp;
    const fs::path f = fs::absolute(plots / "pace.dat");
    for (const auto& c : curves) {
      if (!c.pace.empty()) sp.Add(c.pace, f, "with lines lw 1.5 title " + Quote(c.name));
    }
    if (sp.blocks == 0) {
      std::printf("pace.png: skipped (no GradFilter pre-training)\n");
    } else {
      GCL_RETURN_IF_ERROR(WriteText(f, sp.data));
      absl::StrAppend(&script, TerminalPreamble(fs::absolute(plots / "pace.png"), 900, 500),
                      "set title \"GradFilter pace: selected positives per anchor n(t)\"\n",
                      "set xlabel \"pre-training step\"\nset ylabel \"n(t)\"\nset key outside right\n",
                      "plot ", absl::StrJoin(sp.clauses, ", \\\n  "), "\n");
      made.push_back("pace.png");
    }
  }
  const fs::path gp = plots / "plots.gp";
  GCL_RETURN_IF_ERROR(WriteText(gp, script + "unset output\n"));
  const std::string cmd = absl::StrCat("gnuplot ", Quote(fs::absolute(gp).string()), " 2>",
                                       Quote(fs::absolute(plots / "gnuplot.log").string()));
  if (std::system(cmd.c_str()) != 0) {
    auto log = ReadText((plots / "gnuplot.log").string());
    return absl::InternalError(absl::StrCat("gnuplot failed on ", gp.string(), ": ",
                                            log.ok() ? *log : std::string("(no log)")));
  }
  for (const auto& png : made) std::printf("plot: %s\n", (plots / png).c_str());
  return absl::OkStatus();
}

}  // namespace gcl::trainer
