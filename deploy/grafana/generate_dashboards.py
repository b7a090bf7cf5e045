#!/usr/bin/env python3
# Regenerates deploy/grafana/dashboards/*.json (the checked-in files are the source
# Grafana loads; edit here, run `python3 deploy/grafana/generate_dashboards.py`, commit both).
# Every PromQL expression is checked against a real Prometheus by
# tests/integration/gcl_observability_test.sh.
import os
import json
DS = {"type": "prometheus", "uid": "${datasource}"}
def templating(job_query):
    return {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {"text": "Prometheus", "value": "gcl-prom"}, "hide": 0},
        {"name": "job", "label": "GCL job", "type": "query", "datasource": DS,
         "query": {"query": job_query, "refId": "job"}, "definition": job_query,
         "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
         "current": {"text": "All", "value": "$__all"}, "sort": 1, "hide": 0}]} if job_query else {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {"text": "Prometheus", "value": "gcl-prom"}, "hide": 0}]}

class Dash:
    def __init__(self, uid, title, desc, job_query):
        self.d = {"uid": uid, "title": title, "description": desc, "tags": ["gcl"],
                  "schemaVersion": 38, "version": 1, "editable": False, "refresh": "30s",
                  "time": {"from": "now-6h", "to": "now"}, "timezone": "utc",
                  "templating": templating(job_query),
                  "annotations": {"list": []}, "panels": []}
        self.y = 0; self.x = 0; self.id = 1
    def row(self, title):
        if self.x: self.y += 8; self.x = 0
        self.d["panels"].append({"id": self.id, "type": "row", "title": title, "collapsed": False,
                                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.id += 1; self.y += 1
    def panel(self, title, targets, unit="short", kind="timeseries", desc="", w=12, extra=None):
        if self.x + w > 24: self.y += 8; self.x = 0
        p = {"id": self.id, "type": kind, "title": title, "description": desc, "datasource": DS,
             "gridPos": {"h": 8, "w": w, "x": self.x, "y": self.y},
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "options": {"legend": {"displayMode": "table", "placement": "bottom"}} if kind == "timeseries" else {},
             "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": l}
                         for i, (e, l) in enumerate(targets)]}
        if kind == "heatmap":
            p["options"] = {"calculate": False, "yAxis": {"unit": "short"}, "cellGap": 1}
            for t in p["targets"]: t["format"] = "heatmap"
        if extra: p.update(extra)
        self.d["panels"].append(p); self.id += 1
        self.x += w
        if self.x >= 24: self.x = 0; self.y += 8
    def write(self, name):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards", name)
        with open(path, "w") as f: json.dump(self.d, f, indent=2); f.write("\n")

J = 'job=~"$job"'
# ---------------------------------------------------------------- GCL training
d = Dash("gcl-training", "GCL training",
         "Pre-training and fine-tuning progress per GCL job: loss terms, throughput, step time, Dice.",
         'label_values({__name__=~"gcl_train_loss|gcl_finetune_loss"}, job)')
d.row("Pre-training")
d.panel("Loss per term", [(f'gcl_train_loss{{{J}}}', "{{job}} {{term}}")],
        desc="Image- and pixel-level contrastive loss per meta label and the total (gcl_train_loss{term}).")
d.panel("Steps done", [(f'gcl_train_steps_total{{{J}}}', "{{job}}")])
d.panel("Throughput (samples/s)", [(f'gcl_train_samples_per_second{{{J}}}', "{{job}}")], unit="short",
        desc="Augmented views per second on the last logged step.")
d.panel("Steps per second", [(f'job:gcl_train_steps:rate5m{{{J}}}', "{{job}}")],
        desc="Recording rule job:gcl_train_steps:rate5m.")
d.panel("Step time quantiles", [
    (f'histogram_quantile(0.5, sum by (job, le) (rate(gcl_train_step_seconds_bucket{{{J}}}[$__rate_interval])))', "{{job}} p50"),
    (f'histogram_quantile(0.95, sum by (job, le) (rate(gcl_train_step_seconds_bucket{{{J}}}[$__rate_interval])))', "{{job}} p95"),
    (f'job:gcl_train_step_seconds:p95_5m{{{J}}}', "{{job}} p95 (5m rule)")], unit="s")
