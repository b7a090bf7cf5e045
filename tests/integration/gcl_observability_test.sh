#!/usr/bin/env bash
# Observability end to end (issue 5), against a real Prometheus:
#  1. promtool check config / check rules on deploy/prometheus.
#  2. gcl-coordinator and a gcl-worker with --metrics-listen on loopback; the
#     coordinator keeps a Prometheus file-SD file with the worker's endpoint.
#  3. Debian's `prometheus` with a config derived from deploy/prometheus
#     (1 s scrape/evaluation interval, loopback targets, the SD file, temp TSDB).
#  4. A tiny pre-training job (variant full, synthetic) and a fine-tuning job
#     from it, through gclctl.
#  5. Every metric family of architecture.md section 5 has samples in
#     Prometheus; every PromQL expression of every dashboard JSON, every
#     dashboard variable query and every recording rule returns a non-empty
#     result; `promtool check metrics` is clean on a scrape of each endpoint.
#  6. The conflict counts agree everywhere: trainer metrics.jsonl (last
#     point) = Prometheus = registry summaries shown by `gclctl results`.
# Usage: gcl_observability_test.sh COORDINATOR WORKER TRAINER GCLCTL DEPLOY_DIR
set -euo pipefail
COORD="$1"; AGENT="$2"; TRAIN="$3"; CTL="$4"; DEPLOY="$5"
for tool in prometheus promtool curl python3; do
  command -v "$tool" > /dev/null || { echo "FAIL: $tool is not installed (scripts/common.sh installs it)" >&2; exit 1; }
done
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; tail -n 20 coord.log agent.log prom.log >&2 || true; exit 1; }
export HOME="$WORK"

# ---- 1. the deploy files as shipped
promtool check config "$DEPLOY/prometheus/prometheus.yml" > check-config.txt 2>&1 \
  || { cat check-config.txt; fail "promtool check config"; }
promtool check rules "$DEPLOY/prometheus/gcl_rules.yml" > check-rules.txt 2>&1 \
  || { cat check-rules.txt; fail "promtool check rules"; }

# ---- 2. coordinator + worker with metrics
"$COORD" --listen 127.0.0.1:0 --db reg.db --artifacts art --lease-seconds 3 --metrics-listen 127.0.0.1:0 \
  --prometheus-sd-file "$WORK/workers-sd.json" > coord.log 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "^metrics on " coord.log && break; sleep 0.1; done
export GCL_ADDR="$(sed -n 's/^listening on //p' coord.log)"
COORD_METRICS="$(sed -n 's/^metrics on //p' coord.log)"
[ -n "$GCL_ADDR" ] && [ -n "$COORD_METRICS" ] || fail "coordinator did not report its addresses"
"$AGENT" --coordinator "$GCL_ADDR" --work-dir agent-work --trainer "$TRAIN" --worker-id w1 \
  --metrics-listen 127.0.0.1:0 --metrics-grace 600 > agent.log 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "127.0.0.1" workers-sd.json 2>/dev/null && break; sleep 0.1; done
WORKER_METRICS="$(sed -n 's/^gcl-worker: serving \/metrics on //p' agent.log)"
[ -n "$WORKER_METRICS" ] || fail "the agent did not report its metrics address"
grep -q "\"$WORKER_METRICS\"" workers-sd.json || { cat workers-sd.json; fail "SD file lacks $WORKER_METRICS"; }
python3 -c "import json,sys; d=json.load(open('workers-sd.json')); assert d[0]['labels']['worker']=='w1', d" \
  || fail "SD file is not a file_sd target list with the worker label"

# ---- 3. Prometheus with the project's config, on loopback
PROM_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PROM="http://127.0.0.1:$PROM_PORT"
cp "$DEPLOY/prometheus/gcl_rules.yml" .
sed -e 's/scrape_interval: 15s/scrape_interval: 1s/' -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
    -e "s/127.0.0.1:9464/$COORD_METRICS/" -e "s|/var/lib/gcl/prometheus-workers.json|$WORK/workers-sd.json|" \
    -e 's/refresh_interval: 10s/refresh_interval: 1s/' "$DEPLOY/prometheus/prometheus.yml" > prometheus.yml
for want in "scrape_interval: 1s" "$COORD_METRICS" "$WORK/workers-sd.json"; do
  grep -qF "$want" prometheus.yml || fail "deploy/prometheus/prometheus.yml changed: could not set '$want'"
done
promtool check config prometheus.yml > check-config2.txt 2>&1 || { cat check-config2.txt; fail "generated config"; }
prometheus --config.file=prometheus.yml --storage.tsdb.path=tsdb \
  --web.listen-address="127.0.0.1:$PROM_PORT" > prom.log 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "$PROM/-/ready" > /dev/null && break; sleep 0.2; done
