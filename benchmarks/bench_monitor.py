"""Drift detection quality: detection rate per injected scenario, false alarms on no-drift windows, and
the detection delay. Prints the tables docs/monitoring.md quotes.

Every window goes through the monitor's own code (stored rows -> the codec's request, validation, log
entry and description, the champion's ONNX predictions, as the server would log them -> drift summary ->
alert rules, as `python -m monitoring run` does), so what is measured is what runs.
Windows are drawn from the champion's held-out test split; the reference is its validation sample.

  detection rate   share of drifted windows that raise the alert (target >= 0.95 per scenario)
  false alarms     share of no-drift windows that raise it (target <= 0.05; 95 % upper bound shown)
  delay            drift begins in a stream monitored every --step rows on the last window of rows:
                   how many drifted rows had arrived when the first alert fired

Model: `--model` names a section of configs/monitoring.yaml (churn, text, vision); its scenarios and their
strengths come from there (monitoring.scenarios.<model>). The version measured is the model's alias
(`champion`) in MLFLOW_TRACKING_URI (default: the repo's store, after `make churn` / `make text` /
`make vision`); if there is none, the project's pipeline is run once into a throwaway store first (churn:
about a minute; text: about six). No server is needed: windows are scored in-process by the package.

    python benchmarks/bench_monitor.py [--model churn] [--windows 200] [--sizes 100,250,500] [--delay-trials 50]
                                       [--step 25]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from scipy.stats import beta

from monitoring.alerts import Alert, evaluate_alert
from monitoring.config import MonitoringConfig, load_monitoring_config
from monitoring.drift import DriftSummary, alpha_per_test, run_drift
from modelpkg.package import resolve_version
from monitoring.reference import WatchedModel, load_holdout, load_reference, load_watched_model
from monitoring.scenarios import NO_DRIFT, Scenario, scenarios_for
from pipelines.common import tracking

DETECTION_TARGET, FALSE_ALARM_TARGET = 0.95, 0.05
UNCORRECTED_ALPHA = 0.05  # what a per-column test "at 5 %" would use without a multiple-testing correction
EVIDENTLY_DRIFT_SHARE = 0.5  # Evidently's default dataset rule: at least half the columns drifted
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Judged:
    summary: DriftSummary
    alert: Alert


@dataclass(frozen=True)
class Setup:
    config: MonitoringConfig
    model: WatchedModel
    reference: pd.DataFrame
    pool: pd.DataFrame
    scenarios: dict[str, Scenario]
    params: dict[str, dict]


def ensure_champion(model: str, alias: str, experiment: str) -> None:
    """Use the store's version under `alias`; without one, train the project into a throwaway store with
    its real pipeline (which registers it as champion)."""
    tracking.configure_tracking(experiment)
    try:
        resolve_version(model, alias)
        return
    except LookupError:
        pass
    store = tempfile.mkdtemp(prefix="bench-monitor-")
    print(f"no '{model}@{alias}' in {tracking.tracking_uri()}: training one into {store} (real pipeline) ...")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    from pipelines.common.runner import run_project

    run_project(model, None, alias=alias)
    tracking.configure_tracking(experiment)


def data_source(model: WatchedModel) -> str:
    """Which data the champion was trained on, from its pipeline run's tags (csv or synthetic)."""
    client = MlflowClient()
    parent = client.get_run(model.contract.run_id).data.tags.get("mlflow.parentRunId")
    tags = client.get_run(parent).data.tags if parent else {}
    return f"{tags.get('data_source', 'unknown')} data, sha256 {model.contract.data_sha256[:12]}"


def load_setup(config: MonitoringConfig, model_name: str) -> Setup:
    model_cfg = config.model(model_name)  # a model with no monitoring section fails before any training
    ensure_champion(model_name, model_cfg.alias, model_cfg.experiment)
    model = load_watched_model(model_name, alias=model_cfg.alias)
    return Setup(config, model, load_reference(model), load_holdout(model, model_cfg.holdout_artifact),
                 scenarios_for(model_name), dict(model_cfg.scenarios))


