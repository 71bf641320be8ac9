"""The monitoring job: window(s) of the prediction log vs the model's reference -> reports, MLflow, alert.

For each window: Evidently drift + quality (monitoring.drift) -> alert rules (monitoring.alerts) ->
`reports/monitoring/<model>/<window id>/` with `drift.html`, `quality.html` (when labels arrived) and
`summary.json` -> one MLflow run in `<model>-monitoring` with the drift metrics, the alert and the files.
The history index (monitoring.report) is rebuilt from the summaries afterwards.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pandas as pd

from modelpkg.contract import LABEL
from monitoring.alerts import Alert, evaluate_alert
from monitoring.config import MonitoringConfig
from monitoring.drift import DriftResult, DriftSummary, run_drift
from monitoring.reference import WatchedModel, load_reference, load_watched_model
from monitoring.report import SUMMARY_FILE
from monitoring.simulate import read_manifest, scenario_during
from monitoring.window import TS, WindowSpec, iso, read_window, served_by, window_id
from pipelines.common import tracking

log = logging.getLogger(__name__)
DRIFT_HTML = "drift.html"
QUALITY_HTML = "quality.html"
DATASET_CONTEXT = "monitoring"  # how a window's rows are tagged among the run's MLflow dataset inputs


@dataclass(frozen=True)
class Window:
    """Rows to judge, with how they were chosen and, for simulated traffic, the scenario's name."""

    frame: pd.DataFrame
    spec: WindowSpec
    scenario: str | None = None
    source: str = ""  # the prediction log it was read from


@dataclass(frozen=True)
class WindowOutcome:
    window_id: str
    scenario: str | None
    summary: DriftSummary
    alert: Alert
    directory: Path
    run_id: str


def windows_to_monitor(config: MonitoringConfig, model: WatchedModel, db_path: Path, spec: WindowSpec,
                       simulated: bool = False) -> list[Window]:
    """One window (the last N predictions or a time range), or one per window of the last simulation."""
    specs = [(spec, None)]
    if simulated:
        specs = [(WindowSpec(start_ts=w["start_ts"], end_ts=w["end_ts"] + 1e-3), w["scenario"])
                 for w in read_manifest(config.reports_for(model.name))]
    windows = []
    for window_spec, scenario in specs:
        frame = served_by(read_window(db_path, model, window_spec, config.window.max_rows), model.version,
                          config.window.min_rows, model.name, window_spec)
        scenario = scenario or scenario_during(config.reports_for(model.name), frame[TS].iloc[0], frame[TS].iloc[-1])
        windows.append(Window(frame, window_spec, scenario, str(Path(db_path).resolve())))
    return windows


def summary_document(model: WatchedModel, window: Window, result: DriftResult, alert: Alert, run_id: str) -> dict:
    """Everything the index page and a reader need, in one JSON file per window."""
    start, end = float(window.frame[TS].iloc[0]), float(window.frame[TS].iloc[-1])
    return {
        "model": model.name, "version": model.version, "window_id": window_id(window.frame),
        "scenario": window.scenario, "selection": window.spec.describe(),
        "window": {"start_ts": start, "end_ts": end, "start": iso(start), "end": iso(end)},
        "reference_run_id": model.contract.run_id,
        "drift": result.summary.as_dict(),
        "alert": {"triggered": alert.triggered, "drift": alert.drift, "quality": alert.quality,
                  "reasons": alert.reasons},
        "reports": {"drift": DRIFT_HTML, "quality": QUALITY_HTML if result.quality_report else None},
        "mlflow_run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_reports(directory: Path, result: DriftResult) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    result.drift_report.save_html(str(directory / DRIFT_HTML))
    if result.quality_report is not None:
        result.quality_report.save_html(str(directory / QUALITY_HTML))


def run_params(config: MonitoringConfig, model: WatchedModel, window: Window, summary: DriftSummary) -> dict:
    return {
        "model_version": model.version, "reference_run_id": model.contract.run_id, "window": window.spec.describe(),
        "reference_rows": summary.reference_rows, "num_method": config.drift.num_method,
        "cat_method": config.drift.cat_method, "family_alpha": config.drift.family_alpha,
        "alpha_per_test": summary.alpha_per_test, "min_drifted_features": config.drift.min_drifted_features,
        "quality_metric": config.quality.metric, "quality_max_drop": config.quality.max_drop,
    }


def monitor_window(config: MonitoringConfig, model: WatchedModel, reference: pd.DataFrame, window: Window) -> WindowOutcome:
    result = run_drift(reference, window.frame, model, config.drift, config.quality)
    alert = evaluate_alert(result.summary, config.drift, config.quality)
    name = window_id(window.frame)
    directory = config.reports_for(model.name) / name
    write_reports(directory, result)
    tags = {"kind": "monitor", "model": model.name, "model_version": model.version, "window_id": name,
            "alert": "yes" if alert.triggered else "no", "alert_reasons": "; ".join(alert.reasons)[:5000] or "-",
            "scenario": window.scenario or "-"}
    with mlflow.start_run(run_name=f"window {name}", tags=tags) as run:
        mlflow.log_params(run_params(config, model, window, result.summary))
        mlflow.log_metrics(result.summary.as_metrics() | {"window_alert": float(alert.triggered)})
        tracking.log_dataset(tracking.pandas_dataset(window.frame, name=f"{model.name}-window-{name}",
                                                     source=window.source, targets=LABEL), DATASET_CONTEXT)
        document = summary_document(model, window, result, alert, run.info.run_id)
        (directory / SUMMARY_FILE).write_text(json.dumps(document, indent=2, default=str) + "\n")
        mlflow.log_artifacts(str(directory), "monitoring")
    log.info("%s %s: %s", model.name, name, alert.message(model.name, model.version))
    return WindowOutcome(name, window.scenario, result.summary, alert, directory, run.info.run_id)


def run_monitoring(config: MonitoringConfig, model_name: str, db_path: Path, spec: WindowSpec, *,
                   simulated: bool = False, version: str | None = None) -> list[WindowOutcome]:
    """Monitor the chosen window(s) of `model_name` against the reference of the version under watch."""
    model_cfg = config.model(model_name)
    tracking.configure_tracking(model_cfg.experiment)
    model = load_watched_model(model_name, alias=model_cfg.alias, version=version)
    reference = load_reference(model)
    windows = windows_to_monitor(config, model, db_path, spec, simulated)
    return [monitor_window(config, model, reference, window) for window in windows]
