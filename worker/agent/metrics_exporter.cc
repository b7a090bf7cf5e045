#include "worker/agent/metrics_exporter.h"

#include <cmath>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "gcl/base/status_macros.h"
#include "metrics/metrics_endpoint.h"

namespace gcl::agent {
namespace {

using prometheus::Labels;

bool ValidName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return name.rfind("__", 0) != 0;  // reserved for Prometheus
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Help strings of the families of architecture.md section 5; others get a generic one.
std::string HelpFor(const std::string& name) {
  static const std::map<std::string, std::string> kHelp = {
      {"gcl_train_loss", "Pre-training loss per term (image/<label>, pixel/<label>, total)."},
      {"gcl_train_steps_total", "Pre-training steps done."},
      {"gcl_train_step_seconds", "Wall time of one pre-training step (logged steps)."},
      {"gcl_train_samples_per_second", "Pre-training throughput (augmented views per second)."},
      {"gcl_train_lr", "Current pre-training learning rate."},
      {"gcl_train_phase_seconds", "Wall time of one phase of the last logged step."},
      {"gcl_grad_cosine",
       "Cosine between two meta labels' encoder gradients, before/after mitigation."},
      {"gcl_grad_cosine_distribution", "Distribution of gcl_grad_cosine over logged steps."},
      {"gcl_grad_target_cosine", "GradMitigator EMA target cosine per pair (mean over tensors)."},
      {"gcl_grad_conflicts_total",
       "Encoder tensors per conflict category (none, slight, conflict), summed over steps."},
      {"gcl_grad_modified_total", "Gradient injections performed by GradMitigator."},
      {"gcl_grad_injection_weight", "Mean GradMitigator injection weight per pair."},
      {"gcl_grad_norm", "Norm of a meta label's encoder gradient, before/after mitigation."},
      {"gcl_update_cosine", "Cosine of the final update with each meta label's gradient."},
      {"gcl_gradfilter_selected", "GradFilter pace n(t): positives kept per anchor."},
      {"gcl_gradfilter_score", "Mean GradFilter score of selected and rejected pool members."},
      {"gcl_dice", "Test Dice per class of a finished fine-tuning attempt (mean over cases)."},
  };
  auto it = kHelp.find(name);
  return it != kHelp.end() ? it->second : absl::StrCat("gcl-train metric ", name, ".");
}

// Step times: 5 ms .. ~80 s.
const std::vector<double>& StepBuckets() {
  static const std::vector<double> b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   20,  40,   80};
  return b;
}
// Cosines: 0.1 wide over [-1, 1].
const std::vector<double>& CosineBuckets() {
  static const std::vector<double> b = [] {
    std::vector<double> v;
    for (int i = -9; i <= 10; ++i) v.push_back(i / 10.0);
    return v;
  }();
  return b;
}

}  // namespace

class MetricsExporter::Impl : public prometheus::Collectable {
 public:
  explicit Impl(MetricsExporterOptions options) : options_(std::move(options)) {
    if (!options_.now) options_.now = [] { return absl::Now(); };
    dropped_ = &prometheus::BuildCounter()
                    .Name("gcl_agent_metrics_dropped_total")
                    .Help("Trainer samples the agent could not export (invalid name or label).")
                    .Register(*registry_)
                    .Add({});
  }

  void Observe(const std::string& job_id, const gcl::v1::MetricsPoint& point) {
    std::lock_guard<std::mutex> lock(mu_);
    PruneLocked();
    JobSeries& js = jobs_[job_id];
    js.ended.reset();
    for (const gcl::v1::MetricSample& s : point.samples()) {
      Labels labels;
      bool ok = ValidName(s.name());
      for (const auto& [k, v] : s.labels()) {
        if (k == "job") continue;
        if (!ValidName(k)) ok = false;
        labels[k] = v;
      }
      if (!ok) {
        dropped_->Increment();
        continue;
      }
      labels["job"] = job_id;
      const double v = s.value();
      if (EndsWith(s.name(), "_total")) {
        prometheus::Counter& c = CounterLocked(&js, s.name(), labels);
        double& last = js.last_total[SeriesKey(s.name(), labels)];
        if (std::isfinite(v) && v > last) c.Increment(v - last);
        if (std::isfinite(v)) last = v;
        continue;
      }
      if (s.name() == "gcl_train_step_seconds" || s.name() == "gcl_finetune_step_seconds") {
        if (std::isfinite(v)) HistogramLocked(&js, s.name(), labels, StepBuckets()).Observe(v);
        continue;
      }
      GaugeLocked(&js, s.name(), labels).Set(v);
      if (s.name() == "gcl_grad_cosine" && std::isfinite(v)) {
        HistogramLocked(&js, "gcl_grad_cosine_distribution", labels, CosineBuckets()).Observe(v);
      }
    }
  }

  void EndAttempt(const std::string& job_id,
                  const google::protobuf::RepeatedPtrField<gcl::v1::CaseResult>& cases) {
    std::lock_guard<std::mutex> lock(mu_);
    JobSeries& js = jobs_[job_id];
    std::map<std::string, std::pair<double, int>> by_class;
    for (const gcl::v1::CaseResult& c : cases) {
      if (!std::isfinite(c.dice()) || !ValidLabelValue(c.class_name())) continue;
      auto& [sum, n] = by_class[c.class_name()];
      sum += c.dice();
      ++n;
    }
    for (const auto& [cls, acc] : by_class) {
      GaugeLocked(&js, "gcl_dice", {{"job", job_id}, {"class", cls}}).Set(acc.first / acc.second);
    }
    js.ended = options_.now();
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lock(mu_);
    const_cast<Impl*>(this)->PruneLocked();
    return registry_->Collect();
  }