curl -sf "$PROM/-/ready" > /dev/null || fail "prometheus did not become ready"

# ---- 4. a short pre-training job and a fine-tuning job from it
cat > pre.yaml <<'Y'
name: obs-pre
kind: pretrain
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
method: {variant: full, pool_k: 4}
model: {base_width: 8, depth: 3, proj_dim: 16}
train: {steps: 20, batch: 16, lr: 0.05, threads: 1, log_every: 2, checkpoint_every: 20}
Y
PRE="$("$CTL" submit pre.yaml)" || fail "submit pre.yaml"
timeout 120 "$CTL" watch "$PRE" > watch-pre.txt 2>&1 || { cat watch-pre.txt; fail "pretrain $PRE did not succeed"; }
grep -q "conflicts .* of checks" watch-pre.txt || { cat watch-pre.txt; fail "gclctl watch shows no conflict summary"; }
cat > ft.yaml <<Y
name: obs-ft
kind: finetune
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
model: {base_width: 8, depth: 3}
init: {job: $PRE}
labeled_volumes: [1]
train: {steps: 10, batch: 4, threads: 1, val_every: 5}
Y
FT="$("$CTL" submit ft.yaml)" || fail "submit ft.yaml"
timeout 120 "$CTL" watch "$FT" > watch-ft.txt 2>&1 || { cat watch-ft.txt; fail "finetune $FT did not succeed"; }

# ---- 5. Prometheus has every family; every dashboard/rule expression answers
for _ in $(seq 60); do
  curl -sf "$PROM/api/v1/query" --data-urlencode "query=gcl_dice{job=\"$FT\"}" | grep -q '"result":\[{' && break
  sleep 0.5
done
sleep 3  # a few more scrapes and rule evaluations: rate() needs two samples
python3 - "$PROM" "$DEPLOY" "$PRE" "$FT" <<'PY' || fail "Prometheus queries (see above)"
import glob, json, re, sys, urllib.parse, urllib.request
prom, deploy, pre, ft = sys.argv[1:5]

def query(expr):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"query failed: {expr}: {body}")
    return body["data"]["result"]

bad = []
def need(expr, what):
    try:
        if not query(expr):
            bad.append(f"{what}: no samples for {expr}")
    except Exception as e:  # HTTP 400: a PromQL syntax error
        bad.append(f"{what}: {expr}: {e}")

# Families of architecture.md section 5 (histograms by their _count series).
trainer = ["gcl_train_loss", "gcl_train_steps_total", "gcl_train_step_seconds_count",
           "gcl_train_samples_per_second", "gcl_grad_cosine", "gcl_grad_cosine_distribution_count",
           "gcl_grad_target_cosine", "gcl_grad_conflicts_total", "gcl_grad_modified_total",
           "gcl_grad_injection_weight", "gcl_grad_norm", "gcl_update_cosine",
           "gcl_gradfilter_selected", "gcl_gradfilter_score"]
for name in trainer:
    need(f'{name}{{job="{pre}"}}', "trainer family")
need(f'gcl_dice{{job="{ft}"}}', "trainer family")
need(f'gcl_finetune_loss{{job="{ft}"}}', "trainer family")
need(f'gcl_finetune_val_dice{{job="{ft}"}}', "trainer family")
for name in ["gcl_jobs", "gcl_workers", "gcl_job_queue_wait_seconds_count",
             "gcl_rpc_duration_seconds_count", "gcl_job_attempts_total", "gcl_worker_lost_total"]:
    need(f'{name}{{job="gcl-coordinator"}}', "coordinator family")
# Label sets as documented.
for expr in ['gcl_grad_cosine{stage="pre"}', 'gcl_grad_cosine{stage="post"}',
             'gcl_grad_conflicts_total{kind="none"}', 'gcl_grad_conflicts_total{kind="slight"}',
             'gcl_grad_conflicts_total{kind="conflict"}', 'gcl_gradfilter_score{set="selected"}',
             'gcl_grad_norm{meta_label!="",stage="pre"}', 'gcl_jobs{state="succeeded"} == 2',
             'gcl_workers{state="alive"} == 1', 'gcl_job_attempts_total >= 2',
             'gcl_rpc_duration_seconds_count{method="/gcl.v1.JobService/SubmitJob",code="OK"}']:
    need(expr, "label set")
# Bounded cardinality: no step or checkpoint ids as labels.
for r in query('{__name__=~"gcl_.+"}'):
    for k in r["metric"]:
        if k in ("step", "checkpoint", "checkpoint_id", "attempt"):
            bad.append(f"unbounded label {k} on {r['metric']['__name__']}")