d.panel("Learning rate", [(f'gcl_train_lr{{{J}}}', "{{job}}")])
d.row("Fine-tuning")
d.panel("Fine-tuning loss", [(f'gcl_finetune_loss{{{J}}}', "{{job}}")])
d.panel("Validation Dice (mean)", [(f'gcl_finetune_val_dice{{{J}}}', "{{job}}")], unit="percentunit")
d.panel("Test Dice per class", [(f'gcl_dice{{{J}}}', "{{job}} {{class}}")], unit="percentunit",
        kind="bargauge", w=24, desc="Mean over test cases of a finished fine-tuning attempt (gcl_dice{class}).",
        extra={"options": {"orientation": "horizontal", "displayMode": "gradient",
                           "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}})
d.write("gcl-training.json")

# ---------------------------------------------------------------- Gradient conflicts
d = Dash("gcl-gradient-conflicts", "Gradient conflicts",
         "GradMitigator and GradFilter per GCL job (gcl-algorithm.md sections 6, 7, 11).",
         'label_values(gcl_grad_cosine, job)')
d.row("Pair cosines")
d.panel("Cosine before mitigation per pair", [(f'gcl_grad_cosine{{{J}, stage="pre"}}', "{{job}} {{pair}}")],
        desc="cos(g_m, g_m') of the flattened encoder gradients (negative: the meta labels pull apart).")
d.panel("Cosine after mitigation per pair", [(f'gcl_grad_cosine{{{J}, stage="post"}}', "{{job}} {{pair}}")])
d.panel("Cosine gain from mitigation", [(f'job_pair:gcl_grad_cosine:gain{{{J}}}', "{{job}} {{pair}}")],
        desc="post - pre (recording rule job_pair:gcl_grad_cosine:gain).")
d.panel("EMA target cosine per pair", [(f'gcl_grad_target_cosine{{{J}}}', "{{job}} {{pair}}")],
        desc="GradMitigator's EMA targets (mean over tensors).")
d.panel("Pre-mitigation cosine distribution",
        [(f'sum by (le) (rate(gcl_grad_cosine_distribution_bucket{{{J}, stage="pre"}}[$__rate_interval]))', "{{le}}")],
        kind="heatmap")
d.panel("Post-mitigation cosine distribution",
        [(f'sum by (le) (rate(gcl_grad_cosine_distribution_bucket{{{J}, stage="post"}}[$__rate_interval]))', "{{le}}")],
        kind="heatmap")
d.row("Conflict categories and injections")
d.panel("Share of tensors per category", [
    (f'job_pair_kind:gcl_grad_conflicts:share{{{J}, kind=~"slight|conflict"}}', "{{job}} {{pair}} {{kind}}")],
        unit="percentunit", desc="Encoder tensors slightly conflicting / conflicting, over the run.")
d.panel("Conflicting share (all pairs)", [(f'job:gcl_grad_conflicting:share{{{J}}}', "{{job}}")], unit="percentunit")
d.panel("Category rate", [(f'sum by (job, kind) (rate(gcl_grad_conflicts_total{{{J}}}[$__rate_interval]))', "{{job}} {{kind}}")],
        unit="ops")
d.panel("Injections per second", [(f'rate(gcl_grad_modified_total{{{J}}}[$__rate_interval])', "{{job}} {{pair}}")], unit="ops")
d.panel("Injection weight per pair", [(f'gcl_grad_injection_weight{{{J}}}', "{{job}} {{pair}}")], w=24)
d.row("Gradients per meta label")
d.panel("Gradient norm per meta label", [(f'gcl_grad_norm{{{J}}}', "{{job}} {{meta_label}} {{stage}}")])
d.panel("Update cosine per meta label", [(f'gcl_update_cosine{{{J}}}', "{{job}} {{meta_label}}")],
        desc="cos of the final update with each label's gradient: should stay > 0.")
d.row("GradFilter")
d.panel("GradFilter pace n(t)", [(f'gcl_gradfilter_selected{{{J}}}', "{{job}}")])
d.panel("GradFilter scores", [(f'gcl_gradfilter_score{{{J}}}', "{{job}} {{set}}")])
d.write("gradient-conflicts.json")

# ---------------------------------------------------------------- Fleet
d = Dash("gcl-fleet", "GCL fleet", "The coordinator: jobs, queue wait, workers, RPCs.", None)
d.row("Jobs and workers")
d.panel("Jobs per state", [('gcl_jobs', "{{state}}")], kind="timeseries")
d.panel("Workers per state", [('gcl_workers', "{{state}}")])
d.panel("Queue wait quantiles", [
    ('histogram_quantile(0.5, sum by (le) (rate(gcl_job_queue_wait_seconds_bucket[$__rate_interval])))', "p50"),
    ('histogram_quantile(0.95, sum by (le) (rate(gcl_job_queue_wait_seconds_bucket[$__rate_interval])))', "p95"),
    ('gcl:job_queue_wait_seconds:p95_1h', "p95 (1h rule)")], unit="s")
d.panel("Attempts started and workers lost", [
    ('increase(gcl_job_attempts_total[1h])', "attempts / 1h"),
    ('increase(gcl_worker_lost_total[1h])', "workers lost / 1h")])
d.row("RPCs and scrape targets")
d.panel("RPC p95 by method", [('method_code:gcl_rpc_duration_seconds:p95_5m', "{{method}} {{code}}")], unit="s")
d.panel("RPC rate by method and code", [('sum by (method, code) (rate(gcl_rpc_duration_seconds_count[$__rate_interval]))', "{{method}} {{code}}")], unit="reqps")
d.panel("RPC error ratio", [('method:gcl_rpc_errors:ratio_5m', "{{method}}")], unit="percentunit")
d.panel("Targets up", [('up{job=~"gcl-coordinator|gcl-worker"}', "{{job}} {{instance}}")])
d.write("fleet.json")