  std::vector<std::string> Jobs() {
    std::lock_guard<std::mutex> lock(mu_);
    PruneLocked();
    std::vector<std::string> out;
    for (const auto& [id, js] : jobs_) out.push_back(id);
    return out;
  }

  const MetricsExporterOptions& options() const { return options_; }
  std::shared_ptr<prometheus::Registry> registry() { return registry_; }

 private:
  struct JobSeries {
    std::optional<absl::Time> ended;
    std::vector<std::function<void()>> removers;  // one per series of the job
    std::map<std::string, double> last_total;     // counters: last running total seen
    std::set<std::string> keys;                   // series already added
  };

  static bool ValidLabelValue(const std::string& v) { return !v.empty(); }

  static std::string SeriesKey(const std::string& name, const Labels& labels) {
    std::string key = name;
    for (const auto& [k, v] : labels) absl::StrAppend(&key, "\x1f", k, "=", v);
    return key;
  }

  template <typename T>
  T& AddLocked(JobSeries* js, prometheus::Family<T>* family, const std::string& key,
               const Labels& labels, T& metric) {
    if (js->keys.insert(key).second) {
      js->removers.push_back([family, m = &metric] { family->Remove(m); });
    }
    return metric;
  }

  prometheus::Gauge& GaugeLocked(JobSeries* js, const std::string& name, const Labels& labels) {
    auto& fam = gauges_[name];
    if (fam == nullptr) {
      fam = &prometheus::BuildGauge().Name(name).Help(HelpFor(name)).Register(*registry_);
    }
    return AddLocked(js, fam, SeriesKey(name, labels), labels, fam->Add(labels));
  }

  // prometheus-cpp 1.0 writes counter names as given: they carry _total.
  prometheus::Counter& CounterLocked(JobSeries* js, const std::string& name, const Labels& labels) {
    auto& fam = counters_[name];
    if (fam == nullptr) {
      fam = &prometheus::BuildCounter().Name(name).Help(HelpFor(name)).Register(*registry_);
    }
    return AddLocked(js, fam, SeriesKey(name, labels), labels, fam->Add(labels));
  }

  prometheus::Histogram& HistogramLocked(JobSeries* js, const std::string& name,
                                         const Labels& labels, const std::vector<double>& buckets) {
    auto& fam = histograms_[name];
    if (fam == nullptr) {
      fam = &prometheus::BuildHistogram().Name(name).Help(HelpFor(name)).Register(*registry_);
    }
    return AddLocked(js, fam, SeriesKey(name, labels), labels, fam->Add(labels, buckets));
  }

  void PruneLocked() {
    const absl::Time now = options_.now();
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (it->second.ended.has_value() && now - *it->second.ended >= options_.grace) {
        for (auto& remove : it->second.removers) remove();
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
  }

  MetricsExporterOptions options_;
  mutable std::mutex mu_;
  // Families live as long as the registry; series are added and removed under mu_.
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  prometheus::Counter* dropped_ = nullptr;
  std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauges_;
  std::map<std::string, prometheus::Family<prometheus::Counter>*> counters_;
  std::map<std::string, prometheus::Family<prometheus::Histogram>*> histograms_;
  std::map<std::string, JobSeries> jobs_;

 public:
  std::unique_ptr<prometheus::Exposer> exposer;  // destroyed first (see ~MetricsExporter)
};

namespace {

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsExporter>> MetricsExporter::Create(
    MetricsExporterOptions options) {
  if (options.grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("metrics grace period must be >= 0");
  }
  auto impl = std::make_shared<Impl>(std::move(options));
  std::string address;
  const std::string listen = impl->options().listen;
  if (!listen.empty()) {
    GCL_ASSIGN_OR_RETURN(metrics::MetricsEndpoint endpoint, metrics::StartMetricsEndpoint(listen));
    impl->exposer = std::move(endpoint.exposer);
    address = std::move(endpoint.address);
  }
  if (impl->exposer)
    impl->exposer->RegisterCollectable(std::weak_ptr<prometheus::Collectable>(impl));
  return std::unique_ptr<MetricsExporter>(new MetricsExporter(std::move(impl), std::move(address)));
}

MetricsExporter::MetricsExporter(std::shared_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

// The endpoint stops (its threads joined) before the series go away.
MetricsExporter::~MetricsExporter() { impl_->exposer.reset(); }

void MetricsExporter::Observe(const std::string& job_id, const gcl::v1::MetricsPoint& point) {
  impl_->Observe(job_id, point);
}

void MetricsExporter::EndAttempt(
    const std::string& job_id,
    const google::protobuf::RepeatedPtrField<gcl::v1::CaseResult>& cases) {
  impl_->EndAttempt(job_id, cases);
}

std::string MetricsExporter::Scrape() {
  return prometheus::TextSerializer().Serialize(impl_->Collect());
}

std::vector<std::string> MetricsExporter::Jobs() { return impl_->Jobs(); }

}  // namespace gcl::agent