# Every recording rule.
rules_text = open(f"{deploy}/prometheus/gcl_rules.yml").read()
records = re.findall(r"^\s*- record:\s*(\S+)", rules_text, re.M)
assert len(records) >= 5, records
for rec in records:
    need(rec, "recording rule")

# Every PromQL expression and variable query of every dashboard.
subst = {"$job": ".*", "${job}": ".*", "$__rate_interval": "1m", "$__interval": "15s",
         "$__range": "1h"}
n_exprs = 0
dashboards = sorted(glob.glob(f"{deploy}/grafana/dashboards/*.json"))
assert len(dashboards) >= 3, dashboards
uids = set()
for path in dashboards:
    d = json.load(open(path))
    assert d["uid"] not in uids, f"duplicate uid {d['uid']}"
    uids.add(d["uid"])
    var_names = [v["name"] for v in d.get("templating", {}).get("list", [])]
    if "conflict" in path or "training" in path:
        assert "job" in var_names, f"{path}: no job variable"
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
        assert m, f"{path}: variable {v['name']}: unsupported query {q}"
        need(f"count by ({m.group(2)}) ({m.group(1)})", f"{path} variable {v['name']}")
    panels = []
    for p in d["panels"]:
        panels.append(p)
        panels.extend(p.get("panels", []))
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k in sorted(subst, key=len, reverse=True):
                expr = expr.replace(k, subst[k])
            assert "$" not in expr, f"{path}: unsubstituted variable in {expr}"
            n_exprs += 1
            need(expr, f"{path} panel '{p['title']}'")
if bad:
    print("\n".join(bad))
    raise SystemExit(1)
print(f"prometheus: {len(trainer) + 8} families, {len(records)} rules, {n_exprs} dashboard expressions: all non-empty")
PY

# ---- promtool lint of each endpoint
curl -sf "http://$COORD_METRICS/metrics" > coord-metrics.txt || fail "scrape of the coordinator"
curl -sf "http://$WORKER_METRICS/metrics" > worker-metrics.txt || fail "scrape of the worker"
for f in coord-metrics.txt worker-metrics.txt; do
  # prometheus-cpp's own exposer_* self-metrics are not ours to rename.
  grep -v '^# .* exposer_\|^exposer_' "$f" > "lint-$f"
  promtool check metrics < "lint-$f" > "lint-$f.out" 2>&1 || { cat "lint-$f.out"; fail "promtool check metrics on $f"; }
done
grep -q "gcl_grad_conflicts_total{" worker-metrics.txt || fail "the worker endpoint lacks the trainer series"

# ---- 6. the same conflict counts in metrics.jsonl, Prometheus and the registry summaries
"$CTL" results "$PRE" > results-pre.txt || fail "gclctl results $PRE"
grep -q "gradient conflicts at the end of pre-training" results-pre.txt || { cat results-pre.txt; fail "no conflict table"; }
"$CTL" results "$FT" > results-ft.txt || fail "gclctl results $FT"
"$CTL" results "$PRE" --output json > results-pre.json || fail "gclctl results --output json"
python3 - "$PROM" "$PRE" "agent-work/jobs/$PRE/attempt-1/metrics.jsonl" results-pre.json <<'PY' || fail "conflict counts disagree"
import json, sys, urllib.parse, urllib.request
prom, pre, jsonl, results = sys.argv[1:5]
last = json.loads(open(jsonl).read().splitlines()[-1])
want = {(s["labels"]["pair"], s["labels"]["kind"]): s["value"] for s in last["samples"]
        if s["name"] == "gcl_grad_conflicts_total"}
assert want and sum(want.values()) > 0, f"trainer wrote no conflict counts: {last}"
url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": f'gcl_grad_conflicts_total{{job="{pre}"}}'})
got_prom = {(r["metric"]["pair"], r["metric"]["kind"]): float(r["value"][1])
            for r in json.load(urllib.request.urlopen(url))["data"]["result"]}
summ = json.load(open(results)).get("metricSummaries") or json.load(open(results)).get("metric_summaries")
# proto3 JSON leaves zero values out.
got_reg = {(m["labels"]["pair"], m["labels"]["kind"]): m.get("value", 0.0) for m in summ
           if m["name"] == "gcl_grad_conflicts_total" and m["jobId" if "jobId" in m else "job_id"] == pre}
assert got_prom == want, f"prometheus {got_prom} != trainer {want}"
assert got_reg == want, f"registry {got_reg} != trainer {want}"
print(f"conflict counts agree for {len(want)} (pair, kind) series")
PY
echo "observability: all checks passed"