def draw(setup: Setup, scenario: str, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    return setup.scenarios[scenario].draw(setup.pool, rows, rng, setup.params.get(scenario, {}))


def judge(setup: Setup, rows: pd.DataFrame) -> Judged:
    """Exactly the monitor's decision on one window, labels included (quality is judged too)."""
    window = setup.model.frame(rows)
    result = run_drift(setup.reference, window, setup.model, setup.config.drift, setup.config.quality, reports=False)
    return Judged(result.summary, evaluate_alert(result.summary, setup.config.drift, setup.config.quality))


def upper_bound(alarms: int, windows: int) -> float:
    """One-sided Clopper-Pearson upper bound on the true rate, at CONFIDENCE."""
    return 1.0 if alarms == windows else float(beta.ppf(CONFIDENCE, alarms + 1, windows - alarms))


def uncorrected_alarm(summary: DriftSummary) -> bool:
    tests = [c.p_value for c in summary.features] + ([summary.prediction.p_value] if summary.prediction else [])
    return min(tests) < UNCORRECTED_ALPHA


def evidently_default_alarm(summary: DriftSummary) -> bool:
    drifted = sum(c.p_value < UNCORRECTED_ALPHA for c in summary.features)
    return drifted / len(summary.features) >= EVIDENTLY_DRIFT_SHARE


def quality_drops(judged: list[Judged], metric: str) -> np.ndarray:
    """Reference metric minus window metric, per window: how far quality falls by chance alone."""
    return np.array([j.summary.reference_quality[metric] - j.summary.quality[metric]
                     for j in judged if j.summary.quality is not None])


def detection_rows(setup: Setup, windows: int, rows: int, seed: int) -> list[dict]:
    table = []
    for offset, scenario in enumerate(setup.scenarios):
        rng = np.random.default_rng(seed + offset)
        judged = [judge(setup, draw(setup, scenario, rows, rng)) for _ in range(windows)]
        alarms = sum(j.alert.triggered for j in judged)
        drops = quality_drops(judged, setup.config.quality.metric)
        table.append({
            "scenario": scenario, "windows": windows, "alarms": alarms, "rate": alarms / windows,
            "upper": upper_bound(alarms, windows),
            "by_feature": sum(bool(j.summary.drifted_features) for j in judged),
            "by_prediction": sum(bool(j.summary.prediction and j.summary.prediction.drifted) for j in judged),
            "by_quality": sum(j.alert.quality for j in judged),
            "uncorrected": sum(uncorrected_alarm(j.summary) for j in judged) / windows,
            "evidently_default": sum(evidently_default_alarm(j.summary) for j in judged) / windows,
            "top_feature": statistics.mode(min(j.summary.features, key=lambda c: c.p_value).column for j in judged),
            "drop_p95": float(np.quantile(drops, 0.95)) if len(drops) else None,
            "drop_max": float(drops.max()) if len(drops) else None,
        })
    return table


def drifted_rows_until_alarm(setup: Setup, scenario: str, rows: int, step: int, rng: np.random.Generator) -> int | None:
    """A stream: a full no-drift window, then drifted traffic arriving `step` rows at a time; the monitor
    judges the newest `rows` rows after each step. None: not detected within one full window of drift."""
    clean, drifted = draw(setup, NO_DRIFT, rows, rng), draw(setup, scenario, rows, rng)
    for seen in range(step, rows + 1, step):
        window = pd.concat([clean.iloc[seen:], drifted.iloc[:seen]], ignore_index=True)
        if judge(setup, window).alert.triggered:
            return seen
    return None


def delay_rows(setup: Setup, trials: int, rows: int, step: int, seed: int) -> list[dict]:
    table = []
    for offset, scenario in enumerate(name for name in setup.scenarios if name != NO_DRIFT):
        rng = np.random.default_rng(seed + 100 + offset)
        found = [drifted_rows_until_alarm(setup, scenario, rows, step, rng) for _ in range(trials)]
        hits = sorted(f for f in found if f is not None)
        table.append({"scenario": scenario, "trials": trials, "detected": len(hits),
                      "median": round(statistics.median(hits)) if hits else None,
                      "worst": hits[-1] if hits else None})
    return table


def strengths(setup: Setup) -> str:
    """The scenario parameters measured (config values; a scenario's own defaults where none are set)."""
    return "; ".join(f"{name} {setup.params.get(name, {}) or '(defaults)'}" for name in setup.scenarios
                     if name != NO_DRIFT)


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_detection(table: list[dict], rows: int, alpha_per_test: float, metric: str) -> None:
    print(f"\nDetection per scenario: windows of {rows} rows, alert = any feature or the prediction drifted at "
          f"p < {alpha_per_test:.1e} (Bonferroni), or a quality drop")
    print("| scenario | windows | alerts | rate | 95 % bound | target | met | feature / prediction / quality "
          f"| most drifted feature | uncorrected p<0.05 rule | Evidently default rule | {metric} drop p95 / max |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        no_drift = row["scenario"] == NO_DRIFT
        target = f"<= {FALSE_ALARM_TARGET}" if no_drift else f">= {DETECTION_TARGET}"
        met = row["rate"] <= FALSE_ALARM_TARGET if no_drift else row["rate"] >= DETECTION_TARGET
        bound = f"<= {row['upper']:.3f}" if no_drift else "-"
        print(f"| {row['scenario']} | {row['windows']} | {row['alarms']} | {row['rate']:.3f} | {bound} | {target} | "
              f"{'yes' if met else 'NO'} | {row['by_feature']} / {row['by_prediction']} / {row['by_quality']} | "
              f"{row['top_feature']} | {row['uncorrected']:.3f} | {row['evidently_default']:.3f} | "
              f"{number(row['drop_p95'])} / {number(row['drop_max'])} |")


def print_delay(table: list[dict], rows: int, step: int) -> None:
    print(f"\nDetection delay: drifted rows arrived before the first alert (monitor every {step} rows on the last "
          f"{rows})")
    print("| scenario | trials | detected within one window | median drifted rows | worst |")
    print("|---|---|---|---|---|")
    for row in table:
        print(f"| {row['scenario']} | {row['trials']} | {row['detected']} | {row['median'] or '-'} | "
              f"{row['worst'] or '-'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/monitoring.yaml")
    parser.add_argument("--model", default="churn", help="a section of models: in the config (churn, text, vision)")
    parser.add_argument("--windows", type=int, default=200, help="windows per scenario and size (>= 20)")
    parser.add_argument("--sizes", help="comma-separated window sizes in rows (default: window.rows in the config)")
    parser.add_argument("--delay-trials", type=int, default=50, help="drift-onset streams per scenario (0: skip)")
    parser.add_argument("--step", type=int, default=25, help="rows between two monitor runs in the delay streams")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_monitoring_config(args.config)
    sizes = [int(size) for size in args.sizes.split(",")] if args.sizes else [config.window.rows]
    started = time.perf_counter()
    setup = load_setup(config, args.model)
    print(f"{args.model} v{setup.model.version} ({setup.model.contract.model_type}, {data_source(setup.model)}): "
          f"reference {len(setup.reference)} rows, held-out pool {len(setup.pool)} rows, "
          f"{len(setup.model.descriptors)} descriptor columns")
    print(f"scenarios: {strengths(setup)}")
    for rows in sizes:
        detection = detection_rows(setup, args.windows, rows, args.seed)
        print_detection(detection, rows, alpha_per_test(setup.model, config.drift), config.quality.metric)
    if args.delay_trials:
        rows = config.window.rows
        print_delay(delay_rows(setup, args.delay_trials, rows, args.step, args.seed), rows, args.step)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
