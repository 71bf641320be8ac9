"""The monitoring job on a real prediction log: reports, MLflow run, history index and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from monitoring.__main__ import main
from monitoring.monitor import run_monitoring
from monitoring.report import PLOT_FILE, build_index, named_by_scenario, read_summaries
from monitoring.scenarios import get_scenario
from monitoring.simulate import SimulatedWindow, write_manifest
from monitoring.window import WindowSpec, read_window, served_by
from tests.monitoring.conftest import REPO
from tests.monitoring.predlog_writer import log_predictions

ROWS = 300
T0 = 1_700_000_000.0  # the no-drift window starts here; the drifted one an hour later


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, champion, config):
    """A log holding a no-drift window, then a price-increase window (labelled), served by the champion."""
    directory = tmp_path_factory.mktemp("monitor-job")
    db = directory / "predictions.db"
    rng = np.random.default_rng(0)
    params = config.model("churn").scenarios
    for start, name in ((T0, "no_drift"), (T0 + 3600, "price_increase")):
        rows = get_scenario("churn", name).draw(champion.holdout, ROWS, rng, params.get(name, {}))
        log_predictions(db, champion.model, rows, start_ts=start)
    settings = config.model_copy(update={"reports_dir": str(directory / "reports")})
    path = directory / "monitoring.yaml"
    raw = yaml.safe_load((REPO / "configs" / "monitoring.yaml").read_text())
    raw |= {"reports_dir": settings.reports_dir, "serving_config": str(REPO / "configs" / "serving.yaml")}
    path.write_text(yaml.safe_dump(raw))
    return settings, db, path


def test_drifted_window_alerts_and_leaves_reports_and_an_mlflow_run(traffic):
    config, db, _ = traffic
    [outcome] = run_monitoring(config, "churn", db, WindowSpec(last_n=ROWS))
    assert outcome.alert.triggered and "MonthlyCharges" in outcome.alert.reasons[0]
    assert {"drift.html", "quality.html", "summary.json"} <= {p.name for p in outcome.directory.iterdir()}
    summary = json.loads((outcome.directory / "summary.json").read_text())
    assert summary["alert"]["triggered"] and summary["drift"]["labelled_rows"] == ROWS
    run = MlflowClient().get_run(outcome.run_id)
    assert run.data.tags["alert"] == "yes"
    assert run.data.metrics["drift_score_MonthlyCharges"] < run.data.metrics["window_alpha_per_test"]
    assert {"window_share_drifted", "window_prediction_drift_score", "window_roc_auc"} <= set(run.data.metrics)


def test_no_drift_window_by_time_raises_nothing(traffic):
    config, db, _ = traffic
    [outcome] = run_monitoring(config, "churn", db, WindowSpec(start_ts=T0, end_ts=T0 + 60))
    assert outcome.summary.rows == ROWS and not outcome.alert.triggered


def test_history_index_lists_every_window_with_a_plot(traffic):
    config, db, _ = traffic
    run_monitoring(config, "churn", db, WindowSpec(start_ts=T0, end_ts=T0 + 60))  # same window: overwritten
    index = build_index(config.reports_for("churn"), "churn", config.quality)
    page = index.read_text()
    assert (index.parent / PLOT_FILE).stat().st_size > 0
    assert page.count("<tr>") == 1 + 2  # header + two distinct windows
    assert "ALERT" in page and "drift.html" in page


def test_cli_exit_codes(traffic, monkeypatch, capsys):
    _, db, path = traffic
    monkeypatch.setenv("PREDICTION_LOG", str(db))
    assert main(["run", "--config", str(path), "--window", str(ROWS)]) == 1
    assert "ALERT" in capsys.readouterr().out
    assert main(["run", "--config", str(path), "--start", str(T0), "--end", str(T0 + 60)]) == 0
    assert main(["run", "--config", str(path), "--start", "2001-01-01", "--end", "2001-01-02"]) == 2
    assert "no predictions for model 'churn' in window" in capsys.readouterr().err


def test_unknown_version_and_a_window_served_by_another_version_are_clear_errors(traffic, champion):
    config, db, _ = traffic
    with pytest.raises(LookupError, match="no version 7 of registered model 'churn'"):
        run_monitoring(config, "churn", db, WindowSpec(last_n=ROWS), version="7")
    frame = read_window(db, champion.model, WindowSpec(last_n=ROWS))
    with pytest.raises(LookupError, match=r"only 0 predictions by churn v7 .*need at least 100.*'1': 300"):
        served_by(frame, "7", 100, "churn", WindowSpec(last_n=ROWS))



def test_a_window_without_labels_keeps_its_simulated_scenario_on_the_history_page(champion, config, tmp_path):
    """`make simulate` leaves the last window's labels pending and `make monitor` judges the last N rows:
    the window is named from the simulation manifest all the same, in its summary, table and plot. A
    summary written without a name (by an older version) is named from the manifest by time, if they overlap."""
    db = tmp_path / "predictions.db"
    rows = get_scenario("churn", "price_increase").draw(champion.holdout, ROWS, np.random.default_rng(1),
                                                       config.model("churn").scenarios.get("price_increase", {}))
    log_predictions(db, champion.model, rows, start_ts=T0, labelled=False)
    settings = config.model_copy(update={"reports_dir": str(tmp_path / "reports")})
    reports = settings.reports_for("churn")

    def simulated(start_ts: float) -> None:
        window = SimulatedWindow(0, "price_increase", ROWS, start_ts, start_ts + ROWS, "1")
        write_manifest([window], reports, "churn", "http://127.0.0.1:8000")

    simulated(T0 - 1)
    [outcome] = run_monitoring(settings, "churn", db, WindowSpec(last_n=ROWS))
    assert outcome.summary.labelled_rows == 0 and outcome.scenario == "price_increase"
    [logged] = MlflowClient().get_run(outcome.run_id).inputs.dataset_inputs  # the window, as an MLflow dataset
    assert logged.dataset.name == f"churn-window-{outcome.window_id}"
    assert {t.key: t.value for t in logged.tags}["mlflow.data.context"] == "monitoring"
    assert json.loads(logged.dataset.source)["uri"] == str(db.resolve())
    assert "<td>price_increase</td>" in build_index(reports, "churn", settings.quality).read_text()

    summary_file = outcome.directory / "summary.json"
    summary_file.write_text(json.dumps(json.loads(summary_file.read_text()) | {"scenario": None}))
    assert "<td>price_increase</td>" in build_index(reports, "churn", settings.quality).read_text()
    simulated(T0 + 3600)  # a later simulation: it says nothing about this window
    assert [s["scenario"] for s in named_by_scenario(read_summaries(reports), reports)] == [None]
