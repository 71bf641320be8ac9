# Two commands do everything on a fresh clone:  `make all` (run every project)  and  `make test`.
# Every target that needs Python builds/updates .venv itself (stamp file), so no separate setup step.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
EXTRAS      := serve,train,monitor,deep,dev,scale,team

# Offline by default: MLflow must not phone home from a pipeline or a test.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Real data: CHURN_DATA if set; else the shared copy beside the checkout (CI, benchmarks); else the
# path in configs/churn.yaml (`make data` downloads it); else synthetic data, loudly flagged.
SHARED_CHURN := $(abspath ../shared/data/telco-churn/Telco-Customer-Churn.csv)
ifeq ($(origin CHURN_DATA), undefined)
ifneq ($(wildcard $(SHARED_CHURN)),)
export CHURN_DATA := $(SHARED_CHURN)
endif
endif

.PHONY: help setup data churn vision text all serve bundle ui monitor simulate bench bench-churn bench-vision bench-text bench-serve bench-monitor test test-fast clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)  ## create/refresh .venv with every project's dependencies

data: $(STAMP)  ## download the Telco CSV (online; checks its sha256) to data/raw/
	$(PY) -m pipelines.churn.download --dest data/raw/Telco-Customer-Churn.csv

churn: $(STAMP)  ## churn: train -> evaluate -> optimize -> export ONNX -> register champion
	$(PY) -m pipelines churn

vision: $(STAMP)  ## vision: ResNet-18 transfer (source pretraining, cached) -> evaluate -> ONNX + int8 -> register champion
	$(PY) -m pipelines vision

text: $(STAMP)  ## text: LoRA fine-tuned MiniLM -> evaluate -> ONNX + int8 -> register champion
	$(PY) -m pipelines text

all: churn vision text  ## every project

serve: $(STAMP)  ## FastAPI + onnxruntime on 127.0.0.1:8000 (configs/serving.yaml), serving each champion
	$(PY) -m serving

bundle: $(STAMP)  ## export the churn champion as a deployable folder (ONNX + contract) under dist/bundles/
	$(PY) -m serving.bundle --model churn --alias champion

MODEL ?= churn
# `python -m monitoring run` exits with this code when a threshold is crossed (monitoring/alerts.py,
# ALERT_EXIT_CODE): cron and CI read it from the CLI, while `make monitor` reports it as an alert, not as
# a failed make. Any other non-zero code (2: could not monitor) still fails make.
ALERT_EXIT := 1
define report_alert
	@$(1); status=$$?; \
	if [ $$status -eq $(ALERT_EXIT) ]; then echo "make: ALERT raised (see above): an expected outcome, not a make error"; \
	elif [ $$status -ne 0 ]; then exit $$status; fi
endef

simulate: $(STAMP)  ## send windows of normal and drifted traffic (+ delayed labels) to the running server (MODEL=churn|vision|text)
	$(PY) -m monitoring simulate --model $(MODEL)

monitor: $(STAMP)  ## drift report on the latest window of the prediction log (MODEL=churn|vision|text); RETRAIN=1 closes the loop
	$(call report_alert,$(PY) -m monitoring run --model $(MODEL) $(if $(RETRAIN),--retrain))

ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000 over the same store
	$(PY) -m mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///mlruns/mlflow.db}" --host 127.0.0.1 --port 5000

.PHONY: mlflow-server mlflow-server-stop
mlflow-server: $(STAMP)  ## team MLflow server on http://127.0.0.1:5001: PostgreSQL store, proxied artifacts (configs/mlflow-server.yaml)
	$(PY) -m pipelines.common.mlflow_server start

mlflow-server-stop: $(STAMP)  ## stop the team MLflow server and its PostgreSQL
	$(PY) -m pipelines.common.mlflow_server stop

.PHONY: score bench-score bench-tune
score: $(STAMP)  ## batch-score a Parquet/CSV file with the champion on Ray Data: MODEL=churn INPUT=path OUTPUT=path
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score MODEL=churn INPUT=rows.parquet OUTPUT=scored.parquet"; exit 2; }
	$(PY) -m pipelines.score --model $(MODEL) --input "$(INPUT)" --output "$(OUTPUT)"

ROWS ?= 10000000
bench-score: $(STAMP)  ## batch scoring of ROWS synthetic customers: Ray Data on 2 CPUs vs one process (rows/s, peak memory, serving parity)
	$(PY) benchmarks/bench_score.py --rows $(ROWS)

bench-tune: $(STAMP)  ## churn XGBoost search, same trial budget: optuna vs Ray Tune at 1 and 2 concurrent trials on 2 CPUs
	$(PY) benchmarks/bench_tune.py

bench-churn: $(STAMP)  ## champion test ROC-AUC over 5 split seeds (no seed picking)
	$(PY) benchmarks/bench_churn.py

bench-serve: $(STAMP)  ## our server vs itself without log/metrics, with synchronous FULL, on 2 workers, vs `mlflow models serve` (wrk, batch 1 and 64); micro-batching off/on; 256-client overload
	$(PY) benchmarks/bench_serve.py

bench-monitor: $(STAMP)  ## drift detection rate per scenario and false alarms over many windows (MODEL=churn|vision|text)
	$(PY) benchmarks/bench_monitor.py --model $(MODEL) --sizes 100,250,500

.PHONY: bench-promotion
bench-promotion: $(STAMP)  ## promotion rule: how often an equivalent vs a better challenger is promoted (100 decisions each)
	$(PY) benchmarks/bench_promotion.py

bench-vision: $(STAMP)  ## vision: test accuracy and the learning curve over 3 seeds (mean +- std), SVM baseline beside
	$(PY) benchmarks/bench_vision.py

bench-text: $(STAMP)  ## text: test macro-F1 per model over 3 split seeds, plus one full fine-tune
	$(PY) benchmarks/bench_text.py

bench: bench-churn bench-vision bench-text bench-serve bench-monitor  ## every benchmark

test: $(STAMP)  ## the whole test suite (unit + end-to-end on tiny configs)
	$(PY) -m pytest

test-fast: $(STAMP)  ## unit tests only
	$(PY) -m pytest -m "not slow"

clean:  ## remove runs, reports and caches (keeps .venv)
	rm -rf mlruns reports data/generated data/predictions .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
